"""The ``@websocket`` view decorator and the ``WebSocket`` object a view talks through.

A WebSocket view is an async function of the handshake request and the socket::

    @websocket
    async def echo(request, ws):
        await ws.accept()
        async for message in ws:
            await ws.send(message)

It sits in ``urlpatterns`` like any view. The handshake runs through ``settings.MIDDLEWARE`` as a
GET request; the view is called with the socket, and whatever it (or middleware) returns before
``accept()`` is the handshake's denial. A plain HTTP request to it gets ``426 Upgrade Required``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar, overload

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from .. import metrics
from ..aio import take_back_cancellation
from ..conf import bridge_settings
from ..types import Receive, Send
from .handshake import SOCKET_KEY, origin_allowed

logger = logging.getLogger("django.request")
bridge_logger = logging.getLogger("asgi_bridge")

V = TypeVar("V", bound=Callable[..., Awaitable[Any]])


class WebSocketState(enum.Enum):
    """Where the connection is, as the view sees it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class WebSocketDisconnect(Exception):
    """The client closed the connection (or it was lost): ``code`` says how."""

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))


class WebSocket:
    """One WebSocket connection: ``accept()`` it, ``receive()`` and ``send()`` messages,
    ``close()`` it; ``async for message in ws`` receives until the client closes."""

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.client_state = WebSocketState.CONNECTING
        # What the client offered in Sec-WebSocket-Protocol, in its order.
        self.subprotocols: list[str] = list(scope.get("subprotocols") or ())
        # Messages sent while another send() waits for the server (the client reads slowly),
        # in order; at most send_queue_size, past which the socket is closed with 1013.
        self._outgoing: deque[dict[str, Any]] = deque()
        self._writing = False
        self._overflowed = False
        # A close asked for while a send was under way: sent after it, by the same writer.
        self._close_after: tuple[int, str] | None = None
        # The task writing what deliver() queued, while there is one.
        self._writer: asyncio.Task[None] | None = None
        # The broadcast groups this socket is in; it leaves them all when it ends.
        self.groups: set[str] = set()
        self.send_queue_size = bridge_settings().websocket_send_queue_size

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[tuple[str, str]] | None = None
    ) -> None:
        """Complete the handshake, choosing ``subprotocol`` among those the client offered."""
        if self.client_state is not WebSocketState.CONNECTING:
            raise RuntimeError(f"accept() on a WebSocket that is {self.client_state.value}.")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(
                f"Subprotocol {subprotocol!r} was not offered by the client "
                f"(offered: {', '.join(self.subprotocols) or 'none'})."
            )
        message: dict[str, Any] = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = [
                (name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers
            ]
        await self._send(message)
        self.client_state = WebSocketState.CONNECTED

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one. Raises
        WebSocketDisconnect when the client closes."""
        if self.client_state is WebSocketState.CONNECTING:
            raise RuntimeError("receive() before accept(): accept the WebSocket first.")
        if self.client_state is WebSocketState.DISCONNECTED:
            raise WebSocketDisconnect(1006, "receive() on a closed WebSocket")
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        if kind == "websocket.disconnect":
            self.client_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(int(message.get("code", 1005)), message.get("reason") or "")
        raise RuntimeError(f"Unexpected ASGI message on an open WebSocket: {kind!r}.")

    async def receive_text(self) -> str:
        message = await self.receive()
        if not isinstance(message, str):
            raise TypeError("Expected a text frame, received a binary one.")
        return message

    async def receive_bytes(self) -> bytes:
        message = await self.receive()
        if not isinstance(message, bytes):
            raise TypeError("Expected a binary frame, received a text one.")
        return message

    async def join(self, group: str) -> None:
        """Receive what is broadcast to ``group`` (asgi_bridge.broadcast), until leave() or
        the end of the connection."""
        from ..broadcasting import groups

        await groups().join(group, self)

    async def leave(self, group: str) -> None:
        from ..broadcasting import groups

        groups().leave(group, self)

    async def receive_json(self) -> Any:
        message = await self.receive()
        return json.loads(message)

    async def send(self, data: str | bytes) -> None:
        """Send a text frame for ``str``, a binary frame for ``bytes``.

        It returns once the server took the message, or, while another send() of this socket
        waits for the server (a client that reads slowly), once the message is queued behind
        it. Past ``ASGI_BRIDGE["WEBSOCKET_SEND_QUEUE_SIZE"]`` queued messages the client is not
        keeping up: the socket is closed with 1013 (try again later), the queued messages are
        dropped and logged, and this send raises WebSocketDisconnect(1013).
        """
        message = self._outgoing_message(data)
        if self._writing:
            self._enqueue(message)
            return
        self._writing = True
        await self._write(message)

    def deliver(self, data: str | bytes) -> bool:
        """Queue ``data`` for this socket without waiting, from the event loop's thread: what a
        broadcast does for each member of a group. A writer task sends it; a slow reader is
        closed with 1013 as with send(). False if the socket cannot take it (closed, or its
        client not keeping up)."""
        try:
            message = self._outgoing_message(data)
            if self._writing:
                self._enqueue(message)
                return True
        except (WebSocketDisconnect, RuntimeError):
            return False
        self._writing = True
        self._writer = asyncio.get_running_loop().create_task(self._write_in_background(message))
        return True

    def _outgoing_message(self, data: str | bytes) -> dict[str, Any]:
        if self._overflowed:
            raise WebSocketDisconnect(1013, "the client did not read its messages")
        if self.client_state is not WebSocketState.CONNECTED:
            raise RuntimeError(f"send() on a WebSocket that is {self.client_state.value}.")
        if isinstance(data, str):
            return {"type": "websocket.send", "text": data}
        if isinstance(data, (bytes, bytearray, memoryview)):
            return {"type": "websocket.send", "bytes": bytes(data)}
        raise TypeError(f"send() takes str or bytes, not {type(data).__name__}.")

    def _enqueue(self, message: dict[str, Any]) -> None:
        if len(self._outgoing) >= self.send_queue_size:
            self._overflow()
            raise WebSocketDisconnect(1013, "the client did not read its messages")
        self._outgoing.append(message)

    async def _write(self, message: dict[str, Any]) -> None:
        """Write ``message``, then what others queued meanwhile, in order: the caller holds the
        pen (``_writing``), which this gives back."""
        try:
            await self._send(message)
            while self._outgoing:
                await self._send(self._outgoing.popleft())
        finally:
            self._writing = False
        if self._overflowed:
            await self.close(1013, "Try Again Later")
        elif self._close_after is not None:
            await self.close(*self._close_after)

    async def _write_in_background(self, message: dict[str, Any]) -> None:
        try:
            await self._write(message)
        except Exception as error:
            # The client has gone (the server refused the message): nobody waits for this.
            bridge_logger.debug("WebSocket write failed (%s): %r", self.scope.get("path"), error)
            self._outgoing.clear()
            self.client_state = WebSocketState.DISCONNECTED

    def _overflow(self) -> None:
        """Too many messages wait for a client that does not read: drop them, close at once
        if nothing is being written, else once the write under way returns."""
        dropped = len(self._outgoing)
        self._outgoing.clear()
        self._overflowed = True
        metrics.slow_websocket_closes.value += 1
        bridge_logger.warning(
            "Closing a WebSocket whose client does not read (%s): %d queued messages dropped "
            "(ASGI_BRIDGE['WEBSOCKET_SEND_QUEUE_SIZE'] is %d)",
            self.scope.get("path"),
            dropped,
            self.send_queue_size,
            extra={"status_code": 1013},
        )

    async def send_json(self, data: Any) -> None:
        await self.send(json.dumps(data, separators=(",", ":")))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection; a no-op once it is closed."""
        if self.client_state is WebSocketState.DISCONNECTED:
            return
        if self._writing:
            # Never two sends at once on one connection: the writer closes once it is done.
            self._close_after = (code, reason)
            return
        await self._send({"type": "websocket.close", "code": code, "reason": reason})
        self.client_state = WebSocketState.DISCONNECTED

    async def close_after_error(self) -> None:
        """Close with 1011 (internal error)."""
        await self._close_with_code(1011, "Internal Server Error")

    async def close_going_away(self) -> None:
        """Close with 1001 (going away): the server is shutting down."""
        await self._close_with_code(1001, "Going Away")

    async def _close_with_code(self, code: int, reason: str) -> None:
        """Close with ``code``, which daphne refuses: it lets an application close only with
        1000 or 3000-4999 and raises on any other code, so there the close is a 1000 whose
        reason says it. Quiet when the client or the server has already gone."""
        try:
            await self.close(code, reason)
        except OSError:
            return  # The client has gone.
        except Exception:
            if self.client_state is not WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await self.close(1000, reason)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.receive()
            except WebSocketDisconnect:
                return


async def ends_as_going_away(socket: WebSocket) -> bool:
    """Whether a cancellation of ``socket``'s view, just caught, ends it as the server going
    away; if so, the socket is closed and the cancellation taken back.

    asgi_bridge never cancels a WebSocket view, so a cancellation while the socket is open is
    the server stopping it, as hypercorn does at the end of its graceful timeout and daphne at
    shutdown. The client gets 1001 (going away) rather than the server's 1011 for an
    application that did not close, and the view returns, so the response middleware and
    request_finished run as for any close. Before accept(), or once the client has gone, the
    cancellation is left to propagate."""
    if socket.client_state is not WebSocketState.CONNECTED:
        return False
    bridge_logger.debug(
        "WebSocket view cancelled (the server shutting down?): closing with 1001 (%s)",
        socket.scope.get("path"),
    )
    await socket.close_going_away()
    take_back_cancellation()
    return True


class WebSocketClosed(HttpResponse):
    """What a WebSocket view gives the middleware chain once its connection is over: the
    response middleware sees (process_response saves a changed session), never sent."""

    status_code = 101


def upgrade_required() -> HttpResponse:
    response = HttpResponse("426 Upgrade Required: this URL serves WebSockets.", status=426)
    response["Upgrade"] = "websocket"
    response["Connection"] = "Upgrade"
    return response


WebSocketViewFunction = Callable[..., Awaitable[HttpResponseBase | None]]
# What @websocket returns: an async Django view, as django.urls.path() takes one.
WebSocketDjangoView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


@overload
def websocket(view: V, /) -> WebSocketDjangoView: ...


@overload
def websocket(
    *, subprotocols: Iterable[str] | None = None
) -> Callable[[V], WebSocketDjangoView]: ...


def websocket(view: Any = None, /, *, subprotocols: Iterable[str] | None = None) -> Any:
    """Make ``async def view(request, ws, *args, **kwargs)`` a Django view that serves
    WebSockets. ``subprotocols``, if given, are those the view supports: a handshake offering
    none of them is denied (403), and ``ws.subprotocols`` keeps only those."""
    supported = list(subprotocols) if subprotocols is not None else None

    def decorate(func: WebSocketViewFunction) -> WebSocketDjangoView:
        @functools.wraps(func)
        async def websocket_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            socket: WebSocket | None = getattr(request, "scope", {}).get(SOCKET_KEY)
            if socket is None:
                return upgrade_required()
            if not origin_allowed(request):
                return HttpResponse("403 Forbidden: WebSocket origin not allowed.", status=403)
            if supported is not None:
                socket.subprotocols = [each for each in socket.subprotocols if each in supported]
                if not socket.subprotocols:
                    return HttpResponse(
                        "403 Forbidden: none of the offered subprotocols is supported.",
                        status=403,
                    )
            try:
                answer = await func(request, socket, *args, **kwargs)
            except WebSocketDisconnect:
                answer = None
            except asyncio.CancelledError:
                if not await ends_as_going_away(socket):
                    raise
                return WebSocketClosed()
            except Exception:
                logger.exception(
                    "Error in WebSocket view: %s",
                    request.path,
                    extra={"status_code": 500, "request": request},
                )
                if socket.client_state is WebSocketState.CONNECTING:
                    raise  # Before accept(): Django answers 500, which denies the handshake.
                await socket.close_after_error()
                answer = None
            if socket.client_state is WebSocketState.CONNECTING:
                # Neither accepted nor denied with a response of its own: the server's 403.
                return answer if answer is not None else HttpResponse(status=403)
            await socket.close(1000)
            return WebSocketClosed()

        # Marks the view for the handler: its handshake reached a WebSocket view.
        websocket_view.serves_websockets = True  # type: ignore[attr-defined]
        return websocket_view

    if view is not None:
        return decorate(view)
    return decorate
