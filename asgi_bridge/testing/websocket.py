"""WebSocket sessions for ``ASGIClient.websocket()``: the application driven in-process, as a
server drives it, through ASGI's WebSocket messages.

``async with client.websocket(path) as ws`` in async tests; ``with client.websocket(path) as ws``
in sync ones (a plain ``TestCase``), where the same session runs on an event loop of its own and
the test's thread runs the application's sync code, inside the test's transaction.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from types import TracebackType
from typing import Any, TypeVar

from ..threads import waiting_test_thread
from ..types import ASGIApp, Message, Scope
from ..websockets.views import WebSocketDisconnect
from .client import ApplicationTimeout, ASGIProtocolError, Headers, connections_kept_open


class WebSocketDenied(Exception):
    """The application refused the handshake: ``status_code``, ``headers`` and ``content`` of
    the response it sent (403 and empty when it only closed, as a server would answer)."""

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        super().__init__(f"WebSocket handshake denied with {status_code}")


class WebSocketSession:
    """One WebSocket connection to the application: ``send()`` and ``receive()`` messages,
    ``close()`` it; entering it performs the handshake and leaving it closes the connection."""

    def __init__(self, app: ASGIApp, scope: Scope, timeout: float | None) -> None:
        self.app = app
        self.scope = scope
        self.timeout = timeout
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        # A message receive_nothing() found: the next receive() returns it.
        self._held: deque[Message] = deque()
        self._task: asyncio.Task[None] | None = None
        self.subprotocol: str | None = None
        self.accept_headers = Headers([])
        self.closed = False
        self.close_code: int | None = None
        self._sync: SyncWebSocketSession

    def __enter__(self) -> SyncWebSocketSession:
        """The session for sync test code: ``with client.websocket(path) as ws``."""
        self._sync = SyncWebSocketSession(self).open()
        return self._sync

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._sync.__exit__(kind, error, traceback)

    async def __aenter__(self) -> WebSocketSession:
        async def serve() -> None:
            # As for HTTP requests: no close_old_connections around the connection, whose sync
            # code runs inside the test case's transaction in an async test method.
            with connections_kept_open():
                await self.app(self.scope, self._to_app.get, self._put)

        self._task = asyncio.create_task(serve())
        await self._to_app.put({"type": "websocket.connect"})
        answer = await self._next()
        kind = answer["type"]
        if kind == "websocket.accept":
            self.subprotocol = answer.get("subprotocol")
            self.accept_headers = Headers(answer.get("headers") or [])
            return self
        # As a server does once it has refused the handshake: the application hears it closed.
        await self._to_app.put({"type": "websocket.disconnect", "code": 1006})
        await self._wait_for_app()
        if kind == "websocket.close":
            raise WebSocketDenied(403, Headers([]), b"")
        if kind == "websocket.http.response.start":
            content = b""
            # The body came before the application ended: it is queued.
            while not self._from_app.empty():
                part = self._from_app.get_nowait()
                content += part.get("body", b"")
            raise WebSocketDenied(answer["status"], Headers(answer.get("headers") or []), content)
        raise ASGIProtocolError(f"Unexpected first message of a WebSocket: {kind!r}")

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _put(self, message: Message) -> None:
        await self._from_app.put(message)

    async def _next(self) -> Message:
        assert self._task is not None
        if self._held:
            return self._held.popleft()
        getting = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getting, self._task}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getting in done:
            return getting.result()
        getting.cancel()
        if self._task in done:
            self._task.result()  # Raises what the application raised.
            raise ASGIProtocolError("The application ended without answering the WebSocket.")
        raise ApplicationTimeout(f"No WebSocket message from the application in {self.timeout} s")

    async def _wait_for_app(self) -> None:
        assert self._task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.timeout)
        except asyncio.TimeoutError:
            raise ApplicationTimeout(
                f"The application did not end within {self.timeout} s of the close"
            ) from None

    async def send(self, data: str | bytes) -> None:
        """Send a text frame for ``str``, a binary frame for ``bytes``."""
        key = "text" if isinstance(data, str) else "bytes"
        await self._to_app.put({"type": "websocket.receive", key: data})

    async def send_json(self, data: Any) -> None:
        await self.send(json.dumps(data))

    async def receive(self) -> str | bytes:
        """The application's next message; WebSocketDisconnect once it closed the socket."""
        if self.closed:
            raise WebSocketDisconnect(self.close_code or 1000)
        message = await self._next()
        if message["type"] == "websocket.close":
            self.closed = True
            self.close_code = int(message.get("code", 1000))
            raise WebSocketDisconnect(self.close_code, message.get("reason") or "")
        if message["type"] != "websocket.send":
            raise ASGIProtocolError(f"Unexpected message on an open WebSocket: {message['type']!r}")
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    async def receive_text(self) -> str:
        message = await self.receive()
        assert isinstance(message, str), f"expected a text frame, got {message!r}"
        return message

    async def receive_bytes(self) -> bytes:
        message = await self.receive()
        assert isinstance(message, bytes), f"expected a binary frame, got {message!r}"
        return message

    async def receive_json(self) -> Any:
        return json.loads(await self.receive())

    async def receive_nothing(self, timeout: float = 0.1) -> bool:
        """Whether the application sends nothing within ``timeout`` seconds."""
        if self._held:
            return False
        try:
            message = await asyncio.wait_for(self._from_app.get(), timeout)
        except asyncio.TimeoutError:
            return True
        # Kept for the next receive(): nothing is lost by asking.
        self._held.append(message)
        return False

    async def close(self, code: int = 1000) -> None:
        """Close from the client's side and wait for the application to end."""
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled():
                self._task.result()
            return
        await self._to_app.put({"type": "websocket.disconnect", "code": code})
        self.closed = True
        await self._wait_for_app()
        self._task.result()


T = TypeVar("T")


class WaitingThreadExecutor(Executor):
    """Runs what is submitted to it on one thread, while that thread waits in ``run_until()``:
    what ``async_to_sync`` does for its caller, here across many calls into one event loop."""

    def __init__(self) -> None:
        self._work: SimpleQueue[Callable[[], None] | None] = SimpleQueue()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # Handed to whoever awaits it, as an executor does.
                future.set_exception(error)

        self._work.put(run)
        return future

    def run_until(self, future: Future[T]) -> T:
        """Run submitted work until ``future`` is done; its result."""
        future.add_done_callback(lambda _: self._work.put(None))
        while not future.done():
            work = self._work.get()
            if work is not None:
                work()
        return future.result()


class SyncWebSocketSession:
    """A ``WebSocketSession`` for sync tests: the same methods, not coroutines.

    The application runs on an event loop in a thread of the session's own; each call waits for
    its answer on the test's thread, which meanwhile runs the application's sync code (the ORM,
    sessions, ``request.user``), so the rows a ``TestCase`` created are visible to the socket.
    """

    def __init__(self, session: WebSocketSession) -> None:
        self.session = session
        self._executor = WaitingThreadExecutor()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name="asgi_bridge test WebSocket loop", daemon=True
        )

    def _run_loop(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # What the application left running (a writer task of a closed socket) ends here.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        async def on_the_loop() -> T:
            # Copied into the application's task when the handshake starts it.
            waiting_test_thread.set(self._executor)
            return await coroutine

        future = asyncio.run_coroutine_threadsafe(on_the_loop(), self._loop)
        return self._executor.run_until(future)

    def open(self) -> SyncWebSocketSession:
        self._thread.start()
        try:
            self._call(self.session.__aenter__())
        except BaseException:
            self._stop()
            raise
        return self

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> SyncWebSocketSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self._stop()

    @property
    def subprotocol(self) -> str | None:
        return self.session.subprotocol

    @property
    def accept_headers(self) -> Headers:
        return self.session.accept_headers

    @property
    def closed(self) -> bool:
        return self.session.closed

    @property
    def close_code(self) -> int | None:
        return self.session.close_code

    def send(self, data: str | bytes) -> None:
        """Send a text frame for ``str``, a binary frame for ``bytes``."""
        self._call(self.session.send(data))

    def send_json(self, data: Any) -> None:
        self._call(self.session.send_json(data))

    def receive(self) -> str | bytes:
        """The application's next message; WebSocketDisconnect once it closed the socket."""
        return self._call(self.session.receive())

    def receive_text(self) -> str:
        return self._call(self.session.receive_text())

    def receive_bytes(self) -> bytes:
        return self._call(self.session.receive_bytes())

    def receive_json(self) -> Any:
        return self._call(self.session.receive_json())

    def receive_nothing(self, timeout: float = 0.1) -> bool:
        """Whether the application sends nothing within ``timeout`` seconds."""
        return self._call(self.session.receive_nothing(timeout))

    def close(self, code: int = 1000) -> None:
        """Close from the client's side and wait for the application to end."""
        self._call(self.session.close(code))
