"""Broadcast groups: send a message to every WebSocket in a group, from any code.

``await ws.join("room-42")`` puts a socket in a group; ``await broadcast("room-42", message)``
(async code) or ``broadcast_sync("room-42", message)`` (sync code: views, signal receivers)
sends it to every member: ``str`` as a text frame, ``bytes`` as a binary frame, anything else as
JSON text. Each member gets it through its own bounded queue (``WebSocket.deliver``), so one
slow reader neither holds the others up nor grows memory: it is closed with 1013.

``subscribe("room-42")`` listens without a WebSocket: ``EventStreamResponse(subscribe(...))``
streams a group to a browser's EventSource.

This first backend, ``MemoryBackend``, reaches the sockets of this process only.
"""

from __future__ import annotations

from typing import Any

from .memory import MemoryBackend, encode
from .subscriptions import subscribe

__all__ = ["MemoryBackend", "broadcast", "broadcast_sync", "encode", "groups", "subscribe"]

_groups = MemoryBackend()


def groups() -> MemoryBackend:
    """The process's broadcast groups."""
    return _groups


async def broadcast(group: str, message: Any, *, exclude: Any = None) -> int:
    """Send ``message`` to every socket in ``group`` (but ``exclude``); how many took it."""
    return _groups.broadcast(group, message, exclude=exclude)


def broadcast_sync(group: str, message: Any, *, exclude: Any = None) -> None:
    """``broadcast`` for sync code, on any thread: the sockets' event loop sends it."""
    _groups.broadcast_threadsafe(group, message, exclude=exclude)
