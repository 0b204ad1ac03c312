"""Work that runs after the response has been sent: ``after_response()`` and its runner.

A view or middleware calls ``after_response(func, *args, **kwargs)``; the handler starts the
request's work once the response is over, in a task it owns rather than in the request's own
coroutine (a server may cancel that soon after the response). Sync functions run on a pooled
thread, off the event loop, with Django's database connection housekeeping around them.
Errors are logged to the ``asgi_bridge`` logger and never reach the client.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.db import close_old_connections

from .threads import RequestThreadPool, executor_context

logger = logging.getLogger("asgi_bridge")

# (function, args, kwargs), in the order after_response() was called.
Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class RequestWork:
    """The after_response() jobs of one request: kept until the response is over, then started.

    A job added after that (by a sync view still running after its client left) starts at once,
    on the event loop that ended the request, from whichever thread adds it.
    """

    __slots__ = ("_background", "_jobs", "_lock", "_loop")

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._lock = threading.Lock()
        self._background: BackgroundWork | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, job: Job) -> None:
        with self._lock:
            background, loop = self._background, self._loop
            if background is None:
                self._jobs.append(job)
                return
        assert loop is not None
        if running_loop() is loop:
            background.start([job])
        else:
            loop.call_soon_threadsafe(background.start, [job])

    def start(self, background: BackgroundWork) -> None:
        """On the event loop: start the jobs kept so far in ``background``, and later ones too."""
        loop = asyncio.get_running_loop()
        with self._lock:
            jobs, self._jobs = self._jobs, []
            self._background, self._loop = background, loop
        if jobs:
            background.start(jobs)


# The work of the request being handled; the handler sets a fresh one for each request.
pending_work: contextvars.ContextVar[RequestWork | None] = contextvars.ContextVar(
    "asgi_bridge_pending_work", default=None
)


def after_response(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run ``func(*args, **kwargs)`` after the current response has been sent.

    ``func`` may be sync or async. Outside a request served by asgi_bridge (Django's test
    ``Client``, a WSGI server, a management command) there is no response to wait for, so the
    work runs at once, with the same error handling.
    """
    work = pending_work.get()
    if work is not None:
        work.add((func, args, kwargs))
        return
    if running_loop() is None:
        run_job_now((func, args, kwargs))
    else:
        start_detached([(func, args, kwargs)], None)


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def describe(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def run_sync_job(job: Job) -> None:
    """Run a sync job the way Django runs a request's code: stale connections closed around it."""
    func, args, kwargs = job
    close_old_connections()
    try:
        func(*args, **kwargs)
    finally:
        close_old_connections()


def run_job_now(job: Job) -> None:
    """Outside any event loop: run one job in this thread, logging its error."""
    func, args, kwargs = job
    try:
        if iscoroutinefunction(func):
            async_to_sync(func)(*args, **kwargs)
        else:
            # The caller's thread and its connections are the caller's: perhaps mid-transaction.
            func(*args, **kwargs)
    except Exception:
        logger.exception("after_response() work %s failed", describe(func))


run_sync_job_in_thread = sync_to_async(run_sync_job)


async def run_jobs(jobs: Iterable[Job], pool: RequestThreadPool | None) -> None:
    """Run jobs one after another; sync ones on one pooled thread; each error is logged."""
    executor = pool.executor() if pool is not None else None
    try:
        async with executor_context(executor) if executor is not None else nullcontext():
            for job in jobs:
                func, args, kwargs = job
                try:
                    if iscoroutinefunction(func):
                        await func(*args, **kwargs)
                    else:
                        await run_sync_job_in_thread(job)
                except Exception:
                    logger.exception("after_response() work %s failed", describe(func))
    finally:
        if executor is not None:
            executor.release()


# Detached tasks must be referenced somewhere, or the loop may collect them mid-run.
_detached: set[asyncio.Task[None]] = set()


def start_detached(jobs: list[Job], pool: RequestThreadPool | None) -> asyncio.Task[None]:
    """Start ``run_jobs(jobs, pool)`` as a task in a fresh context, so that nothing of the
    request (its thread, its thread-sensitive context, its Local values) leaks into the work."""
    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] = contextvars.Context().run(loop.create_task, run_jobs(jobs, pool))
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    return task


class BackgroundWork:
    """The after_response() work a handler has started and that has not finished yet.

    ``threads`` gives the pool whose threads run sync work.
    """

    def __init__(self, threads: Callable[[], RequestThreadPool]) -> None:
        self._threads = threads
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, jobs: list[Job]) -> None:
        """On the event loop: run ``jobs`` in a task of their own."""
        task = start_detached(jobs, self._threads())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for started work; cancel and log what is left."""
        if not self._tasks:
            return
        started = time.monotonic()
        logger.info("Waiting for %d after_response() task(s) to finish", len(self._tasks))
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=timeout)
        if not unfinished:
            return
        for task in unfinished:
            task.cancel()
        logger.warning(
            "Cancelled %d after_response() task(s) still running after %.1f s "
            "(ASGI_BRIDGE['BACKGROUND_SHUTDOWN_TIMEOUT']); sync work already running in a "
            "thread cannot be stopped and is abandoned",
            len(unfinished),
            time.monotonic() - started,
        )
        await asyncio.wait(unfinished, timeout=1.0)
