"""ASGIClient: test a project through real ASGI messages, in-process, as a server would drive it.

Unlike Django's AsyncClient, requests go through the application's own ``__call__`` with a
``receive`` and a ``send``: the request body arrives message by message, the response is read as
the application sends it (streams chunk by chunk), the client can disconnect mid-response, and
the lifespan protocol can run around a block of requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from http.cookies import Morsel, SimpleCookie
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urljoin, urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections
from django.test.client import (
    BOUNDARY,
    CONTENT_TYPE_RE,
    JSON_CONTENT_TYPE_RE,
    MULTIPART_CONTENT,
    ClientMixin,
    RedirectCycleError,
    encode_multipart,
)
from django.utils.encoding import force_bytes
from django.utils.http import parse_header_parameters, parse_http_date_safe, urlencode

from ..lifespan import TEST_CLIENT_EXTENSION
from ..types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .websocket import WebSocketSession

__all__ = [
    "ASGIClient",
    "ASGIProtocolError",
    "ApplicationTimeout",
    "ClientResponse",
    "DisconnectedError",
    "Headers",
    "LifespanFailed",
]

# Long enough for a slow CI machine, short enough that a hung application fails its test.
DEFAULT_TIMEOUT = 10.0
SERVER_NAME = "testserver"
CLIENT_ADDRESS = ("127.0.0.1", 50000)
HTTP_ASGI = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}
# Unread response bytes a server would buffer before send() waits for the client to read.
UNREAD_BYTES_LIMIT = 2**16
# The extension by which a server sends a file by its path (granian offers it).
PATHSEND = "http.response.pathsend"
# Statuses follow=True follows, and how many redirects in a row it follows, as in Django.
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
MAX_REDIRECTS = 20
# quote() keeps these too: what a URL allows unescaped, and "%" so that existing escapes survive.
PATH_SAFE = "/%:@!$&'()*+,;=~"
QUERY_SAFE = PATH_SAFE + "?"
LIFESPAN_REPLIES = frozenset(
    f"lifespan.{phase}.{outcome}"
    for phase in ("startup", "shutdown")
    for outcome in ("complete", "failed")
)

RequestHeaders = Mapping[str, str] | Iterable[tuple[str, str]]
QueryParams = Mapping[str, Any]


class ASGIProtocolError(Exception):
    """The application sent a message of the wrong type or shape, or at the wrong time."""


class ApplicationTimeout(TimeoutError):
    """The application did not do what the client waited for within ``ASGIClient.timeout``."""


class LifespanFailed(Exception):
    """Lifespan startup or shutdown failed, or the application does not speak the protocol."""


class DisconnectedError(OSError):
    """What ``send()`` raises once the client has disconnected, as the ASGI spec asks."""


async def wait_until(
    ready: Callable[[], bool], progress: asyncio.Event, timeout: float | None, what: str
) -> None:
    """Wait until ``ready()``, checking again each time ``progress`` is set.

    ApplicationTimeout if ``timeout`` seconds pass without progress.
    """
    while not ready():
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), timeout)
        except asyncio.TimeoutError:
            raise ApplicationTimeout(
                f"The application did not {what} within {timeout:g} s (ASGIClient(timeout=...))."
            ) from None


def start_task(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, progress: asyncio.Event
) -> asyncio.Task[None]:
    """Run ``app`` as a task that sets ``progress`` when it ends."""

    async def call() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(call())

    def ended(task: asyncio.Task[None]) -> None:
        progress.set()
        # Marks the outcome as seen: the response reports it, or the test abandoned the response.
        if not task.cancelled():
            task.exception()

    task.add_done_callback(ended)
    return task


class Headers(Mapping[str, str]):
    """A response's headers: names are case-insensitive, a repeated header's values are joined
    with ", ".

    ``getlist(name)`` gives each value of a repeated header (``Set-Cookie`` needs it), and
    ``raw`` the ``(name, value)`` byte pairs exactly as the application sent them.
    """

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw = [(bytes(name), bytes(value)) for name, value in raw]
        self._values: dict[str, list[str]] = {}
        for name, value in self.raw:
            key = name.decode("latin1").lower()
            self._values.setdefault(key, []).append(value.decode("latin1"))

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._values[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getlist(self, name: str) -> list[str]:
        """Every value of header ``name``, in the order sent; empty if it was not sent."""
        return list(self._values.get(name.lower(), ()))

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


def cookies_from(headers: Headers) -> SimpleCookie:
    """The cookies a response sets, from its Set-Cookie headers."""
    cookies = SimpleCookie()
    for value in headers.getlist("set-cookie"):
        cookies.load(value)
    return cookies


def deletes_cookie(morsel: Morsel[str]) -> bool:
    """Whether a Set-Cookie removes its cookie: Max-Age 0 or less, else Expires in the past."""
    max_age = str(morsel["max-age"])
    if max_age:
        # RFC 6265 5.3: Max-Age wins over Expires.
        return max_age.lstrip("-").isdigit() and int(max_age) <= 0
    expires = parse_http_date_safe(morsel["expires"]) if morsel["expires"] else None
    return expires is not None and expires <= time.time()


def encode_body(data: Any, content_type: str, json_encoder: type[json.JSONEncoder]) -> bytes:
    """``data`` as Django's test client encodes it: a multipart form, JSON, or text."""
    if data is None:
        return b""
    if content_type == MULTIPART_CONTENT and isinstance(data, Mapping):
        return encode_multipart(BOUNDARY, dict(data))
    if JSON_CONTENT_TYPE_RE.match(content_type) and isinstance(data, (dict, list, tuple)):
        data = json.dumps(data, cls=json_encoder)
    match = CONTENT_TYPE_RE.match(content_type)
    return force_bytes(data, encoding=match[1] if match else settings.DEFAULT_CHARSET)


def request_target(path: str, query_string: str | None) -> tuple[str, bytes, bytes]:
    """The scope's ``path``, ``raw_path`` and ``query_string`` for ``path``.

    The query in ``path`` is used unless ``query_string`` is given.
    """
    parsed = urlsplit(str(path))
    raw_path = quote(parsed.path or "/", safe=PATH_SAFE)
    if query_string is None:
        query_string = quote(parsed.query, safe=QUERY_SAFE)
    return unquote(raw_path), raw_path.encode("ascii"), query_string.encode("ascii")


def header_pairs(headers: RequestHeaders) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs, names lowercased, from a dict or a list of ``(name, value)``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in items]


_requests_keeping_connections = 0


@contextmanager
def connections_kept_open() -> Iterator[None]:
    """As Django's test clients do: no close_old_connections at request start and finish.

    In an async test method the application runs a request's sync code on the test's thread,
    inside the test case's transaction, which closing "old" connections would break.
    """
    global _requests_keeping_connections
    if _requests_keeping_connections == 0:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
    _requests_keeping_connections += 1
    try:
        yield
    finally:
        _requests_keeping_connections -= 1
        if _requests_keeping_connections == 0:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


class HTTPExchange:
    """One request in flight: the ``receive`` and ``send`` its application is given.

    Like a server, it hands out the body as the application asks for it; then ``receive()``
    waits until the response is complete or the client disconnects, and returns
    ``http.disconnect``. ``send()`` checks each message, holds the response for the reader, and
    raises DisconnectedError once the client has gone.
    """

    def __init__(
        self, app: ASGIApp, scope: Scope, body: bytes | AsyncIterable[bytes], timeout: float | None
    ) -> None:
        self._app = app
        self.scope = scope
        self.timeout = timeout
        self._body = body
        self._body_parts: AsyncIterator[bytes] | None = None
        self._body_sent = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.started = False
        self.chunks: list[bytes] = []
        # The path the application sent by http.response.pathsend, if it did.
        self.pathsent: str | None = None
        self.read_count = 0
        self._unread_bytes = 0
        self.complete = False
        self.disconnected = False
        self.protocol_error: ASGIProtocolError | None = None
        self.request_exception: BaseException | None = None
        self.error_reported = False
        # Set when the response is complete or the client disconnects: receive() answers then.
        self._connection_over = asyncio.Event()
        # Set on every message sent and when the application ends: wakes the reader.
        self._progress = asyncio.Event()
        # Set when the reader takes chunks: wakes a send() waiting for room.
        self._room = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the application for this request, as a task."""
        self.task = start_task(self.run, self.scope, self.receive, self.send, self._progress)

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Django turns a view's exception into a 500; like its test client, keep it to raise.
        uid = ("asgi_bridge.testing", id(self))
        got_request_exception.connect(self.store_request_exception, weak=False, dispatch_uid=uid)
        try:
            with connections_kept_open():
                await self._app(scope, receive, send)
        finally:
            got_request_exception.disconnect(dispatch_uid=uid)

    def store_request_exception(self, sender: object, request: object = None, **_: Any) -> None:
        """got_request_exception receiver: keep the first exception this request's view raised."""
        if getattr(request, "scope", None) is self.scope and self.request_exception is None:
            self.request_exception = sys.exc_info()[1]

    @property
    def app_ended(self) -> bool:
        return self.task is not None and self.task.done()

    @property
    def body_over(self) -> bool:
        """No more response body will come: it is complete, the client left or the app ended."""
        return self.complete or self.disconnected or self.app_ended

    async def receive(self) -> Message:
        if self.disconnected:
            return {"type": "http.disconnect"}
        if not self._body_sent:
            return await self.next_body_message()
        await self._connection_over.wait()
        return {"type": "http.disconnect"}

    async def next_body_message(self) -> Message:
        """The next ``http.request``: the whole body at once, or one per part of a stream."""
        if isinstance(self._body, bytes):
            self._body_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        if self._body_parts is None:
            self._body_parts = aiter(self._body)
        try:
            part = await anext(self._body_parts)
        except StopAsyncIteration:
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": bytes(part), "more_body": True}

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if self.disconnected:
            raise DisconnectedError(f"Cannot send {kind!r}: the client has disconnected.")
        if not self.started:
            self.accept_start(message)
        elif self.complete:
            self.fail(f"{kind!r} was sent after the response was complete.")
        elif kind == "http.response.body":
            await self.accept_body(message)
        elif kind == PATHSEND and PATHSEND in self.scope.get("extensions", {}):
            self.accept_pathsend(message)
        else:
            self.fail(f"Expected 'http.response.body', got {kind!r}.")
        self._progress.set()

    def accept_pathsend(self, message: Message) -> None:
        """The file at ``path`` is the body, as a server offering pathsend sends it."""
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            self.fail(f"{PATHSEND!r} needs an absolute path, got {path!r}.")
        with open(path, "rb") as file:
            content = file.read()
        self.chunks.append(content)
        self._unread_bytes += len(content)
        self.pathsent = path
        self.complete = True
        self._connection_over.set()

    def accept_start(self, message: Message) -> None:
        kind = message.get("type")
        if kind != "http.response.start":
            self.fail(f"Expected 'http.response.start', got {kind!r}.")
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            self.fail(f"'http.response.start' needs an int status, got {status!r}.")
        headers = list(message.get("headers", ()))
        for pair in headers:
            if not (len(pair) == 2 and all(isinstance(part, bytes) for part in pair)):
                self.fail(f"'http.response.start' headers must be (bytes, bytes) pairs: {pair!r}.")
        self.status, self.raw_headers, self.started = status, headers, True

    async def accept_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray)):
            self.fail(f"'http.response.body' body must be bytes, got {type(body).__name__}.")
        more_body = bool(message.get("more_body", False))
        # Backpressure, as a socket gives: an endless stream waits for the test to read.
        while more_body and self._unread_bytes > UNREAD_BYTES_LIMIT and not self.disconnected:
            self._room.clear()
            await self._room.wait()
        if self.disconnected:
            raise DisconnectedError(
                "Cannot send 'http.response.body': the client has disconnected."
            )
        self.chunks.append(bytes(body))
        self._unread_bytes += len(body)
        if not more_body:
            self.complete = True
            self._connection_over.set()

    def fail(self, problem: str) -> NoReturn:
        """Raise an ASGIProtocolError into the app, and keep it in case the app swallows it."""
        error = ASGIProtocolError(problem)
        if self.protocol_error is None:
            self.protocol_error = error
        raise error

    def next_unread(self) -> bytes | None:
        """The oldest chunk the reader has not had, or None."""
        if self.read_count == len(self.chunks):
            return None
        chunk = self.chunks[self.read_count]
        self.read_count += 1
        self._unread_bytes -= len(chunk)
        self._room.set()
        return chunk

    async def wait_for(self, ready: Callable[[], bool], what: str) -> None:
        try:
            await wait_until(ready, self._progress, self.timeout, what)
        except ApplicationTimeout:
            # The test fails; the application must not run on into the next one.
            if self.task is not None:
                self.task.cancel()
            raise

    def disconnect(self) -> None:
        self.disconnected = True
        for event in (self._connection_over, self._room, self._progress):
            event.set()

    async def wait_for_app(self) -> bool:
        """Wait up to the timeout for the application to return; cancel it if it does not."""
        assert self.task is not None
        done, _ = await asyncio.wait((self.task,), timeout=self.timeout)
        if not done:
            # A test client must not leave the application running into the next test.
            self.task.cancel()
            await asyncio.wait((self.task,), timeout=self.timeout)
        return bool(done)

    def server_error(self) -> BaseException | None:
        """What went wrong in the application, most specific first; None if nothing did."""
        if self.protocol_error is not None:
            return self.protocol_error
        if self.task is not None and self.task.done() and not self.task.cancelled():
            error = self.task.exception()
            if error is not None:
                return error
        if self.request_exception is not None:
            return self.request_exception
        if self.app_ended and self.started and not (self.complete or self.disconnected):
            return ASGIProtocolError(
                "The application returned before its response was complete "
                "(its last 'http.response.body' had more_body=True)."
            )
        return None

    def answer_instead(self, status: int) -> None:
        """Stand in for an application that failed before answering, as servers do."""
        self.status, self.started, self.complete = status, True, True


class ClientResponse:
    """What the application answered: status, headers and cookies, and a body read whole or as
    it is sent (``stream()``)."""

    def __init__(self, exchange: HTTPExchange, raise_server_exceptions: bool) -> None:
        self._exchange = exchange
        self._raise_server_exceptions = raise_server_exceptions
        self.scope = exchange.scope
        self.status_code = exchange.status
        # (url, status) of each redirect followed to get here, with follow=True.
        self.redirect_chain: list[tuple[str, int]] = []
        self.headers = Headers(exchange.raw_headers)
        self.cookies = cookies_from(self.headers)

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status_code} {self.scope['method']} {self.scope['path']}>"

    @property
    def app_ended(self) -> bool:
        """Whether the application has returned (or raised)."""
        return self._exchange.app_ended

    @property
    def pathsent(self) -> str | None:
        """The path of the file the application sent by ``http.response.pathsend``, if any."""
        return self._exchange.pathsent

    @property
    def content(self) -> bytes:
        """The whole body; for ``stream=True``, available once the body is over."""
        if not self._exchange.body_over:
            raise RuntimeError(
                "The response body is still streaming: read it first with "
                "`await response.aread()` or `async for chunk in response.stream()`."
            )
        return b"".join(self._exchange.chunks)

    @property
    def text(self) -> str:
        _, params = parse_header_parameters(self.headers.get("content-type", ""))
        return self.content.decode(params.get("charset", "utf-8"))

    def json(self, **loads_kwargs: Any) -> Any:
        """The body parsed as JSON; ValueError if the response is not JSON, as in Django."""
        content_type = self.headers.get("content-type", "")
        if not JSON_CONTENT_TYPE_RE.match(content_type):
            raise ValueError(f'Content-Type header is "{content_type}", not "application/json"')
        return json.loads(self.text, **loads_kwargs)

    async def stream(self) -> AsyncIterator[bytes]:
        """Each body chunk not read yet, as soon as the application has sent it.

        Ends when the body is complete (once the application has returned, raising its error
        if it failed) or the client disconnected.
        """
        exchange = self._exchange
        while True:
            while (chunk := exchange.next_unread()) is not None:
                if chunk:
                    yield chunk
            if exchange.body_over:
                break
            await exchange.wait_for(
                lambda: exchange.read_count < len(exchange.chunks) or exchange.body_over,
                "send more of the response body",
            )
        await self.finish()

    async def aread(self) -> bytes:
        """Read the rest of the body; return all of it."""
        async for _ in self.stream():
            pass
        return self.content

    async def disconnect(self) -> bool:
        """Disconnect now: the application's next ``receive()`` returns ``http.disconnect``.

        Waits (up to the client's timeout) for the application to return, and says whether it
        did; one that did not is cancelled.
        """
        self._exchange.disconnect()
        ended = await self._exchange.wait_for_app()
        if ended:
            self.raise_server_error()
        return ended

    async def aclose(self) -> None:
        """Disconnect if the body is still coming, else wait for the application to return."""
        if self._exchange.body_over:
            await self.finish()
        else:
            await self.disconnect()

    async def finish(self) -> None:
        exchange = self._exchange
        if exchange.complete:
            await exchange.wait_for(lambda: exchange.app_ended, "return after its response")
        self.raise_server_error()

    def raise_server_error(self) -> None:
        """Raise, once, what went wrong in the application, if raise_server_exceptions."""
        error = self._exchange.server_error()
        if (
            error is not None
            and self._raise_server_exceptions
            and not self._exchange.error_reported
        ):
            self._exchange.error_reported = True
            raise error


class Lifespan:
    """The lifespan protocol against one application: ``startup()``, later ``shutdown()``."""

    def __init__(self, app: ASGIApp, timeout: float | None) -> None:
        self.app = app
        self.timeout = timeout
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: list[Message] = []
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        return await self._inbox.get()

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind not in LIFESPAN_REPLIES:
            raise ASGIProtocolError(
                f"Expected a 'lifespan.startup.*' or 'lifespan.shutdown.*' reply, got {kind!r}."
            )
        self._replies.append(message)
        self._progress.set()

    async def startup(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": dict(LIFESPAN_ASGI),
            "state": self.state,
            "extensions": {TEST_CLIENT_EXTENSION: {}},
        }
        self._task = start_task(self.app, scope, self.receive, self.send, self._progress)
        try:
            await self.ask("startup")
        except BaseException:
            await self.stop()
            raise

    async def shutdown(self) -> None:
        task = self._task
        assert task is not None
        try:
            await self.ask("shutdown")
            await wait_until(
                task.done, self._progress, self.timeout, "return after 'lifespan.shutdown.complete'"
            )
        finally:
            await self.stop()

    async def ask(self, phase: str) -> None:
        """Send ``lifespan.<phase>`` and check the application's answer."""
        task = self._task
        assert task is not None
        answered = len(self._replies)
        self._inbox.put_nowait({"type": f"lifespan.{phase}"})
        await wait_until(
            lambda: len(self._replies) > answered or task.done(),
            self._progress,
            self.timeout,
            f"answer 'lifespan.{phase}'",
        )
        if len(self._replies) == answered:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise LifespanFailed(
                    f"The application raised {error!r} instead of answering 'lifespan.{phase}': "
                    "it does not support the lifespan protocol."
                ) from error
            raise LifespanFailed(f"The application returned without answering 'lifespan.{phase}'.")
        reply = self._replies[answered]
        if reply["type"] == f"lifespan.{phase}.failed":
            raise LifespanFailed(f"Lifespan {phase} failed: {reply.get('message', '')}")
        if reply["type"] != f"lifespan.{phase}.complete":
            raise ASGIProtocolError(f"Expected 'lifespan.{phase}.complete', got {reply['type']!r}.")

    async def stop(self) -> None:
        """Cancel the lifespan task if it is still running."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait((self._task,), timeout=self.timeout)


def default_application() -> ASGIApp:
    """The project's application, as ``asgi_bridge.get_asgi_application()`` builds it."""
    import django
    from django.apps import apps

    from ..handler import ASGIHandler

    # Test runners have set Django up already; setup() again would reconfigure logging.
    if not apps.ready:
        django.setup(set_prefix=False)
    return ASGIHandler()


def query_params_for(data: QueryParams | None, query_params: QueryParams | None) -> Any:
    """GET and HEAD take the query as ``data`` or ``query_params``, not both, as in Django."""
    if data and query_params:
        raise ValueError("query_params and data arguments are mutually exclusive.")
    return data or query_params


class ASGIClient(ClientMixin):
    """An async test client that drives an ASGI application in-process, as a server would.

    Logging in works as with Django's clients, for HTTP and WebSockets alike, through the
    cookie jar: ``force_login(user)``/``aforce_login(user)``, ``login(**credentials)``/
    ``alogin(...)``, ``logout()``/``alogout()``, and ``session``/``asession()``.

    ``app`` defaults to asgi_bridge's handler for the project, built at the first request.
    ``pathsend=True`` offers the ``http.response.pathsend`` extension, as granian does: a file
    sent by path is read as the body, and ``response.pathsent`` is its path.
    Every wait for the application gives up after ``timeout`` seconds (None: never) with
    ApplicationTimeout. The client holds no event-loop state between requests, so each call may
    run in its own loop (``async_to_sync``), except requests inside ``lifespan()``.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        raise_server_exceptions: bool = True,
        headers: RequestHeaders | None = None,
        root_path: str = "",
        client: tuple[str, int] = CLIENT_ADDRESS,
        timeout: float | None = DEFAULT_TIMEOUT,
        json_encoder: type[json.JSONEncoder] = DjangoJSONEncoder,
        pathsend: bool = False,
    ) -> None:
        self._app = app
        self.pathsend = pathsend
        self.raise_server_exceptions = raise_server_exceptions
        self.headers = header_pairs(headers or {})
        self.root_path = root_path
        self.client = client
        self.timeout = timeout
        self.json_encoder = json_encoder
        self.cookies = SimpleCookie()
        self._lifespan_state: dict[str, Any] | None = None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            self._app = default_application()
        return self._app

    async def get(
        self,
        path: str,
        data: QueryParams | None = None,
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        query_params = query_params_for(data, query_params)
        return await self.request(
            "GET",
            path,
            b"",
            "",
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def head(
        self,
        path: str,
        data: QueryParams | None = None,
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        query_params = query_params_for(data, query_params)
        return await self.request(
            "HEAD",
            path,
            b"",
            "",
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def post(
        self,
        path: str,
        data: Any = None,
        content_type: str = MULTIPART_CONTENT,
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        # As in Django, no data is an empty form.
        data = {} if data is None else data
        return await self.request(
            "POST",
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def put(
        self,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        return await self.request(
            "PUT",
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def patch(
        self,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        return await self.request(
            "PATCH",
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def delete(
        self,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        return await self.request(
            "DELETE",
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def options(
        self,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        return await self.request(
            "OPTIONS",
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=stream,
            follow=follow,
        )

    async def request(
        self,
        method: str,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> ClientResponse:
        """Send a request; return the response once its body is read, or once it has started
        (``stream=True``).

        ``data`` is encoded as Django's test client does (a dict as a multipart form for
        ``MULTIPART_CONTENT``, as JSON for a JSON ``content_type``); an async iterable of bytes
        is sent as it yields, one ``http.request`` message per part.

        ``follow=True`` follows redirects as Django's test client does (301, 302 and 303 as a
        GET; 307 and 308 with the same method and body): the response is the last one, and its
        ``redirect_chain`` lists each ``(url, status)`` on the way. A redirect back to a URL
        already visited, or more than MAX_REDIRECTS, raises Django's RedirectCycleError.
        """
        response = await self.send_request(
            method, path, data, content_type, secure, headers, query_params, stream
        )
        response.redirect_chain = []
        while follow and response.status_code in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if location is None:
                break
            response = await self.follow_redirect(
                response, location, method, data, content_type, headers, stream
            )
        return response

    async def follow_redirect(
        self,
        response: ClientResponse,
        location: str,
        method: str,
        data: Any,
        content_type: str,
        headers: RequestHeaders | None,
        stream: bool,
    ) -> ClientResponse:
        """The response to the redirect ``response`` makes, with the chain so far."""
        chain = response.redirect_chain
        # As in Django's client: the Location as sent, resolved against the request's path.
        chain.append((location, response.status_code))
        url = urljoin(response.scope["path"], location)
        if chain.count(chain[-1]) > 1:
            # Django's error keeps whatever response object its client had.
            raise RedirectCycleError("Redirect loop detected.", last_response=response)  # type: ignore[arg-type]
        if len(chain) > MAX_REDIRECTS:
            raise RedirectCycleError("Too many redirects.", last_response=response)  # type: ignore[arg-type]
        parts = urlsplit(url)
        path = parts.path or "/"
        query_params = dict(parse_qsl(parts.query, keep_blank_values=True)) or None
        if response.status_code not in (307, 308):
            method, data, content_type = "GET", b"", ""
        following = await self.send_request(
            method,
            path,
            data,
            content_type,
            parts.scheme == "https" if parts.scheme else response.scope["scheme"] == "https",
            headers,
            query_params,
            stream,
        )
        following.redirect_chain = chain
        return following

    async def send_request(
        self,
        method: str,
        path: str,
        data: Any,
        content_type: str,
        secure: bool,
        headers: RequestHeaders | None,
        query_params: QueryParams | None,
        stream: bool,
    ) -> ClientResponse:
        if isinstance(data, AsyncIterable):
            body: bytes | AsyncIterable[bytes] = data
        else:
            body = encode_body(data, content_type, self.json_encoder)
        scope = self.build_scope(method, path, body, content_type, secure, headers, query_params)
        exchange = HTTPExchange(self.app, scope, body, self.timeout)
        exchange.start()
        await exchange.wait_for(
            lambda: exchange.started or exchange.app_ended, "send 'http.response.start'"
        )
        if not exchange.started:
            error = exchange.server_error() or ASGIProtocolError(
                "The application returned without sending 'http.response.start'."
            )
            if self.raise_server_exceptions:
                raise error
            exchange.answer_instead(500)
        response = ClientResponse(exchange, self.raise_server_exceptions)
        self.store_cookies(response.cookies)
        if not stream:
            await response.aread()
        return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        data: Any = b"",
        content_type: str = "application/octet-stream",
        secure: bool = False,
        *,
        headers: RequestHeaders | None = None,
        query_params: QueryParams | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """``request(..., stream=True)`` that disconnects on exit if the body is still coming."""
        response = await self.request(
            method,
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            stream=True,
        )
        try:
            yield response
        finally:
            await response.aclose()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[dict[str, Any]]:
        """Run the lifespan protocol around the block; yield the state the app filled at startup.

        Requests made inside get a shallow copy of that state as ``scope["state"]``, as servers
        give. LifespanFailed if startup or shutdown fails, or the app does not support lifespan.
        """
        if self._lifespan_state is not None:
            raise RuntimeError("This client's lifespan is already running.")
        lifespan = Lifespan(self.app, self.timeout)
        await lifespan.startup()
        self._lifespan_state = lifespan.state
        try:
            yield lifespan.state
        except BaseException:
            self._lifespan_state = None
            # The block's own error is the one to report, not a shutdown failing after it.
            with suppress(Exception):
                await lifespan.shutdown()
            raise
        self._lifespan_state = None
        await lifespan.shutdown()

    def build_scope(
        self,
        method: str,
        path: str,
        body: bytes | AsyncIterable[bytes],
        content_type: str,
        secure: bool,
        headers: RequestHeaders | None,
        query_params: QueryParams | None,
    ) -> Scope:
        """A complete ASGI HTTP scope for the request, as a server would build it."""
        query = urlencode(query_params, doseq=True) if query_params else None
        scope_path, raw_path, query_string = request_target(path, query)
        scope: Scope = {
            "type": "http",
            "asgi": dict(HTTP_ASGI),
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "https" if secure else "http",
            "path": scope_path,
            "raw_path": raw_path,
            "query_string": query_string,
            "root_path": self.root_path,
            "headers": self.request_headers(body, content_type, headers),
            "client": self.client,
            "server": (SERVER_NAME, 443 if secure else 80),
        }
        if self.pathsend:
            scope["extensions"] = {PATHSEND: {}}
        if self._lifespan_state is not None:
            # A copy per request, as servers give: what one request stores stays its own.
            scope["state"] = dict(self._lifespan_state)
        return scope

    def request_headers(
        self,
        body: bytes | AsyncIterable[bytes],
        content_type: str,
        headers: RequestHeaders | None,
    ) -> list[tuple[bytes, bytes]]:
        """Host, the client's and the request's headers, body headers and the cookie jar."""
        given = header_pairs(headers or {})
        names = {name for name, _ in given}
        given = [pair for pair in self.headers if pair[0] not in names] + given
        names.update(name for name, _ in self.headers)
        pairs = [] if b"host" in names else [(b"host", SERVER_NAME.encode("ascii"))]
        pairs += given
        # As in Django's client, an empty body sends no Content-Length or Content-Type.
        if body and b"content-type" not in names:
            pairs.append((b"content-type", content_type.encode("latin1")))
        if isinstance(body, bytes):
            if body and b"content-length" not in names:
                pairs.append((b"content-length", str(len(body)).encode("ascii")))
        elif not names & {b"content-length", b"transfer-encoding"}:
            pairs.append((b"transfer-encoding", b"chunked"))
        if self.cookies and b"cookie" not in names:
            pairs.append((b"cookie", self.cookie_header()))
        return pairs

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Iterable[str] = (),
        headers: RequestHeaders | None = None,
        secure: bool = False,
    ) -> WebSocketSession:
        """Open a WebSocket to ``path``, with the client's cookies, as an async context manager:

        ``async with client.websocket("/ws/echo/") as ws: await ws.send("hi")``. In sync tests,
        ``with client.websocket("/ws/echo/") as ws: ws.send("hi")`` (a SyncWebSocketSession).
        A denied handshake raises ``WebSocketDenied`` carrying the response.
        """
        from .websocket import WebSocketSession

        scope = self.build_scope("GET", path, b"", "", secure, headers, None)
        scope.update(
            type="websocket",
            scheme="wss" if secure else "ws",
            subprotocols=list(subprotocols),
            extensions={"websocket.http.response": {}},
        )
        del scope["method"]
        return WebSocketSession(self.app, scope, self.timeout)

    def cookie_header(self) -> bytes:
        cookies = sorted(f"{morsel.key}={morsel.coded_value}" for morsel in self.cookies.values())
        return "; ".join(cookies).encode("latin1")

    def store_cookies(self, cookies: SimpleCookie) -> None:
        """Keep the cookies a response set in the jar; drop those it deleted."""
        for name, morsel in cookies.items():
            if deletes_cookie(morsel):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel
