"""Properties of ASGIHandler over generated ASGI conversations (issue 21), found with Hypothesis.

Each example drives the handler in-process, with no test client, through one request: a
generated scope (hostile paths, headers, root_path, missing optional keys), a body split at
random sizes, stray and duplicate messages, a disconnect at any point, ``send`` failing at any
call, and a view of every kind (tests/fuzz_urls.py). After every example:

- the call returns within BOUND seconds;
- request_started and request_finished each fired exactly once (neither, when the client left
  before its body was read, as with Django's handler);
- every iterator and file the view opened is closed, and no file descriptor is left open;
- no pool thread is left busy, no task is left running, and all after_response() work ran;
- the messages sent form a valid ASGI response, complete unless the client left or a stream
  failed, and nothing is sent after a disconnect was received;
- an error becomes a 500 or a 4xx. The only exceptions that may leave the handler are those
  Django's handler lets out too: a view's error raised by its stream once the response has
  started (too late for a 500; the response is left unfinished so that the server aborts it),
  and the AssertionError for a data message after the body (a server bug).

The CI profile runs PROPERTY_EXAMPLES examples of each property; ``scripts/fuzz`` selects the
long profile (``ASGI_BRIDGE_FUZZ=long``, ``ASGI_BRIDGE_FUZZ_EXAMPLES`` examples each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import SimpleTestCase, override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asgi_bridge import ASGIHandler
from asgi_bridge.metrics import thread_metrics
from asgi_bridge.sending import PATHSEND
from asgi_bridge.types import Message, Scope

from .fuzz_urls import STREAMING, VIEWS, ViewError, opened

# Seconds an example may take before it counts as a hang; none takes near that.
BOUND = 10.0
BODY_LIMIT = 4096
PROPERTY_EXAMPLES = 300

settings.register_profile(
    "handler-ci",
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "handler-long",
    max_examples=int(os.environ.get("ASGI_BRIDGE_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings(
    settings.get_profile(
        "handler-long" if os.environ.get("ASGI_BRIDGE_FUZZ") == "long" else "handler-ci"
    )
)

DISCONNECT: Message = {"type": "http.disconnect"}


class ClientGone(OSError):
    """What ``send`` raises once the client has left, as ASGI 2.4 asks of servers."""


@dataclass
class Conversation:
    """One request as the server sees it: the scope, what it receives, how sending goes."""

    scope: Scope
    body_messages: list[Message]
    # Index in body_messages where the client disconnects instead; None: the body completes.
    disconnect_in_body: int | None
    stray: list[Message]
    # After the script: the client leaves once this many sends were attempted (None: never).
    disconnect_after_sends: int | None
    # The send call (0-based) that raises, and what: OSError or granian's RuntimeError.
    send_fails_at: int | None
    send_error: Exception = field(default_factory=lambda: ClientGone("client gone"))
    # Index in MIDDLEWARE_CHOICES of the handler that serves it.
    chain: int = 0


class Client:
    """The server's ``receive`` and ``send`` for one conversation, recording what happens."""

    def __init__(self, conversation: Conversation) -> None:
        body = conversation.body_messages
        if conversation.disconnect_in_body is not None:
            self.script = [*body[: conversation.disconnect_in_body], DISCONNECT]
        else:
            self.script = [*body, *conversation.stray]
        self.conversation = conversation
        self.sent: list[Message] = []
        self.attempts = 0
        self.after_disconnect: list[Message] = []
        self.disconnected = False
        self.failed = False
        self.body_complete = False
        self.received_bytes = 0
        self.changed = asyncio.Event()

    async def receive(self) -> Message:
        if self.disconnected:
            return DISCONNECT
        if self.script:
            message = self.script.pop(0)
        else:
            limit = self.conversation.disconnect_after_sends
            while not self.failed and (limit is None or self.attempts < limit):
                self.changed.clear()
                await self.changed.wait()
            message = DISCONNECT
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif not self.body_complete:
            self.received_bytes += len(message.get("body", b""))
            self.body_complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        index = self.attempts
        self.attempts += 1
        self.changed.set()
        if self.disconnected:
            self.after_disconnect.append(message)
            raise ClientGone("sent after http.disconnect")
        if self.failed or index == self.conversation.send_fails_at:
            self.failed = True
            raise self.conversation.send_error
        self.sent.append(message)


# --- strategies -------------------------------------------------------------------------

PATH_TEXT = st.lists(
    st.sampled_from(["a", "/", ".", "..", "%", "%2F", "%00", "%ff", "é", "ü", "€", "😀", "\n"])
    | st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=12,
).map("".join)
ROOT_PATHS = st.sampled_from(["", "/", "/prefix", "/prefix/", "/ü", "/a%20b", "//", "/plain"])
METHODS = st.sampled_from(["GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "get", "FOO"])
HEADER_NAMES = st.sampled_from(
    [
        b"host",
        b"content-type",
        b"content-length",
        b"cookie",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"accept",
        b"x-\xff\x00",
        b"bad header",
        b"",
        b"x" * 300,
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            b"testserver",
            b"bad host!",
            b"[::1]:80",
            b"multipart/form-data; boundary=xyz",
            b"multipart/form-data",
            b"application/x-www-form-urlencoded",
            b"text/plain; charset=nonesuch",
            b"0",
            b"12",
            b"-1",
            b"99999999999999999999999999",
            b" 5 ",
            b"chunked",
            b"a=1; a=2; =; \xff=\xfe",
            b"\r\n\x00\xff",
        ]
    ),
    st.binary(max_size=40),
    st.integers(1, 100_000).map(lambda size: b"v" * size),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8).flatmap(
    # Some header repeated many times, as a cookie-stuffing client would.
    lambda headers: st.integers(0, 200).map(
        lambda times: headers + headers[:1] * times if headers else headers
    )
)
QUERIES = st.tuples(st.integers(0, 40), st.none() | st.integers(0, 5), st.binary(max_size=12)).map(
    lambda q: (
        b"parts=%d%s%s"
        % (q[0], b"" if q[1] is None else b"&fail=%d" % q[1], b"&" + q[2] if q[2] else b"")
    )
)
# No middleware: Django's async chain. Sync middleware: asgi_bridge's sync chain, the view on a
# thread; GZipMiddleware also wraps streams in a compressor of its own.
MIDDLEWARE_CHOICES = [
    [],
    ["django.middleware.security.SecurityMiddleware"],
    [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",
    ],
]
OPTIONAL_KEYS = ["scheme", "raw_path", "root_path", "client", "server", "query_string", "asgi"]


@st.composite
def scopes(draw: st.DrawFn, kinds: st.SearchStrategy[str], hostile: bool) -> Scope:
    kind = draw(kinds)
    rest = draw(PATH_TEXT) if hostile else draw(st.sampled_from(["", "x", "a/b"]))
    root_path = draw(ROOT_PATHS) if hostile else ""
    path = f"/{kind}/{rest}"
    if root_path and draw(st.booleans()):
        path = root_path.rstrip("/") + path
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": draw(st.sampled_from(["2.0", "2.4"]))},
        "http_version": draw(st.sampled_from(["1.1", "1.0", "2"])),
        "method": draw(METHODS),
        "scheme": draw(st.sampled_from(["http", "https"])),
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": draw(QUERIES),
        "root_path": root_path,
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    if draw(st.booleans()):
        scope["extensions"] = {PATHSEND: {}}
    if draw(st.booleans()):
        scope["headers"].append((b"accept-encoding", b"gzip"))
    if hostile:
        scope["headers"] = draw(HEADERS)
        if draw(st.booleans()):
            scope["raw_path"] = draw(st.binary(max_size=30))
        for key in draw(st.lists(st.sampled_from(OPTIONAL_KEYS), unique=True, max_size=3)):
            del scope[key]
    return scope


@st.composite
def conversations(draw: st.DrawFn, kinds: st.SearchStrategy[str], hostile: bool) -> Conversation:
    scope = draw(scopes(kinds, hostile))
    body = draw(st.binary(max_size=BODY_LIMIT + 2000))
    # Split at random sizes; a message may be empty, and the last may leave more_body out.
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    messages: list[Message] = []
    for index, piece in enumerate(pieces):
        message: Message = {"type": "http.request", "body": piece}
        last = index == len(pieces) - 1
        if not last or draw(st.booleans()):
            message["more_body"] = not last
        if not piece and draw(st.booleans()):
            del message["body"]
        messages.append(message)
    disconnect_in_body = draw(st.none() | st.integers(0, len(messages) - 1))
    stray = draw(
        st.lists(
            st.sampled_from(
                [
                    {"type": "http.request", "body": b"", "more_body": False},
                    {"type": "http.request"},
                    messages[-1],
                    {"type": "http.request", "body": b"late", "more_body": True},
                    {"type": "http.response.start", "status": 200},
                    {"type": "lifespan.startup"},
                ]
            ),
            max_size=3,
        )
    )
    return Conversation(
        scope=scope,
        body_messages=messages,
        disconnect_in_body=disconnect_in_body,
        stray=stray,
        disconnect_after_sends=draw(st.none() | st.integers(0, 12)),
        send_fails_at=draw(st.none() | st.integers(0, 12)),
        send_error=draw(
            st.sampled_from(
                [ClientGone("client gone"), RuntimeError("ASGI flow error: Transport closed")]
            )
        ),
        chain=draw(st.integers(0, len(MIDDLEWARE_CHOICES) - 1)),
    )


ALL_KINDS = st.sampled_from(sorted(VIEWS))


# --- the invariants ---------------------------------------------------------------------


def stray_data_after_body(conversation: Conversation) -> bool:
    """Whether the script has a message that listen_for_disconnect must refuse."""
    return any(
        message["type"] != "http.request" or message.get("body") or message.get("more_body")
        for message in conversation.stray
    )


@override_settings(
    ROOT_URLCONF="tests.fuzz_urls",
    ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": BODY_LIMIT},
    # Bodies past 1 KiB spool to disk: a file descriptor to leak.
    FILE_UPLOAD_MAX_MEMORY_SIZE=1024,
)
async def returns_within(bound: float, call: Coroutine[Any, Any, None]) -> bool:
    """Await ``call`` in this task, as servers do; whether ``bound`` expired on the way.

    Not wait_for(): an event stream takes a cancellation that is not the handler's own as its
    end and returns, so a hang in one would pass for a return. asyncio.timeout() says whether
    it expired either way (Python 3.11+; 3.10 keeps wait_for()).
    """
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:
        try:
            await asyncio.wait_for(call, bound)
        except asyncio.TimeoutError:
            return True
        return False
    try:
        async with timeout(bound) as scope:
            await call
    except TimeoutError:
        return True
    return bool(scope.expired())


class HandlerProperties(SimpleTestCase):
    loop: asyncio.AbstractEventLoop

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # One loop for every example, as a server has.
        cls.loop = asyncio.new_event_loop()
        cls.addClassCleanup(cls.loop.close)
        handle, path = tempfile.mkstemp(prefix="asgi_bridge-fuzz-")
        os.write(handle, os.urandom(150_000))
        os.close(handle)
        cls.addClassCleanup(os.unlink, path)
        opened.file_path = path
        # 500s and client departures are logged; thousands of examples would flood the output.
        logging.disable(logging.CRITICAL)
        cls.addClassCleanup(logging.disable, logging.NOTSET)

    def setUp(self) -> None:
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)
        self.signals: list[str] = []

        def started(**kwargs: object) -> None:
            self.signals.append("started")

        def finished(**kwargs: object) -> None:
            self.signals.append("finished")

        request_started.connect(started)
        request_finished.connect(finished)
        self.addCleanup(request_started.disconnect, started)
        self.addCleanup(request_finished.disconnect, finished)
        self.handlers = []
        for middleware in MIDDLEWARE_CHOICES:
            with override_settings(MIDDLEWARE=middleware):
                self.handlers.append(ASGIHandler())
        self.assertIsNone(self.handlers[0].sync_handler)
        self.assertIsNotNone(self.handlers[1].sync_handler)

    def check(self, conversation: Conversation) -> None:
        self.loop.run_until_complete(self.converse(conversation))

    async def converse(self, conversation: Conversation) -> None:
        opened.clear()
        self.signals.clear()
        descriptors = set(os.listdir("/proc/self/fd"))
        client = Client(conversation)
        scope = conversation.scope
        handler = self.handlers[conversation.chain]
        self.escaped: type[BaseException] | None = None
        try:
            if await returns_within(BOUND, handler(dict(scope), client.receive, client.send)):
                self.fail(f"no return within {BOUND} s; sent {client.sent}")
        except ViewError:
            self.escaped = ViewError
            # Only a stream's error, once the response has started: too late for a 500.
            self.assertTrue(set(opened.ran) & STREAMING, "a ViewError escaped from a non-stream")
            self.assertTrue(client.sent, "a ViewError escaped before the response started")
            self.assertNotEqual(client.sent[-1].get("more_body", True), False)
        except AssertionError as error:
            if not str(error).startswith("Invalid ASGI message after request body"):
                raise
            self.escaped = AssertionError
            self.assertTrue(stray_data_after_body(conversation), error)
        if not opened.jobs_queued:
            # Without after_response() work, the request is over when the call returns.
            current = asyncio.current_task()
            self.assertEqual([task for task in asyncio.all_tasks() if task is not current], [])
        # A thread is given back once its last job has handed its result to the loop, so it
        # may still count as busy for a moment: settle() waits for that, within BOUND.
        await self.settle()
        self.check_signals(conversation, client)
        gzip_chain = (
            "django.middleware.gzip.GZipMiddleware" in MIDDLEWARE_CHOICES[conversation.chain]
        )
        self.assertEqual(opened.unclosed(gzip_chain), [])
        self.assertEqual(set(os.listdir("/proc/self/fd")) - descriptors, set())
        self.assertEqual(opened.jobs_run, opened.jobs_queued)
        self.check_messages(conversation, client)

    async def settle(self) -> None:
        """Wait, up to BOUND, for after_response() work and threads; then none may be busy."""
        current = asyncio.current_task()
        deadline = self.loop.time() + BOUND
        while self.loop.time() < deadline:
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            metrics = thread_metrics()
            if not tasks and metrics.busy == 0 and opened.jobs_run == opened.jobs_queued:
                break
            await asyncio.sleep(0.001)
        self.assertEqual([task for task in asyncio.all_tasks() if task is not current], [])
        metrics = thread_metrics()
        self.assertEqual((metrics.busy, metrics.waiting), (0, 0))

    def check_signals(self, conversation: Conversation, client: Client) -> None:
        declared = [v for n, v in conversation.scope.get("headers", ()) if n == b"content-length"]
        rejected = (declared and declared[0].isdigit() and int(declared[0]) > BODY_LIMIT) or (
            client.received_bytes > BODY_LIMIT
        )
        if client.body_complete or rejected:
            self.assertEqual(self.signals, ["started", "finished"])
        else:
            # The client left before its body was read: Django's handler sends neither.
            self.assertEqual(self.signals, [])
            self.assertEqual(client.sent, [])

    def check_messages(self, conversation: Conversation, client: Client) -> None:
        self.assertEqual(client.after_disconnect, [], "sent after http.disconnect")
        sent = client.sent
        event(f"escaped {self.escaped.__name__}" if self.escaped else "returned")
        if not sent:
            event("nothing sent")
            return
        start, *bodies = sent
        self.assertEqual(start["type"], "http.response.start")
        status = start["status"]
        event(f"status {status}")
        self.assertIsInstance(status, int)
        for name, value in start["headers"]:
            self.assertIsInstance(name, bytes)
            self.assertIsInstance(value, bytes)
        if set(opened.ran) & {"raise_sync", "raise_async"}:
            self.assertTrue(status == 500 or 400 <= status < 500, status)
        else:
            self.assertTrue(status in (200, 304) or 400 <= status < 500, status)
        finished = False
        for message in bodies:
            self.assertFalse(finished, f"{message} after the last body")
            if message["type"] == PATHSEND:
                self.assertIsInstance(message["path"], str)
                finished = True
                continue
            self.assertEqual(message["type"], "http.response.body")
            self.assertIsInstance(message["body"], bytes)
            finished = not message["more_body"]
            if conversation.scope["method"] == "HEAD":
                self.assertEqual(message["body"], b"")
        if not (client.failed or client.disconnected or self.escaped):
            # Nothing interrupted it: the response is complete.
            self.assertTrue(finished, f"incomplete response: {sent}")

    # --- the properties -----------------------------------------------------------------

    @PROFILE
    @given(conversations(ALL_KINDS, hostile=False))
    def test_any_conversation_with_any_view(self, conversation: Conversation) -> None:
        """Body splits, disconnects, stray messages and send failures, for every view."""
        self.check(conversation)

    @PROFILE
    @given(conversations(ALL_KINDS, hostile=True))
    def test_hostile_scopes(self, conversation: Conversation) -> None:
        """Non-ASCII and percent-encoded paths, odd root_paths, huge, repeated and invalid
        headers, missing optional keys, on top of everything else."""
        self.check(conversation)

    @PROFILE
    @given(
        conversations(st.sampled_from(sorted(STREAMING | {"file"})), hostile=False),
        st.integers(0, 20),
    )
    def test_leaving_during_streaming(self, conversation: Conversation, sends: int) -> None:
        """The client leaves, or send fails, while a stream or a file is being sent."""
        conversation.stray = []
        conversation.disconnect_in_body = None
        conversation.disconnect_after_sends = sends
        self.check(conversation)
