"""Small asyncio helpers shared by the handler's streams."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def wait_for_end(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` (already told to stop) is done, also when the waiter is cancelled once.

    A request's helper task (a stream's reader, a sync stream's producer) must not outlive the
    request, and the handler's own cancellation when the client leaves can land while it is
    being waited for; the task still gets to finish then, and the cancellation is passed on. A
    second cancellation is not held up. Found by tests/test_handler_properties.py on Python
    3.12, whose ``wait_for()`` runs the handler in the caller's task.
    """
    try:
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((task,))
        raise
