"""Channels consumers in Django's URLconf: ``path("ws/chat/<room>/", ChatConsumer.as_asgi())``.

The URL resolver hands asgi_bridge the ASGI application ``as_asgi()`` made; asgi_bridge runs it
as the view of the handshake, after ``settings.MIDDLEWARE``, with the scope Channels'
``URLRouter`` and ``AuthMiddlewareStack`` would give it: ``url_route``, ``cookies``, ``session``
and ``user``. Channel layers (``CHANNEL_LAYERS``) work as under Channels: the consumer uses them
itself. ``channels`` stays optional: nothing here imports it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from ..types import Message
from .handshake import SOCKET_KEY, origin_allowed
from .views import (
    WebSocket,
    WebSocketClosed,
    WebSocketState,
    ends_as_going_away,
    upgrade_required,
)

ASGIApplication = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def is_consumer(callback: object) -> bool:
    """Whether a resolved view is a Channels consumer's ``as_asgi()`` application."""
    return getattr(callback, "consumer_class", None) is not None


def consumer_view(app: ASGIApplication) -> Callable[..., Awaitable[HttpResponseBase]]:
    """A Django view that runs the consumer application on the handshake's socket."""

    @functools.wraps(app)
    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        socket: WebSocket | None = getattr(request, "scope", {}).get(SOCKET_KEY)
        if socket is None:
            return upgrade_required()
        if not origin_allowed(request):
            return HttpResponse("403 Forbidden: WebSocket origin not allowed.", status=403)
        scope = await consumer_scope(request, socket, args, kwargs)
        # The handler took the connect message to run the handshake: the consumer gets it again.
        connect: Message | None = {"type": "websocket.connect"}

        async def receive() -> Message:
            nonlocal connect
            if connect is not None:
                message, connect = connect, None
                return message
            return await socket._receive()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                socket.client_state = WebSocketState.CONNECTED
            elif kind == "websocket.close":
                # Before accept, the server answers the close with 403: the denial is sent.
                socket.client_state = WebSocketState.DISCONNECTED
            await socket._send(message)

        try:
            await app(scope, receive, send)
        except asyncio.CancelledError:
            if not await ends_as_going_away(socket):
                raise
        return WebSocketClosed()

    return view


async def consumer_scope(
    request: HttpRequest, socket: WebSocket, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The scope URLRouter inside AuthMiddlewareStack gives a consumer, from the request that
    went through MIDDLEWARE."""
    scope = dict(socket.scope)
    scope["url_route"] = {"args": args, "kwargs": kwargs}
    scope["cookies"] = dict(request.COOKIES)
    session = getattr(request, "session", None)
    if session is not None:
        scope["session"] = session
    auser = getattr(request, "auser", None)
    if auser is not None:
        # Resolved now, off the event loop's way, as AuthMiddleware resolves it for consumers.
        scope["user"] = await auser()
    return scope
