"""Where sync code runs: a bounded pool of long-lived threads, one lent to each request.

Django's own handler gives every request a fresh single-thread executor (two new OS threads,
one of them only to join the other) so that all of a request's sync code runs on one thread.
Here a request gets a ``RequestExecutor`` instead: the first sync call binds it to an idle pooled
thread (or waits for one), every later call of that request runs on the same thread, in order,
and the thread goes back to the pool when the request is over *and* its work has drained, so a
sync view that outlives its disconnected client still owns its thread until it returns.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, TypeVar, cast

from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

from . import hop
from .asgiref_compat import (
    CONTEXT_TAKES_EXECUTOR,
    EXECUTOR_CONTEXT_AVAILABLE,
    LEGACY_EXECUTOR_CONTEXT_AVAILABLE,
    LegacyExecutorContext,
    async_to_sync_executors,
    context_executor,
    loop_thread_executors,
    sync_to_async_threadlocal,
)
from .exceptions import ThreadQueueFull, ThreadWaitTimeout

logger = logging.getLogger("asgi_bridge")

T = TypeVar("T")

# A job is (future, function, args, kwargs), the future None for a job that reports its own
# outcome (run_soon), whose args then hold what to call if it is refused; _RELEASE ends a
# request's turn on a thread.
Job = tuple["Future[Any] | None", Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_RELEASE = object()
# Tells an idle pooled thread to exit; only the pool's shutdown sends it.
_EXIT = object()

_thread_numbers = itertools.count(1)


class RequestExecutor(Executor):
    """The executor of one request: its jobs run one at a time, in order, on a pooled thread.

    ``submit`` never blocks: before the request has a thread its jobs wait in its own queue.
    ``shutdown`` never blocks either: it queues the release, which runs after the pending jobs.
    The thread goes back to the pool as soon as the queue is empty, so a request that awaits
    between its sync calls (an async view, a stream) holds no thread meanwhile; its next job
    gets the same thread again if that one is idle. A thread whose database connection is in a
    transaction stays with the request until the transaction ends.
    """

    def __init__(self, pool: RequestThreadPool) -> None:
        self._pool = pool
        self._jobs: SimpleQueue[Job | object] = SimpleQueue()
        self._lock = threading.Lock()
        self._bound = False
        self._released = False
        # The ident of the thread running this request's jobs, while one does.
        self._thread_ident: int | None = None
        # The thread that last ran this request's jobs, lent again first if it is idle.
        self.last_thread: PooledThread | None = None
        # Whether a job of this request has run: a request whose Django code has started is
        # never refused a thread, only one still waiting for its first.
        self.started = False
        # When it last began to wait for a thread (the pool's clock).
        self.waiting_since = 0.0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue((future, fn, args, kwargs))
        return future

    def run_soon(self, job: Callable[[], None], refuse: Callable[[BaseException], None]) -> None:
        """Queue ``job``, which reports its outcome itself: no future, cheaper than ``submit``.

        ``refuse`` reports the error instead if the request gets no thread (ThreadUnavailable).
        """
        self._queue((None, job, (refuse,), {}))

    def _queue(self, job: Job) -> None:
        with self._lock:
            if self._released:
                raise RuntimeError("cannot schedule new futures after the request has ended")
            self._jobs.put(job)
            first_job = not self._bound
            self._bound = True
        if first_job:
            self._pool.lend_thread(self)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Give the thread back once the queued jobs are done. Never blocks: ``wait`` is ignored."""
        with self._lock:
            if self._released:
                return
            self._released = True
            bound = self._bound
        if bound:
            self._jobs.put(_RELEASE)

    release = shutdown

    def run_jobs(self, worker: PooledThread) -> None:
        """On the lent thread: run this request's jobs until the queue is empty or released."""
        self._thread_ident = threading.get_ident()
        self.started = True
        pool = self._pool
        while (job := self._jobs.get()) is not _RELEASE:
            run_job(cast(Job, job))
            # Drop the reference so a finished request's objects are not kept alive meanwhile.
            del job
            if self._jobs.empty() and not pool.thread_must_stay():
                self._thread_ident = None
                if pool.take_back_if_idle(worker, self):
                    return
                self._thread_ident = threading.get_ident()
        self._thread_ident = None
        pool.take_back(worker)

    def runs_here(self) -> bool:
        """Whether the calling code is one of this request's jobs, on its lent thread."""
        return self._thread_ident == threading.get_ident()

    def run_jobs_until(self, marker: object) -> None:
        """From a job on the lent thread: run the jobs queued meanwhile until ``wake(marker)``.

        The request's other sync calls, made by async code that this job waits for, run here
        and not behind it, as they would on the thread waiting in ``async_to_sync``.
        """
        released = False
        while (job := self._jobs.get()) is not marker:
            if job is _RELEASE:
                released = True  # Taken effect once the waiting job has returned.
                continue
            run_job(cast(Job, job))
            del job
        if released:
            self._jobs.put(_RELEASE)

    def wake(self, marker: object) -> None:
        """From any thread: end the ``run_jobs_until(marker)`` under way."""
        self._jobs.put(marker)

    def refuse(self, error: BaseException) -> None:
        """No thread for this request: fail its queued jobs with ``error``. The pool has taken
        it out of its waiting line; a job queued later asks for a thread again."""
        with self._lock:
            refused: list[Job] = []
            while not self._jobs.empty():
                job = self._jobs.get()
                if job is not _RELEASE:
                    refused.append(cast(Job, job))
            self._bound = False
        for future, _, args, _ in refused:
            if future is None:
                args[0](error)
            elif future.set_running_or_notify_cancel():
                future.set_exception(error)

    def unbind_if_idle(self, worker: PooledThread) -> bool:
        """Let the thread go if no job is queued; the pool holds its lock while asking."""
        with self._lock:
            if not self._jobs.empty():
                return False
            self._bound = False
            self.last_thread = worker
            return True


def run_job(job: Job) -> None:
    future, fn, args, kwargs = job
    if future is None:
        try:
            fn()
        except BaseException:
            logger.exception("Error in a job on %s", threading.current_thread().name)
        return
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)


class PooledThread:
    """One long-lived thread; it serves one request at a time, handed to it through its inbox."""

    def __init__(self, pool: RequestThreadPool) -> None:
        self._pool = pool
        self._inbox: SimpleQueue[RequestExecutor | object] = SimpleQueue()
        self.thread = threading.Thread(
            target=self._serve,
            name=f"asgi_bridge-{next(_thread_numbers)}",
            daemon=True,
        )

    def hand(self, executor: RequestExecutor | object) -> None:
        self._inbox.put(executor)

    def _serve(self) -> None:
        try:
            while (executor := self._inbox.get()) is not _EXIT:
                assert isinstance(executor, RequestExecutor)
                # Returns once the pool has taken this thread back.
                executor.run_jobs(self)
                del executor
        finally:
            self._pool.thread_exited(self)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class PoolStats:
    """The thread pool as ``RequestThreadPool.stats()`` finds it, and its counters so far."""

    max_threads: int
    busy_limit: int
    # Threads started and kept; lent to a request; idle.
    threads: int
    busy: int
    idle: int
    # Requests waiting for a thread now, and the most allowed (None: no limit).
    waiting: int
    queue_size: int | None
    # Requests that had to wait, and their waits added up and the longest, in seconds.
    waits: int
    wait_seconds: float
    longest_wait: float
    # Requests refused a thread: none came free within the wait timeout; the queue was full.
    timeouts: int
    queue_full: int


def default_busy_limit() -> int:
    """How many threads requests keep busy while the busy ones keep coming back: the cores and
    four more, as ``ThreadPoolExecutor`` sizes itself."""
    return (os.cpu_count() or 1) + 4


# How long requests wait for a thread with none coming back before the pool lends past its
# busy limit: the busy threads are then waiting (on I/O, a lock, a slow client), not computing.
STARVED_AFTER = 0.02


class RequestThreadPool:
    """At most ``max_threads`` threads, started on demand and kept for the life of the process.

    Up to ``busy_limit`` of them are lent at once while lent threads keep coming back; past it
    a request waits for one. Sync code holds the GIL, so more threads add no work done, only
    GIL hand-offs and requests in flight. When requests have waited ``starved_after`` seconds
    and no thread came back meanwhile, every waiting request gets a thread, up to
    ``max_threads``: the lent ones are waiting on I/O.

    ``on_thread_exit`` runs on each thread as it exits at shutdown (asgi_bridge closes the
    thread's database connections there). ``keeps_thread``, called on a lent thread whose
    request has no job queued, says whether the request must keep it all the same (asgi_bridge:
    while a database connection of that thread is in a transaction).
    """

    def __init__(
        self,
        max_threads: int,
        on_thread_exit: Callable[[], None] | None = None,
        *,
        keeps_thread: Callable[[], bool] | None = None,
        busy_limit: int | None = None,
        starved_after: float = STARVED_AFTER,
        wait_timeout: float | None = None,
        queue_size: int | None = None,
    ) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self.wait_timeout = wait_timeout
        self.queue_size = queue_size
        self.busy_limit = min(max_threads, busy_limit or default_busy_limit())
        self.starved_after = starved_after
        self._on_thread_exit = on_thread_exit
        self.thread_must_stay: Callable[[], bool] = keeps_thread or _never
        self._lock = threading.Lock()
        self._idle: list[PooledThread] = []
        self._waiting: deque[RequestExecutor] = deque()
        self._threads: set[PooledThread] = set()
        self._closed = False
        # When a thread last came back, or the pool last lent past its busy limit.
        self._progress = time.monotonic()
        self._watch: threading.Condition | None = None
        self._waits = 0
        self._wait_seconds = 0.0
        self._longest_wait = 0.0
        self._timeouts = 0
        self._queue_full = 0

    def configured_as(
        self, max_threads: int, wait_timeout: float | None, queue_size: int | None
    ) -> bool:
        return (
            self.max_threads == max_threads
            and self.wait_timeout == wait_timeout
            and self.queue_size == queue_size
        )

    def executor(self) -> RequestExecutor:
        """A new request's executor; it takes a thread only when it is first given work."""
        return RequestExecutor(self)

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def busy_count(self) -> int:
        """Threads lent to a request: every thread not idle."""
        return len(self._threads) - len(self._idle)

    def stats(self) -> PoolStats:
        """The pool's state and counters, read under its lock."""
        with self._lock:
            return PoolStats(
                max_threads=self.max_threads,
                busy_limit=self.busy_limit,
                threads=len(self._threads),
                busy=self.busy_count,
                idle=len(self._idle),
                waiting=len(self._waiting),
                queue_size=self.queue_size,
                waits=self._waits,
                wait_seconds=self._wait_seconds,
                longest_wait=self._longest_wait,
                timeouts=self._timeouts,
                queue_full=self._queue_full,
            )

    def lend_thread(self, executor: RequestExecutor) -> None:
        with self._lock:
            worker = self._free_thread(executor) if self.busy_count < self.busy_limit else None
            if worker is None:
                full = self.queue_size is not None and len(self._waiting) >= self.queue_size
                if full and not executor.started:
                    self._queue_full += 1
                else:
                    now = time.monotonic()
                    if not self._waiting:
                        # The wait is measured from now, not from a quiet spell before it.
                        self._progress = now
                    executor.waiting_since = now
                    self._waits += 1
                    self._waiting.append(executor)
                    self._watch_waiting()
                    return
        if worker is None:
            executor.refuse(ThreadQueueFull(cast(int, self.queue_size)))
        else:
            worker.hand(executor)

    def _hand_waiting(self, worker: PooledThread) -> None:
        """Lend ``worker`` to the request that has waited longest. Holds the lock."""
        executor = self._waiting.popleft()
        waited = time.monotonic() - executor.waiting_since
        self._wait_seconds += waited
        self._longest_wait = max(self._longest_wait, waited)
        worker.hand(executor)

    def _free_thread(self, executor: RequestExecutor | None = None) -> PooledThread | None:
        """An idle or new thread, to lend; None at ``max_threads``. Holds the lock."""
        last = executor.last_thread if executor is not None else None
        if last is not None and last in self._idle:
            # The request's own thread again: what its earlier jobs left there (a database
            # connection opened, a thread-local set by middleware) is found by its later ones.
            self._idle.remove(last)
            worker = last
        elif self._idle:
            # The most recently used thread first: its caches and connections are warm.
            worker = self._idle.pop()
        elif len(self._threads) < self.max_threads and not self._closed:
            worker = PooledThread(self)
            self._threads.add(worker)
            worker.thread.start()
        else:
            return None
        return worker

    def take_back(self, worker: PooledThread) -> None:
        """Called by a thread whose request was released: serve the next waiting one, or idle."""
        with self._lock:
            self._requeue(worker)

    def take_back_if_idle(self, worker: PooledThread, executor: RequestExecutor) -> bool:
        """Called by a thread whose request has no job queued: take it back, unless a job came
        in meanwhile (checked under both locks, so that none is left without a thread)."""
        with self._lock:
            if not executor.unbind_if_idle(worker):
                return False
            self._requeue(worker)
            return True

    def _requeue(self, worker: PooledThread) -> None:
        """Hand a returning thread to the next waiting request, or make it idle. Holds the lock."""
        self._progress = time.monotonic()
        if self._waiting:
            self._hand_waiting(worker)
        elif self._closed:
            worker.hand(_EXIT)
        else:
            self._idle.append(worker)

    def _watch_waiting(self) -> None:
        """Make sure a watcher looks after the waiting requests. Holds the lock."""
        if self._watch is None:
            self._watch = threading.Condition(self._lock)
            threading.Thread(
                target=self._look_after_waiting, name="asgi_bridge-pool-watch", daemon=True
            ).start()
        else:
            self._watch.notify()

    def _look_after_waiting(self) -> None:
        """The watcher thread: refuses the requests that waited too long, outside the lock."""
        while True:
            with self._lock:
                expired = self._next_expired()
            if expired is None:
                return
            assert self.wait_timeout is not None
            for executor in expired:
                executor.refuse(ThreadWaitTimeout(self.wait_timeout, self.max_threads))

    def _next_expired(self) -> list[RequestExecutor] | None:
        """While requests wait: if no thread came back for ``starved_after``, lend past the
        busy limit, one thread per waiting request, up to ``max_threads``; return the requests
        that have waited ``wait_timeout`` for their first thread. None once the pool is closed.
        Holds the lock, which waiting on the condition lets go of meanwhile."""
        watch = self._watch
        assert watch is not None
        while not self._closed:
            if not self._waiting:
                watch.wait()
                continue
            now = time.monotonic()
            expired = self._take_expired(now)
            if expired:
                return expired
            quiet = now - self._progress
            if quiet >= self.starved_after:
                self._progress = now
                while self._waiting and (worker := self._free_thread()):
                    self._hand_waiting(worker)
                continue
            pause = self.starved_after - quiet
            first = next((each for each in self._waiting if not each.started), None)
            if first is not None and self.wait_timeout is not None:
                pause = min(pause, first.waiting_since + self.wait_timeout - now)
            watch.wait(max(pause, 0.0))
        return None

    def _take_expired(self, now: float) -> list[RequestExecutor]:
        """Take the requests that waited ``wait_timeout`` for their first thread out of the
        line. Holds the lock."""
        if self.wait_timeout is None:
            return []
        deadline = now - self.wait_timeout
        expired = [
            each for each in self._waiting if not each.started and each.waiting_since <= deadline
        ]
        if expired:
            self._waiting = deque(each for each in self._waiting if each not in expired)
            self._timeouts += len(expired)
        return expired

    def thread_exited(self, worker: PooledThread) -> None:
        try:
            if self._on_thread_exit is not None:
                self._on_thread_exit()
        except Exception:
            logger.exception("Error while closing pooled thread %s", worker.thread.name)
        finally:
            with self._lock:
                self._threads.discard(worker)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop idle threads now and busy ones when their request ends; wait up to ``timeout``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
            if self._watch is not None:
                self._watch.notify()
        for worker in idle:
            worker.hand(_EXIT)
        deadline = time.monotonic() + timeout
        for worker in threads:
            if worker.thread is not threading.current_thread():
                worker.thread.join(max(0.0, deadline - time.monotonic()))


def executor_context(executor: Executor) -> ThreadSensitiveContext:
    """A thread-sensitive context whose sync_to_async calls all run on ``executor``.

    Where asgiref cannot be told the executor (not EXECUTOR_CONTEXT_AVAILABLE), a plain one:
    its calls then run on a thread asgiref picks, and so do the request's own (on_request_thread).
    """
    # The ignores: before asgiref 3.13 there is no such argument, and no annotation.
    if CONTEXT_TAKES_EXECUTOR:
        return ThreadSensitiveContext(executor=executor)  # type: ignore[call-arg,no-untyped-call,unused-ignore]
    if LEGACY_EXECUTOR_CONTEXT_AVAILABLE:
        return LegacyExecutorContext(executor)
    return ThreadSensitiveContext()  # type: ignore[no-untyped-call,unused-ignore]


# The executor of the request whose task is running; set by the handler for each request.
request_executor: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "asgi_bridge_request_executor", default=None
)


class CurrentRequestExecutor(Executor):
    """Submits to the executor of the request whose task submits: one object for all requests."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        executor = request_executor.get()
        if executor is None:
            raise RuntimeError("no asgi_bridge request is running in this context")
        return executor.submit(fn, *args, **kwargs)


_current_request_executor = CurrentRequestExecutor()


def on_request_thread(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``sync_to_async(func)`` that runs on the current request's thread.

    Unlike a thread-sensitive ``sync_to_async``, it needs no ``ThreadSensitiveContext`` to find
    that thread, and entering one costs a request about as much as the hop itself. Outside a
    request it falls back to the thread-sensitive call; so it does where thread-sensitive calls
    cannot be sent to the request's thread (not EXECUTOR_CONTEXT_AVAILABLE), to keep sharing
    the thread that Django's own calls get.
    """
    # asgiref's annotation asks for a ThreadPoolExecutor; it only ever calls submit().
    executor = cast(ThreadPoolExecutor, _current_request_executor)
    on_thread = sync_to_async(func, thread_sensitive=False, executor=executor)
    thread_sensitive = sync_to_async(func)

    async def call(*args: Any, **kwargs: Any) -> T:
        executor = request_executor.get()
        if executor is None or not EXECUTOR_CONTEXT_AVAILABLE:
            return await thread_sensitive(*args, **kwargs)
        if hop.AVAILABLE and type(executor) is RequestExecutor:
            return await hop.call_on_thread(executor, func, args, kwargs)
        return await on_thread(*args, **kwargs)

    return call


def from_request_thread(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """``async_to_sync(func)`` that, on a request's pooled thread, keeps serving that request.

    The thread waits for ``func`` on the server's event loop in its own job queue, where the
    request's thread-sensitive ``sync_to_async`` calls arrive too; ``async_to_sync`` would set
    up a second queue, a lock and two futures for that. Anywhere else it is ``async_to_sync``.
    """

    def call(*args: Any, **kwargs: Any) -> T:
        executor = request_executor.get()
        if hop.LOOP_AVAILABLE and type(executor) is RequestExecutor and executor.runs_here():
            local = sync_to_async_threadlocal
            loop = getattr(local, "main_event_loop", None)
            if (
                loop is not None
                and not loop.is_closed()
                and getattr(local, "main_event_loop_pid", None) == os.getpid()
            ):
                return hop.call_on_loop(executor, loop, func, args, kwargs)
        return async_to_sync(func)(*args, **kwargs)

    return call


class _SyncCallsOnExecutor:
    """Sets ``AsyncToSync.executors.current`` to the request's executor while entered."""

    __slots__ = ("outer",)

    async def __aenter__(self) -> None:
        executors = async_to_sync_executors
        assert executors is not None
        self.outer = getattr(executors, "current", None)
        executors.current = request_executor.get()

    async def __aexit__(self, *exc_info: object) -> None:
        assert async_to_sync_executors is not None
        async_to_sync_executors.current = self.outer


def sync_calls_on_request_thread() -> AbstractAsyncContextManager[object]:
    """Inside it, this task's thread-sensitive ``sync_to_async`` calls run on the request's
    thread. For an async view awaited by the handler.

    Through ``AsyncToSync.executors``, as ``async_to_sync`` arranges it for the coroutine it
    runs: cheaper than entering a ``ThreadSensitiveContext``, which is the way where that
    internal is missing. Where asgiref cannot be told the request's thread at all (no
    EXECUTOR_CONTEXT_AVAILABLE), on_request_thread lets asgiref pick it, and so does this."""
    if not EXECUTOR_CONTEXT_AVAILABLE:
        return nullcontext()
    if async_to_sync_executors is not None:
        return _SyncCallsOnExecutor()
    return request_thread_context()


def request_thread_context() -> AbstractAsyncContextManager[object]:
    """Inside it, thread-sensitive ``sync_to_async`` calls run on the current request's thread.

    A no-op where that is already so: outside a request, and inside the context the handler
    enters for a whole request when it uses Django's async chain.
    """
    executor = request_executor.get()
    if executor is None or context_executor() is executor:
        return nullcontext()
    return executor_context(executor)


# The test's thread, for an application that asgi_bridge.testing drives from sync test code on
# an event loop of its own: that thread runs the application's sync code while it waits for an
# answer, as a thread waiting in async_to_sync does.
waiting_test_thread: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "waiting_test_thread", default=None
)


def caller_thread_executor() -> Executor | None:
    """The sync thread waiting, through ``async_to_sync``, for the code that calls this.

    Django's async test methods and its AsyncClient run that way, and Django's handler then
    runs a request's sync code on the waiting thread, inside the test's database transaction;
    an application started in a fresh context (asgiref's ApplicationCommunicator) does not see
    it, and neither does anything under a server, which never calls through async_to_sync.
    asgi_bridge.testing's sync WebSocket sessions name their waiting thread themselves.
    """
    test_thread = waiting_test_thread.get()
    if test_thread is not None:
        return test_thread
    if async_to_sync_executors is None:
        return None
    # The cheap test first: a server's event loop is never one that async_to_sync started, and
    # looking up a missing asgiref Local attribute costs several microseconds.
    if (
        loop_thread_executors is not None
        and asyncio.get_running_loop() not in loop_thread_executors
    ):
        return None
    executor: Executor | None = getattr(async_to_sync_executors, "current", None)
    return executor


def close_thread_connections() -> None:
    from django.db import connections

    connections.close_all()


def thread_in_transaction() -> bool:
    """Whether a database connection of this thread is in a transaction, which only this
    thread's later sync calls may finish: the request keeps the thread until then."""
    from django.db import connections

    return any(
        connection.in_atomic_block
        or (connection.connection is not None and not connection.autocommit)
        for connection in connections.all(initialized_only=True)
    )


class ProcessPool:
    """One RequestThreadPool for the process: made on first use with Django's connection
    handling, replaced when its settings change (override_settings), forgotten in a forked
    child (which has none of its parent's threads: a pool inherited from a pre-forking server's
    parent would hand work to nobody), and shut down at exit, when idle threads close their
    database connections."""

    def __init__(self, exit_timeout: float) -> None:
        self._pool: RequestThreadPool | None = None
        self._lock = threading.Lock()
        self._exit_timeout = exit_timeout
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)
        atexit.register(self._shut_down)

    def get(
        self, max_threads: int, wait_timeout: float | None = None, queue_size: int | None = None
    ) -> RequestThreadPool:
        pool = self._pool
        if pool is not None and pool.configured_as(max_threads, wait_timeout, queue_size):
            # Every request asks: the lock is only needed to create or replace the pool.
            return pool
        with self._lock:
            pool = self._pool
            if pool is None or not pool.configured_as(max_threads, wait_timeout, queue_size):
                old, self._pool = (
                    pool,
                    RequestThreadPool(
                        max_threads,
                        close_thread_connections,
                        keeps_thread=thread_in_transaction,
                        wait_timeout=wait_timeout,
                        queue_size=queue_size,
                    ),
                )
                if old is not None:
                    old.shutdown(timeout=0)
            assert self._pool is not None
            return self._pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()

    def _shut_down(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(timeout=self._exit_timeout)


_request_pool = ProcessPool(exit_timeout=5.0)


def request_threads(
    max_threads: int, wait_timeout: float | None = None, queue_size: int | None = None
) -> RequestThreadPool:
    """The process's pool for requests' sync code."""
    return _request_pool.get(max_threads, wait_timeout, queue_size)
