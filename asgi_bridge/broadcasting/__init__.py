"""Broadcast groups: send a message to every WebSocket and event stream in a group, from any code.

``await ws.join("room-42")`` puts a socket in a group; ``await broadcast("room-42", message)``
(async code) or ``broadcast_sync("room-42", message)`` (sync code: views, signal receivers,
management commands) sends it to every member: ``str`` as a text frame, ``bytes`` as a binary
frame, anything else as JSON text. Each member gets it through its own bounded queue
(``WebSocket.deliver``), so one slow reader neither holds the others up nor grows memory: it is
closed with 1013.

``subscribe("room-42")`` listens without a WebSocket: ``EventStreamResponse(subscribe(...))``
streams a group to a browser's EventSource.

``ASGI_BRIDGE["BROADCAST"]`` picks where groups live: ``MemoryBackend`` (the default) reaches the
sockets of this process; ``RedisBackend`` those of every process connected to one Redis server.
With ``"CHANNEL_LAYER"`` set, each broadcast also goes to Channels consumers in the same group,
through ``group_send`` of a ``{"type": "broadcast.message", "group": ..., "text" or "bytes": ...}``
event.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..conf import SETTING_NAME, BroadcastSettings, bridge_settings
from .memory import Member, MemoryBackend, encode
from .subscriptions import subscribe

__all__ = [
    "Backend",
    "Member",
    "MemoryBackend",
    "broadcast",
    "broadcast_sync",
    "encode",
    "groups",
    "subscribe",
]

logger = logging.getLogger("asgi_bridge")
# The type of the event a broadcast sends to Channels consumers: handled by a consumer's
# broadcast_message(self, event) method.
CHANNELS_EVENT_TYPE = "broadcast.message"


class Backend(Protocol):
    """Where groups live: what ``ASGI_BRIDGE["BROADCAST"]["BACKEND"]`` names."""

    @classmethod
    def from_settings(cls, settings: BroadcastSettings) -> Backend: ...

    async def join(self, group: str, member: Member) -> None: ...

    def leave(self, group: str, member: Member) -> bool: ...

    def leave_all(self, member: Member) -> None: ...

    def member_count(self, group: str) -> int: ...

    def group_count(self) -> int: ...

    async def broadcast(self, group: str, message: Any, *, exclude: Any = None) -> int: ...

    def broadcast_sync(self, group: str, message: Any, *, exclude: Any = None) -> None: ...

    async def close(self) -> None: ...


_backend: Backend | None = None


def groups() -> Backend:
    """The process's broadcast backend, made from ``ASGI_BRIDGE["BROADCAST"]`` at first use."""
    global _backend
    if _backend is None:
        configured = bridge_settings().broadcast
        backend_class = import_string(configured.backend_path)
        _backend = backend_class.from_settings(configured)
    return _backend


@receiver(setting_changed, dispatch_uid="asgi_bridge.broadcasting.reset")
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    global _backend
    if setting == SETTING_NAME:
        _backend = None


async def close() -> None:
    """Let go of the backend's connections (lifespan shutdown)."""
    global _backend
    backend, _backend = _backend, None
    if backend is not None:
        await backend.close()


async def broadcast(group: str, message: Any, *, exclude: Any = None) -> int:
    """Send ``message`` to every member of ``group`` but ``exclude``, in every process the
    backend reaches; how many of this process's members took it.

    With RedisBackend, raises ``asgi_bridge.exceptions.BroadcastError`` when Redis cannot be
    reached (this process's members still got the message)."""
    delivered = await groups().broadcast(group, message, exclude=exclude)
    layer = channel_layer()
    if layer is not None:
        event = channels_event(layer, group, message)
        if event is not None:
            await layer.group_send(group, event)
    return delivered


def broadcast_sync(group: str, message: Any, *, exclude: Any = None) -> None:
    """``broadcast`` for sync code, on any thread: views, signal receivers, commands."""
    groups().broadcast_sync(group, message, exclude=exclude)
    layer = channel_layer()
    if layer is not None:
        event = channels_event(layer, group, message)
        if event is not None:
            async_to_sync(layer.group_send)(group, event)


def channel_layer() -> Any:
    """The Channels layer that broadcasts also go to, if ``CHANNEL_LAYER`` names one."""
    alias = bridge_settings().broadcast.channel_layer
    if alias is None:
        return None
    from channels.layers import get_channel_layer  # type: ignore[import-untyped]

    layer = get_channel_layer(alias)
    if layer is None:
        logger.warning(
            "%s['BROADCAST']['CHANNEL_LAYER'] is %r, which CHANNEL_LAYERS does not define.",
            SETTING_NAME,
            alias,
        )
    return layer


def channels_event(layer: Any, group: str, message: Any) -> dict[str, Any] | None:
    """The event Channels consumers in ``group`` get; None if Channels cannot have such a group
    (its names are ASCII letters, digits, hyphens, underscores and periods, under 100)."""
    try:
        layer.require_valid_group_name(group)
    except TypeError:
        return None
    frame = encode(message)
    key = "text" if isinstance(frame, str) else "bytes"
    return {"type": CHANNELS_EVENT_TYPE, "group": group, key: frame}
