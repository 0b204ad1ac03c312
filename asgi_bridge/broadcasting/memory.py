"""Broadcast groups in this process's memory: the members of each group, and delivery to them."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder

if TYPE_CHECKING:
    from ..websockets.views import WebSocket


def encode(message: Any) -> str | bytes:
    """What a member receives: ``str`` and ``bytes`` as they are, anything else as JSON text."""
    if isinstance(message, (str, bytes)):
        return message
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))


class MemoryBackend:
    """The groups of this process: each a set of sockets, all served by one event loop."""

    def __init__(self) -> None:
        self._members: dict[str, set[WebSocket]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def join(self, group: str, socket: WebSocket) -> None:
        self._loop = asyncio.get_running_loop()
        self._members.setdefault(group, set()).add(socket)
        socket.groups.add(group)

    def leave(self, group: str, socket: WebSocket) -> None:
        socket.groups.discard(group)
        members = self._members.get(group)
        if members is not None:
            members.discard(socket)
            if not members:
                # No member left: the group goes, so that groups do not pile up.
                del self._members[group]

    def leave_all(self, socket: WebSocket) -> None:
        for group in list(socket.groups):
            self.leave(group, socket)

    def member_count(self, group: str) -> int:
        return len(self._members.get(group, ()))

    def group_count(self) -> int:
        return len(self._members)

    def broadcast(self, group: str, message: Any, *, exclude: Any = None) -> int:
        """On the event loop: queue the message for every member but ``exclude``."""
        frame = encode(message)
        delivered = 0
        for socket in list(self._members.get(group, ())):
            if socket is not exclude and socket.deliver(frame):
                delivered += 1
        return delivered

    def broadcast_threadsafe(self, group: str, message: Any, *, exclude: Any = None) -> None:
        """From any thread: the loop that serves the members broadcasts it."""
        loop = self._loop
        if loop is None or loop.is_closed() or group not in self._members:
            return  # Nobody here to receive it.
        frame = encode(message)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.broadcast(group, frame, exclude=exclude)
        else:
            loop.call_soon_threadsafe(self._broadcast_frame, group, frame, exclude)

    def _broadcast_frame(self, group: str, frame: str | bytes, exclude: Any) -> None:
        self.broadcast(group, frame, exclude=exclude)
