"""Listening to broadcast groups without a WebSocket: ``subscribe()``, an async iterator of what
is broadcast to some groups, for server-sent events and any other async code::

    return EventStreamResponse(subscribe("news"))
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from ..conf import bridge_settings

logger = logging.getLogger("asgi_bridge")


class Subscription:
    """A member of broadcast groups that keeps what it is sent in a bounded queue."""

    def __init__(self, queue_size: int) -> None:
        self.groups: set[str] = set()
        self.queue_size = queue_size
        self._frames: deque[str | bytes] = deque()
        self._arrived = asyncio.Event()
        self.overflowed = False

    def deliver(self, frame: str | bytes) -> bool:
        """Queue ``frame`` without waiting; past ``queue_size`` the subscriber is not keeping
        up, and the subscription ends (an EventSource reconnects)."""
        if self.overflowed:
            return False
        if len(self._frames) >= self.queue_size:
            self.overflowed = True
            logger.warning(
                "Ending a subscription to %s whose reader does not keep up: %d messages wait",
                ", ".join(sorted(self.groups)),
                len(self._frames),
            )
            self._frames.clear()
            self._arrived.set()
            return False
        self._frames.append(frame)
        self._arrived.set()
        return True

    async def next_frame(self) -> str | bytes | None:
        """The next message broadcast to the groups; None once the subscription has ended."""
        while not self._frames:
            if self.overflowed:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        return self._frames.popleft()


async def subscribe(*groups: str, queue_size: int | None = None) -> AsyncIterator[str | bytes]:
    """What is broadcast to ``groups`` from now on, as each member socket would get it: ``str``
    (JSON text for anything not str or bytes) or ``bytes``. At most ``queue_size`` messages
    (default ``WEBSOCKET_SEND_QUEUE_SIZE``) wait for the reader; past that the iteration ends.
    Closing the iterator (the client of a stream left) leaves the groups."""
    from . import groups as process_groups

    subscription = Subscription(queue_size or bridge_settings().websocket_send_queue_size)
    backend = process_groups()
    for group in groups:
        await backend.join(group, subscription)
    try:
        while (frame := await subscription.next_frame()) is not None:
            yield frame
    finally:
        backend.leave_all(subscription)
