"""The round trip from the event loop to a request's thread and back, as ``sync_to_async`` makes it.

``sync_to_async`` reaches a thread through ``loop.run_in_executor``: a ``concurrent.futures``
future, an asyncio future chained to it, a shield around that, and callbacks between them. For
a request that visits its thread once this machinery costs about as much as the hop itself.
``call_on_thread`` keeps what asgiref does on each side of the hop (the context copied to the
thread and back, asgiref ``Local`` data moved with it, ``async_to_sync`` inside the function
finding this loop, a cancel passed on to the coroutine that ``async_to_sync`` is running) and
hands the result back with a single ``call_soon_threadsafe``.

It uses ``asgiref.sync._restore_context``, which every asgiref release since 3.3 has had and
which ``sync_to_async`` itself calls on both sides: it is what moves ``Local`` data between
threads in asgiref 3.11 and later. Where it is missing, ``AVAILABLE`` is false and callers use
``sync_to_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from asgiref import sync as asgiref_sync
from asgiref.sync import SyncToAsync

T = TypeVar("T")

_restore_context: Callable[[contextvars.Context], None] | None = getattr(
    asgiref_sync, "_restore_context", None
)
# What async_to_sync, called in the function, reads to reach this loop.
AVAILABLE = _restore_context is not None and hasattr(SyncToAsync, "threadlocal")


class Runner(Protocol):
    def run_soon(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the thread, after the jobs already queued there."""


class Trip(Generic[T]):
    """One call of ``func`` on a thread; its outcome comes back to the loop as ``future``."""

    __slots__ = (
        "abandoned",
        "args",
        "context",
        "exc_info",
        "func",
        "future",
        "kwargs",
        "loop",
        "outcome",
        "task_context",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        func: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.loop = loop
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()
        # An exception being handled where the call is made is being handled in the call too.
        self.exc_info = sys.exc_info()
        # Filled by async_to_sync in the function with the task it runs on this loop.
        self.task_context: list[asyncio.Task[Any]] = []
        self.future: asyncio.Future[T] = loop.create_future()
        self.outcome: tuple[bool, Any] | None = None
        self.abandoned = False

    def run(self) -> None:
        """On the thread."""
        if self.abandoned:
            return  # Cancelled before the thread came to it, so it never starts.
        local = SyncToAsync.threadlocal
        local.main_event_loop = self.loop
        local.main_event_loop_pid = os.getpid()
        local.task_context = self.task_context
        try:
            result = self.context.run(self.call_in_context)
        except BaseException as error:
            if isinstance(error, StopIteration):
                # An asyncio future refuses StopIteration; the original stays as the cause.
                stop, error = error, RuntimeError(f"{self.func!r} raised StopIteration")
                error.__cause__ = stop
            self.report(False, error)
        else:
            self.report(True, result)

    def call_in_context(self) -> T:
        assert _restore_context is not None
        # Moves asgiref Local data that came with the context over to this thread.
        _restore_context(self.context)
        if self.exc_info[1] is not None:
            try:
                raise self.exc_info[1]
            except BaseException:
                return self.func(*self.args, **self.kwargs)
        return self.func(*self.args, **self.kwargs)

    def report(self, ok: bool, value: Any) -> None:
        # A closed loop raises RuntimeError: nobody is left waiting.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.settle, ok, value)

    def settle(self, ok: bool, value: Any) -> None:
        """On the loop."""
        self.outcome = (ok, value)
        if self.future.done():
            return  # Cancelled: the caller has moved on.
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)

    async def outcome_after_cancel(self) -> bool:
        """After the caller was cancelled: whether it still waits for the function to return.

        As with ``sync_to_async``: the cancel goes on to the coroutine that ``async_to_sync``
        runs for the function, if any. When that coroutine absorbs it, the caller waits for the
        function after all; otherwise the caller is cancelled, and a function that has not
        started yet never starts.
        """
        if self.task_context:
            task = self.task_context[0]
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                if self.outcome is None:
                    self.future = self.loop.create_future()
                    return True
                return False
        self.abandoned = True
        return False


async def call_on_thread(
    runner: Runner, func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """``await sync_to_async(func, executor=...)(*args, **kwargs)``, with the runner's thread."""
    assert _restore_context is not None
    trip: Trip[T] = Trip(asyncio.get_running_loop(), func, args, kwargs)
    runner.run_soon(trip.run)
    try:
        return await trip.future
    except asyncio.CancelledError:
        if not await trip.outcome_after_cancel():
            raise
        return await trip.future
    finally:
        # The function's changes to context variables are seen by the caller.
        _restore_context(trip.context)
