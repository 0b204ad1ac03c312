"""WebSockets in Django's URLconf: views, their handshake through ``MIDDLEWARE``, and denial."""

from .views import WebSocket, WebSocketDisconnect, WebSocketState, websocket

__all__ = ["WebSocket", "WebSocketDisconnect", "WebSocketState", "websocket"]
