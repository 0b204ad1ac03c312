"""The round trips between the event loop and a request's thread, as asgiref makes them.

``sync_to_async`` reaches a thread through ``loop.run_in_executor``: a ``concurrent.futures``
future, an asyncio future chained to it, a shield around that, and callbacks between them. For
a request that visits its thread once this machinery costs about as much as the hop itself.
``call_on_thread`` keeps what asgiref does on each side of the hop (the context copied to the
thread and back, asgiref ``Local`` data moved with it, ``async_to_sync`` inside the function
finding this loop, a cancel passed on to the coroutine that ``async_to_sync`` is running) and
hands the result back with a single ``call_soon_threadsafe``.

``call_on_loop`` is the way back, for an async view that Django's sync middleware chain calls
on the request's thread: what ``async_to_sync`` does, except that the waiting thread keeps
running the request's jobs from the queue it already has, where the outcome arrives too.

Both use asgiref internals, taken from ``asgiref_compat``: ``_restore_context``, which
``sync_to_async`` itself calls on both sides (it is what moves ``Local`` data between threads
in asgiref 3.12 and later), and ``SyncToAsync.threadlocal``; ``call_on_loop`` also uses
``AsyncToSync.executors``. Where they are missing, ``AVAILABLE`` (``call_on_thread``) or
``LOOP_AVAILABLE`` (``call_on_loop``) is false and callers use ``sync_to_async`` or
``async_to_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from . import asgiref_compat

T = TypeVar("T")

# Module globals, looked up on each call: tests replace them.
_restore_context = asgiref_compat.restore_context
# What async_to_sync, called in the function, reads to reach this loop.
_threadlocal = asgiref_compat.sync_to_async_threadlocal
# Where thread-sensitive sync_to_async calls go while a thread waits in async_to_sync.
_executors = asgiref_compat.async_to_sync_executors
AVAILABLE = asgiref_compat.CALL_ON_THREAD_AVAILABLE
LOOP_AVAILABLE = asgiref_compat.CALL_ON_LOOP_AVAILABLE


class Runner(Protocol):
    def run_soon(self, job: Callable[[], None], refuse: Callable[[BaseException], None]) -> None:
        """Run ``job`` on the thread, after the jobs already queued there; or, if the thread
        cannot be had, call ``refuse`` with the reason."""


class SyncCall(Generic[T]):
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
        local = _threadlocal
        assert local is not None
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

    def refuse(self, error: BaseException) -> None:
        """From any thread: the call never starts; the caller gets ``error``."""
        self.abandoned = True
        self.report(False, error)

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
    call: SyncCall[T] = SyncCall(asyncio.get_running_loop(), func, args, kwargs)
    runner.run_soon(call.run, call.refuse)
    try:
        return await call.future
    except asyncio.CancelledError:
        if not await call.outcome_after_cancel():
            raise
        return await call.future
    finally:
        # The function's changes to context variables are seen by the caller.
        _restore_context(call.context)


class ThreadWait(Protocol):
    """The executor of a request's thread, which keeps running its jobs while it waits."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the thread."""

    def run_jobs_until(self, marker: object) -> None:
        """On the thread: run the jobs that arrive until ``wake(marker)``."""

    def wake(self, marker: object) -> None:
        """From the loop: end ``run_jobs_until(marker)``."""


class LoopCall(Generic[T]):
    """One await of ``func`` on the loop for a thread, which learns the outcome from ``waiter``."""

    __slots__ = (
        "args",
        "context",
        "exc_info",
        "func",
        "kwargs",
        "loop",
        "outcome",
        "task_context",
        "waiter",
    )

    def __init__(
        self,
        waiter: ThreadWait,
        loop: asyncio.AbstractEventLoop,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.waiter = waiter
        self.loop = loop
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()
        self.exc_info = sys.exc_info()
        # The hop that brought this thread here cancels what it finds in this list.
        self.task_context: list[asyncio.Task[Any]] | None = getattr(
            _threadlocal, "task_context", None
        )
        self.outcome: tuple[bool, Any] = (False, None)

    def start(self) -> None:
        """On the loop, in the thread's context."""
        task = self.loop.create_task(self.run())
        task.add_done_callback(self.finished)

    async def run(self) -> None:
        assert _restore_context is not None
        task = asyncio.current_task()
        if self.task_context is not None and task is not None:
            self.task_context.append(task)
        try:
            # Moves asgiref Local data that came with the context over to the loop's thread;
            # inside the try, so that whatever fails here reaches the thread as the outcome.
            _restore_context(self.context)
            if self.exc_info[1] is not None:
                try:
                    raise self.exc_info[1]
                except BaseException:
                    result = await self.func(*self.args, **self.kwargs)
            else:
                result = await self.func(*self.args, **self.kwargs)
        except BaseException as error:
            # A cancel ends up here too, and goes on to the thread, as with async_to_sync.
            self.outcome = (False, error)
        else:
            self.outcome = (True, result)
        finally:
            if self.task_context is not None and task is not None:
                self.task_context.remove(task)
            self.context = contextvars.copy_context()

    def finished(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            # Cancelled before its first step: run() never started.
            self.outcome = (False, asyncio.CancelledError())
        self.waiter.wake(self)


def call_on_loop(
    waiter: ThreadWait,
    loop: asyncio.AbstractEventLoop,
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """``async_to_sync(func)(*args, **kwargs)`` from a request's thread, awaited on ``loop``.

    As with ``async_to_sync``: thread-sensitive ``sync_to_async`` calls made by ``func`` run on
    this thread meanwhile (through ``waiter``), the context is copied to the loop and back, and
    a cancel of the hop that brought this thread here goes on to ``func``.
    """
    executors = _executors
    assert _restore_context is not None and executors is not None
    outer = getattr(executors, "current", None)
    executors.current = waiter
    try:
        call: LoopCall[T] = LoopCall(waiter, loop, func, args, kwargs)
        loop.call_soon_threadsafe(call.start, context=call.context)
        waiter.run_jobs_until(call)
        _restore_context(call.context)
    finally:
        executors.current = outer
    ok, value = call.outcome
    if ok:
        return cast(T, value)
    try:
        raise value
    finally:
        del value, call
