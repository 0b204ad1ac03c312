"""Small asyncio helpers shared by the handler, its streams and WebSocket views."""

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


def take_back_cancellation() -> None:
    """Count the current task's cancellation as handled, once it has been caught and acted on
    (an event stream or a WebSocket ended properly), so that the task carries on as not being
    cancelled. Python 3.10 keeps no count: there, catching it was enough."""
    uncancel = getattr(asyncio.current_task(), "uncancel", None)
    if uncancel is not None:
        uncancel()
