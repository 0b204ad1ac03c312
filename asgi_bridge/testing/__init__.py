"""ASGIClient: test a project through real ASGI messages, in-process, as a server would drive it.

HTTP requests and lifespan (``client.py``) and WebSockets (``websocket.py``).
"""

from .client import (
    ApplicationTimeout,
    ASGIClient,
    ASGIProtocolError,
    ClientResponse,
    DisconnectedError,
    Headers,
    LifespanFailed,
)
from .websocket import SyncWebSocketSession, WebSocketDenied, WebSocketSession

__all__ = [
    "ASGIClient",
    "ASGIProtocolError",
    "ApplicationTimeout",
    "ClientResponse",
    "DisconnectedError",
    "Headers",
    "LifespanFailed",
    "SyncWebSocketSession",
    "WebSocketDenied",
    "WebSocketSession",
]
