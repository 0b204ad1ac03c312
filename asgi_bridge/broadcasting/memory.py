"""Broadcast groups in this process's memory: the members of each group, and delivery to them."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder


class Member(Protocol):
    """What a group holds: a WebSocket, or the subscription of an event stream."""

    groups: set[str]

    def deliver(self, data: str | bytes) -> bool:
        """Queue a message without waiting; False if the member cannot take it."""


def encode(message: Any) -> str | bytes:
    """What a member receives: ``str`` and ``bytes`` as they are, anything else as JSON text."""
    if isinstance(message, (str, bytes)):
        return message
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":"))


class MemoryBackend:
    """The groups of this process: each a set of members, all served by one event loop."""

    def __init__(self) -> None:
        self._members: dict[str, set[Member]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def join(self, group: str, member: Member) -> None:
        self._loop = asyncio.get_running_loop()
        self._members.setdefault(group, set()).add(member)
        member.groups.add(group)

    def leave(self, group: str, member: Member) -> None:
        member.groups.discard(group)
        members = self._members.get(group)
        if members is not None:
            members.discard(member)
            if not members:
                # No member left: the group goes, so that groups do not pile up.
                del self._members[group]

    def leave_all(self, member: Member) -> None:
        for group in list(member.groups):
            self.leave(group, member)

    def member_count(self, group: str) -> int:
        return len(self._members.get(group, ()))

    def group_count(self) -> int:
        return len(self._members)

    def broadcast(self, group: str, message: Any, *, exclude: Any = None) -> int:
        """On the event loop: queue the message for every member but ``exclude``."""
        frame = encode(message)
        delivered = 0
        for member in list(self._members.get(group, ())):
            if member is not exclude and member.deliver(frame):
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
