"""Type-checked by tests/test_typing.py: what a project writes with asgi_bridge's WebSocket API."""

from django.http import HttpRequest
from django.urls import path

from asgi_bridge import WebSocketDisconnect, websocket
from asgi_bridge.websockets import WebSocket


@websocket
async def echo(request: HttpRequest, ws: WebSocket) -> None:
    await ws.accept()
    async for message in ws:
        await ws.send(message)


@websocket(subprotocols=["chat.v2"])
async def chat(request: HttpRequest, ws: WebSocket, room: str) -> None:
    await ws.accept(subprotocol="chat.v2")


urlpatterns = [path("ws/echo/", echo), path("ws/chat/<str:room>/", chat)]
EXPORTED = WebSocketDisconnect
