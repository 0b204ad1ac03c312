"""asgi_bridge: a drop-in replacement for Django's ASGI handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "ASGIHandler",
    "ASGIRequest",
    "WebSocketDisconnect",
    "__version__",
    "broadcast",
    "broadcast_sync",
    "get_asgi_application",
    "websocket",
]

if TYPE_CHECKING:
    from .broadcasting import broadcast, broadcast_sync
    from .handler import ASGIHandler
    from .request import ASGIRequest
    from .websockets import WebSocketDisconnect, websocket


def get_asgi_application() -> ASGIHandler:
    """Set up Django and return the ASGI application, like django.core.asgi.get_asgi_application."""
    import django

    from .handler import ASGIHandler

    django.setup(set_prefix=False)
    return ASGIHandler()


def __getattr__(name: str) -> object:
    # Lazy, so that importing asgi_bridge (e.g. for __version__) does not import Django's handlers.
    if name == "ASGIHandler":
        from .handler import ASGIHandler

        return ASGIHandler
    if name == "ASGIRequest":
        from .request import ASGIRequest

        return ASGIRequest
    if name in ("broadcast", "broadcast_sync"):
        from . import broadcasting

        return getattr(broadcasting, name)
    if name in ("websocket", "WebSocketDisconnect"):
        from . import websockets

        return getattr(websockets, name)
    raise AttributeError(f"module 'asgi_bridge' has no attribute {name!r}")
