"""Broadcast groups in this process's memory: the members of each group, and delivery to them.

``MemoryBackend`` is the default backend, for one server process. ``RedisBackend`` keeps one of
these for its own process's members and adds Redis between processes.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder

from ..conf import BroadcastSettings


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


async def give_writers_a_turn() -> None:
    """Let the members' writers send what a broadcast queued before the next one is queued.

    Each member queues a message without waiting and a task of its own sends it; a burst of
    broadcasts queued in one turn of the event loop would fill the bounded queues of readers
    that keep up well (and close them with 1013), where one turn between broadcasts lets the
    writers take each message as it comes. Only a reader that does not keep up fills its queue.
    """
    await asyncio.sleep(0)


class MemoryBackend:
    """The groups of this process: each a set of members, all served by one event loop."""

    def __init__(self) -> None:
        self._members: dict[str, set[Member]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Broadcasts from other threads, in order, for the loop to deliver one at a time.
        self._inbox: deque[tuple[str, str | bytes, Any]] = deque()
        self._delivering: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: BroadcastSettings) -> MemoryBackend:
        return cls()

    async def join(self, group: str, member: Member) -> None:
        """Put ``member`` in ``group``: it gets what is broadcast to the group from now on."""
        self.add(group, member)

    def add(self, group: str, member: Member) -> bool:
        """``join`` on the event loop, without waiting; True if ``member`` is the group's first."""
        self._loop = asyncio.get_running_loop()
        members = self._members.get(group)
        first = members is None
        if members is None:
            members = self._members[group] = set()
        members.add(member)
        member.groups.add(group)
        return first

    def leave(self, group: str, member: Member) -> bool:
        """Take ``member`` out of ``group``; True if that left the group with no member."""
        member.groups.discard(group)
        members = self._members.get(group)
        if members is None:
            return False
        members.discard(member)
        if members:
            return False
        # No member left: the group goes, so that groups do not pile up.
        del self._members[group]
        return True

    def leave_all(self, member: Member) -> None:
        for group in list(member.groups):
            self.leave(group, member)

    def member_count(self, group: str) -> int:
        return len(self._members.get(group, ()))

    def group_count(self) -> int:
        return len(self._members)

    def group_names(self) -> list[str]:
        return list(self._members)

    def deliver(self, group: str, frame: str | bytes, exclude: Any = None) -> int:
        """On the event loop: queue ``frame`` for every member but ``exclude``; how many took
        it."""
        delivered = 0
        for member in list(self._members.get(group, ())):
            if member is not exclude and member.deliver(frame):
                delivered += 1
        return delivered

    def deliver_threadsafe(self, group: str, frame: str | bytes, exclude: Any = None) -> None:
        """``deliver`` from any thread: the loop that serves the members delivers it."""
        loop = self._loop
        if loop is None or loop.is_closed() or group not in self._members:
            return  # Nobody here to receive it.
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.deliver(group, frame, exclude)
            return
        self._inbox.append((group, frame, exclude))
        loop.call_soon_threadsafe(self._start_delivering)

    def _start_delivering(self) -> None:
        if self._delivering is None or self._delivering.done():
            self._delivering = asyncio.get_running_loop().create_task(self._deliver_inbox())

    async def _deliver_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            self.deliver(*inbox.popleft())
            await give_writers_a_turn()

    async def broadcast(self, group: str, message: Any, *, exclude: Any = None) -> int:
        """Send ``message`` to every member of ``group`` but ``exclude``; how many took it."""
        delivered = self.deliver(group, encode(message), exclude)
        await give_writers_a_turn()
        return delivered

    def broadcast_sync(self, group: str, message: Any, *, exclude: Any = None) -> None:
        """``broadcast`` from sync code, on any thread."""
        self.deliver_threadsafe(group, encode(message), exclude)

    async def close(self) -> None:
        """Nothing to let go of: the members leave as their connections end."""
