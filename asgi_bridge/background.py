"""Work that runs after the response has been sent: ``after_response()`` and its runner.

A view or middleware calls ``after_response(func, *args, **kwargs)``; the handler hands the
request's jobs over once the response is over, to run in a task it owns rather than in the
request's own coroutine (a server may cancel that soon after the response). A request's jobs run
in order; sync ones on a thread of the background pool, never on one of the requests' pool, with
Django's database connection housekeeping around them; async ones on the event loop.

At most ``ASGI_BRIDGE["BACKGROUND_THREADS"]`` requests' jobs run at once; the others wait, and
once ``ASGI_BRIDGE["BACKGROUND_QUEUE_SIZE"]`` jobs wait, ``after_response()`` raises
``BackgroundQueueFull`` rather than let a burst pile up work without bound. Errors in the work are
logged to the ``asgi_bridge`` logger and never reach the client.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.db import close_old_connections

from .conf import bridge_settings
from .exceptions import BackgroundQueueFull
from .threads import ProcessPool, RequestThreadPool, executor_context

logger = logging.getLogger("asgi_bridge")

# (function, args, kwargs), in the order after_response() was called.
Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

# How many job names a log line lists before it only counts the rest.
NAMES_LOGGED = 10


@dataclass(frozen=True)
class BackgroundStats:
    """The process's after_response() jobs, as ``Backlog.stats()`` finds them."""

    # Jobs started and not finished.
    running: int
    # Jobs accepted by after_response() and not started: what BACKGROUND_QUEUE_SIZE bounds.
    queued: int
    # Jobs that returned; that raised (and were logged).
    completed: int
    failed: int
    # Jobs refused: after_response() raised BackgroundQueueFull for them.
    refused: int
    # Jobs given up: at lifespan shutdown, cancelled while running or never started; or left
    # behind by an event loop that closed first.
    abandoned: int


class Backlog:
    """The process's after_response() jobs, from after_response() to their end: whether one
    more fits, and the counts of each stage.

    One per process, as the thread pools are: a job is accepted when after_response() is
    called, in the view, before anything says which handler will run it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._queued = 0
        self._completed = 0
        self._failed = 0
        self._refused = 0
        self._abandoned = 0
        # Refusals since the last job accepted: only the first of a run is logged, so that a
        # full backlog does not also flood the log when the process is busiest.
        self._refusing = 0

    def admit(self, jobs: Sequence[Job]) -> None:
        """Count ``jobs`` as queued, or raise BackgroundQueueFull if they do not all fit."""
        queue_size = bridge_settings().background_queue_size
        with self._lock:
            queued = self._queued
            fits = queued + len(jobs) <= queue_size
            refused_before = self._refusing
            if fits:
                self._queued += len(jobs)
                self._refusing = 0
            else:
                self._refused += len(jobs)
                self._refusing += len(jobs)
        if fits:
            if refused_before:
                logger.warning(
                    "after_response() accepts work again, after refusing %d job(s) "
                    "(ASGI_BRIDGE['BACKGROUND_QUEUE_SIZE'] is %d)",
                    refused_before,
                    queue_size,
                )
            return
        error = BackgroundQueueFull(describe_jobs(jobs), queued, queue_size)
        if not refused_before:
            logger.warning("%s Until there is room, later refusals are counted, not logged.", error)
        raise error

    def job_started(self) -> None:
        with self._lock:
            self._queued -= 1
            self._running += 1

    def job_ended(self, failed: bool) -> None:
        with self._lock:
            self._running -= 1
            if failed:
                self._failed += 1
            else:
                self._completed += 1

    def jobs_abandoned(self, running: int, queued: int) -> None:
        with self._lock:
            self._running -= running
            self._queued -= queued
            self._abandoned += running + queued

    def stats(self) -> BackgroundStats:
        with self._lock:
            return BackgroundStats(
                running=self._running,
                queued=self._queued,
                completed=self._completed,
                failed=self._failed,
                refused=self._refused,
                abandoned=self._abandoned,
            )


backlog = Backlog()


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
        """Keep ``job`` for later; BackgroundQueueFull if the process's backlog is full."""
        backlog.admit([job])
        with self._lock:
            background, loop = self._background, self._loop
            if background is None:
                self._jobs.append(job)
                return
        assert loop is not None
        if running_loop() is loop:
            background.start_admitted([job])
            return
        try:
            loop.call_soon_threadsafe(background.start_admitted, [job])
        except RuntimeError:
            # The event loop has closed: the job can never run.
            backlog.jobs_abandoned(running=0, queued=1)
            raise

    def start(self, background: BackgroundWork) -> None:
        """On the event loop: start the jobs kept so far in ``background``, and later ones too."""
        loop = asyncio.get_running_loop()
        with self._lock:
            jobs, self._jobs = self._jobs, []
            self._background, self._loop = background, loop
        if jobs:
            background.start_admitted(jobs)


# The work of the request being handled; the handler sets a fresh one for each request.
pending_work: contextvars.ContextVar[RequestWork | None] = contextvars.ContextVar(
    "asgi_bridge_pending_work", default=None
)


def after_response(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run ``func(*args, **kwargs)`` after the current response has been sent.

    ``func`` may be sync or async. Raises ``BackgroundQueueFull`` when
    ``ASGI_BRIDGE["BACKGROUND_QUEUE_SIZE"]`` jobs already wait to run. Outside a request served by
    asgi_bridge (Django's test ``Client``, a WSGI server, a management command) there is no
    response to wait for, so the work runs at once, with the same error handling.
    """
    work = pending_work.get()
    if work is not None:
        work.add((func, args, kwargs))
        return
    if running_loop() is None:
        run_job_now((func, args, kwargs))
    else:
        start_detached(run_jobs([(func, args, kwargs)]))


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def describe(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def describe_jobs(jobs: Iterable[Job]) -> str:
    """The jobs' function names, for a log line: the first NAMES_LOGGED, then a count."""
    names = [describe(func) for func, _, _ in jobs]
    listed = ", ".join(names[:NAMES_LOGGED])
    if len(names) > NAMES_LOGGED:
        listed += f" and {len(names) - NAMES_LOGGED} more"
    return listed


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


async def run_job(job: Job) -> bool:
    """Run one job, a sync one on the thread-sensitive context's thread; log its error and
    return True if it failed."""
    func, args, kwargs = job
    try:
        if iscoroutinefunction(func):
            await func(*args, **kwargs)
        else:
            await run_sync_job_in_thread(job)
    except Exception:
        logger.exception("after_response() work %s failed", describe(func))
        return True
    return False


async def run_jobs(jobs: Iterable[Job]) -> None:
    """Run jobs one after another, outside any request and uncounted; each error is logged."""
    for job in jobs:
        await run_job(job)


# Detached tasks must be referenced somewhere, or the loop may collect them mid-run.
_detached: set[asyncio.Task[None]] = set()


def start_detached(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Start ``work`` as a task in a fresh context, so that nothing of the request (its thread,
    its thread-sensitive context, its Local values) leaks into it."""
    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] = contextvars.Context().run(loop.create_task, work)
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    return task


class Batch:
    """One request's jobs, run in order by one worker; what is left of them, and the one
    running, tell lifespan shutdown what it abandons."""

    __slots__ = ("current", "jobs")

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.jobs: deque[Job] = deque(jobs)
        self.current: Job | None = None


async def run_batch(batch: Batch, pool: RequestThreadPool) -> None:
    """Run a batch's jobs in order, sync ones on one thread of ``pool``, counting each."""
    executor = pool.executor()
    try:
        async with executor_context(executor):
            while batch.jobs:
                batch.current = batch.jobs.popleft()
                backlog.job_started()
                failed = await run_job(batch.current)
                batch.current = None
                backlog.job_ended(failed)
    finally:
        executor.release()


# Busy threads at exit run work that lifespan shutdown already gave up on: exit is not held up
# for them as long as for a request's.
_background_pool = ProcessPool(exit_timeout=1.0)


def background_threads(max_threads: int) -> RequestThreadPool:
    """The process's pool for sync after_response() work, apart from the requests' pool so that
    the work never takes a thread a request needs."""
    return _background_pool.get(max_threads)


class BackgroundWork:
    """The after_response() work a handler has been given and that has not finished yet.

    Each request's jobs form a batch; at most ``ASGI_BRIDGE["BACKGROUND_THREADS"]`` batches run
    at once, each on a thread of the background pool when it runs sync code, and the others wait
    their turn. ``stats()`` counts the jobs of the whole process.
    """

    def __init__(self) -> None:
        # Never a request's pool: background work must not take a thread a request needs
        # (background_threads() is its own).
        self._running: dict[asyncio.Task[None], Batch] = {}
        self._waiting: deque[Batch] = deque()

    @property
    def pending(self) -> int:
        """Batches (one per request) running or waiting to run."""
        return len(self._running) + len(self._waiting)

    def stats(self) -> BackgroundStats:
        """The process's after_response() jobs: running, queued, and counts of their ends."""
        return backlog.stats()

    def start(self, jobs: list[Job]) -> None:
        """On the event loop: run ``jobs`` in order, as a request's; BackgroundQueueFull if
        they do not fit in the backlog."""
        backlog.admit(jobs)
        self.start_admitted(jobs)

    def start_admitted(self, jobs: list[Job]) -> None:
        """On the event loop: run ``jobs``, already counted in the backlog, when a worker is
        free."""
        batch = Batch(jobs)
        if len(self._running) < bridge_settings().background_threads:
            self._run(batch)
        else:
            self._waiting.append(batch)

    def _run(self, batch: Batch) -> None:
        pool = background_threads(bridge_settings().background_threads)
        task = start_detached(run_batch(batch, pool))
        self._running[task] = batch
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        batch = self._running.pop(task)
        if batch.current is not None or batch.jobs:
            # Cancelled, perhaps before it began: by drain(), which empties the queue first, or
            # with an event loop that is going away, where no new task would get to run.
            backlog.jobs_abandoned(running=int(batch.current is not None), queued=len(batch.jobs))
            batch.jobs.clear()
            return
        while self._waiting and len(self._running) < bridge_settings().background_threads:
            self._run(self._waiting.popleft())

    def _job_count(self) -> int:
        """The jobs not finished: running, left in running batches, and waiting."""
        batches = [*self._running.values(), *self._waiting]
        return sum(len(batch.jobs) + (batch.current is not None) for batch in batches)

    async def drain(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for the work given so far, queued work included; then
        cancel what runs, drop what waits, and log both."""
        if not self.pending:
            return
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        logger.info("Waiting for %d after_response() job(s) to finish", self._job_count())
        while self._running:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            # A finished batch makes room for a waiting one, started by _batch_done.
            await asyncio.wait(
                set(self._running), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        if not self.pending:
            return
        cancelled = self._abandon(time.monotonic() - started)
        await asyncio.wait(cancelled, timeout=1.0)

    def _abandon(self, waited: float) -> set[asyncio.Task[None]]:
        """Drop the waiting batches and cancel the running ones; log what that gives up."""
        batches = [*self._running.values(), *self._waiting]
        self._waiting.clear()
        running = [batch.current for batch in batches if batch.current is not None]
        not_started = [job for batch in batches for job in batch.jobs]
        backlog.jobs_abandoned(running=0, queued=len(not_started))
        for batch in batches:
            # Emptied, not only cancelled: asgiref may wait for a cancelled sync job to return
            # and then let the batch go on, to the jobs after it, unless none are left.
            batch.jobs.clear()
        tasks = set(self._running)
        for task in tasks:
            # _batch_done counts a job cancelled mid-run as abandoned once its task has ended.
            task.cancel()
        logger.warning(
            "Abandoned %d after_response() job(s) still unfinished after %.1f s "
            "(ASGI_BRIDGE['BACKGROUND_SHUTDOWN_TIMEOUT']): %d cancelled while running%s; "
            "%d never started%s.%s",
            len(running) + len(not_started),
            waited,
            len(running),
            f" ({describe_jobs(running)})" if running else "",
            len(not_started),
            f" ({describe_jobs(not_started)})" if not_started else "",
            " Sync work already running in a thread cannot be stopped: it goes on unwatched."
            if running
            else "",
        )
        return tasks
