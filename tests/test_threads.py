"""RequestThreadPool and RequestExecutor: one thread per request, bounded, reused, drained."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import transaction
from django.test import SimpleTestCase, TransactionTestCase

from asgi_bridge.exceptions import ThreadQueueFull, ThreadWaitTimeout
from asgi_bridge.threads import (
    RequestExecutor,
    RequestThreadPool,
    close_thread_connections,
    executor_context,
    request_executor,
    request_thread_context,
    thread_in_transaction,
)

WAIT = 5.0


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def current_thread() -> threading.Thread:
    return threading.current_thread()


class PoolTestCase(SimpleTestCase):
    def make_pool(self, size: int, on_exit: Callable[[], None] | None = None) -> RequestThreadPool:
        pool = RequestThreadPool(size, on_exit)
        self.addCleanup(pool.shutdown)
        return pool

    def threads_meeting(self, pool: RequestThreadPool, count: int) -> set[threading.Thread]:
        """The threads of ``count`` requests that can only finish together, each waiting for
        all the others; the requests are over when this returns."""
        barrier = threading.Barrier(count, timeout=WAIT)
        executors = [pool.executor() for _ in range(count)]
        futures = [
            executor.submit(lambda: barrier.wait() is not None and current_thread())
            for executor in executors
        ]
        threads = {future.result(WAIT) for future in futures}
        for executor in executors:
            executor.release()
        return threads


class RequestExecutorTests(PoolTestCase):
    def test_jobs_of_one_request_run_in_order_on_one_thread(self) -> None:
        executor = self.make_pool(4).executor()
        seen: list[tuple[int, threading.Thread]] = []
        futures = [
            executor.submit(lambda i=i: seen.append((i, threading.current_thread())))
            for i in range(20)
        ]
        for future in futures:
            future.result(WAIT)
        executor.release()
        self.assertEqual([index for index, _ in seen], list(range(20)))
        self.assertEqual(len({thread for _, thread in seen}), 1)
        self.assertTrue(seen[0][1].name.startswith("asgi_bridge-"))
        self.assertIsNot(seen[0][1], threading.current_thread())

    def test_exceptions_reach_the_future(self) -> None:
        executor = self.make_pool(1).executor()
        future = executor.submit(int, "not a number")
        with self.assertRaises(ValueError):
            future.result(WAIT)
        executor.release()

    def test_no_thread_is_taken_before_the_first_job(self) -> None:
        pool = self.make_pool(2)
        executor = pool.executor()
        self.assertEqual(pool.thread_count, 0)
        executor.release()
        self.assertEqual(pool.thread_count, 0)

    def test_submit_after_release_is_refused(self) -> None:
        executor = self.make_pool(1).executor()
        executor.release()
        with self.assertRaisesMessage(RuntimeError, "after the request has ended"):
            executor.submit(print)

    def test_release_is_idempotent_and_shutdown_is_release(self) -> None:
        pool = self.make_pool(1)
        executor = pool.executor()
        executor.submit(current_thread).result(WAIT)
        executor.shutdown(wait=True)
        executor.release()
        # The single thread is free again: another request gets it.
        other = pool.executor()
        self.assertIsNotNone(other.submit(current_thread).result(WAIT))
        other.release()


class ThreadGoesBackBetweenJobsTests(PoolTestCase):
    """A request holds a thread only while it has a job queued or running."""

    def test_thread_is_idle_again_after_each_job_before_release(self) -> None:
        pool = self.make_pool(1)
        executor = pool.executor()
        executor.submit(current_thread).result(WAIT)
        wait_until(lambda: pool.idle_count == 1)
        # Another request gets the only thread while the first has not been released yet.
        other = pool.executor()
        self.assertIsNotNone(other.submit(current_thread).result(WAIT))
        other.release()
        executor.release()

    def test_release_of_a_request_without_a_thread_wakes_nobody(self) -> None:
        pool = self.make_pool(1)
        executor = pool.executor()
        thread = executor.submit(current_thread).result(WAIT)
        wait_until(lambda: pool.idle_count == 1)
        executor.release()
        # The thread was not handed a stale release: it serves the next request's jobs.
        other = pool.executor()
        self.assertIs(other.submit(current_thread).result(WAIT), thread)
        self.assertIs(other.submit(current_thread).result(WAIT), thread)
        other.release()

    def test_jobs_queued_while_one_runs_run_on_its_thread(self) -> None:
        pool = self.make_pool(2)
        executor = pool.executor()
        started, go_on = threading.Event(), threading.Event()

        def job_that_waits() -> threading.Thread:
            started.set()
            go_on.wait(WAIT)
            return threading.current_thread()

        first = executor.submit(job_that_waits)
        started.wait(WAIT)
        queued = executor.submit(current_thread)
        go_on.set()
        self.assertIs(queued.result(WAIT), first.result(WAIT))
        wait_until(lambda: pool.idle_count == 1)
        self.assertEqual(pool.thread_count, 1)
        executor.release()

    def test_a_later_job_gets_the_requests_own_thread_back_when_it_is_idle(self) -> None:
        pool = self.make_pool(4)
        request = pool.executor()
        own = request.submit(current_thread).result(WAIT)
        wait_until(lambda: pool.idle_count == 1)
        # Two other requests take that thread and a new one; the request's own thread comes
        # back first, so the most recently returned idle thread is the other one.
        running = threading.Barrier(3, timeout=WAIT)
        go_on = [threading.Event(), threading.Event()]

        def block(index: int) -> threading.Thread:
            running.wait()
            go_on[index].wait(WAIT)
            return current_thread()

        others = [pool.executor(), pool.executor()]
        taken = [executor.submit(block, index) for index, executor in enumerate(others)]
        running.wait()
        for index in range(2):
            go_on[index].set()
            taken[index].result(WAIT)
            wait_until(lambda n=index + 1: pool.idle_count == n)
            others[index].release()
        self.assertIs(taken[0].result(), own)
        self.assertIsNot(taken[1].result(), own)
        # A plain pop would lend the most recently returned thread, not this one.
        self.assertIs(request.submit(current_thread).result(WAIT), own)
        request.release()

    def test_a_request_keeps_its_thread_while_the_thread_must_stay(self) -> None:
        staying: set[threading.Thread] = set()
        pool = RequestThreadPool(2, keeps_thread=lambda: current_thread() in staying)
        self.addCleanup(pool.shutdown)
        request = pool.executor()

        def stay() -> threading.Thread:
            staying.add(current_thread())
            return current_thread()

        thread = request.submit(stay).result(WAIT)
        # Another request gets another thread: the first is still lent.
        other = pool.executor()
        self.assertIsNot(other.submit(current_thread).result(WAIT), thread)
        other.release()
        wait_until(lambda: pool.idle_count == 1)
        self.assertEqual(pool.busy_count, 1)
        self.assertIs(request.submit(lambda: staying.discard(thread)).result(WAIT), None)
        wait_until(lambda: pool.idle_count == 2)
        request.release()


class ThreadInTransactionTests(TransactionTestCase):
    """The request keeps its thread while the thread's database connection is in a
    transaction, so the request's later sync calls (the only ones that may end it) find it."""

    databases = {"default"}

    def test_thread_stays_with_its_request_until_the_transaction_ends(self) -> None:
        pool = RequestThreadPool(2, close_thread_connections, keeps_thread=thread_in_transaction)
        self.addCleanup(pool.shutdown)
        request = pool.executor()
        atomic = transaction.atomic()

        def enter_transaction() -> threading.Thread:
            atomic.__enter__()
            return current_thread()

        thread = request.submit(enter_transaction).result(WAIT)
        other = pool.executor()
        self.assertIsNot(other.submit(current_thread).result(WAIT), thread)
        other.release()
        wait_until(lambda: pool.idle_count == 1)
        self.assertEqual(pool.busy_count, 1)
        self.assertIs(request.submit(current_thread).result(WAIT), thread)
        request.submit(atomic.__exit__, None, None, None).result(WAIT)
        wait_until(lambda: pool.idle_count == 2)
        request.release()

    def test_no_transaction_no_stay(self) -> None:
        self.assertFalse(thread_in_transaction())
        with transaction.atomic():
            self.assertTrue(thread_in_transaction())
        self.assertFalse(thread_in_transaction())


class RequestThreadPoolTests(PoolTestCase):
    def test_an_idle_thread_is_reused(self) -> None:
        pool = self.make_pool(4)
        threads = []
        for _ in range(5):
            executor = pool.executor()
            threads.append(executor.submit(current_thread).result(WAIT))
            executor.release()
            # release() is asynchronous: wait until the thread is back before the next request.
            wait_until(lambda: pool.idle_count == pool.thread_count)
        self.assertEqual(len(set(threads)), 1)
        self.assertEqual(pool.thread_count, 1)

    def test_concurrent_requests_get_different_threads(self) -> None:
        pool = self.make_pool(4)
        barrier = threading.Barrier(3, timeout=WAIT)
        executors = [pool.executor() for _ in range(3)]

        def meet() -> threading.Thread:
            barrier.wait()
            return threading.current_thread()

        futures = [executor.submit(meet) for executor in executors]
        threads = {future.result(WAIT) for future in futures}
        for executor in executors:
            executor.release()
        self.assertEqual(len(threads), 3)

    def test_requests_wait_for_a_thread_when_all_are_lent(self) -> None:
        pool = self.make_pool(1)
        first, second = pool.executor(), pool.executor()
        gate = threading.Event()
        started: Future[threading.Thread] = first.submit(
            lambda: gate.wait(WAIT) and current_thread()
        )
        waiting = second.submit(current_thread)
        # The second request has no thread while the first one holds the only one.
        self.assertFalse(waiting.done())
        first.release()
        self.assertFalse(waiting.done())
        gate.set()
        self.assertIs(waiting.result(WAIT), started.result(WAIT))
        second.release()
        self.assertEqual(pool.thread_count, 1)

    def test_a_thread_goes_back_only_when_its_work_has_returned(self) -> None:
        pool = self.make_pool(1)
        lender = pool.executor()
        gate = threading.Event()
        lender.submit(gate.wait, WAIT)
        # The request ends (its client left) while its sync code still runs.
        lender.release()
        other = pool.executor()
        waiting = other.submit(current_thread)
        self.assertFalse(waiting.done())
        gate.set()
        waiting.result(WAIT)
        other.release()

    def test_a_cancelled_job_is_skipped(self) -> None:
        pool = self.make_pool(1)
        holder, queued = pool.executor(), pool.executor()
        gate = threading.Event()
        holder.submit(gate.wait, WAIT)
        ran: list[str] = []
        skipped = queued.submit(ran.append, "skipped")
        self.assertTrue(skipped.cancel())
        after = queued.submit(ran.append, "after")
        holder.release()
        queued.release()
        gate.set()
        after.result(WAIT)
        self.assertEqual(ran, ["after"])

    def test_shutdown_runs_the_exit_hook_on_each_thread(self) -> None:
        exits: list[threading.Thread] = []
        pool = RequestThreadPool(2, lambda: exits.append(threading.current_thread()))
        lent = self.threads_meeting(pool, 2)
        pool.shutdown(timeout=WAIT)
        self.assertEqual(set(exits), lent)
        self.assertEqual(pool.thread_count, 0)

    def test_size_must_be_positive(self) -> None:
        with self.assertRaises(ValueError):
            RequestThreadPool(0)


class BusyLimitTests(PoolTestCase):
    """Past ``busy_limit`` lent threads, requests wait while lent threads keep coming back, and
    get threads of their own, up to ``max_threads``, once none has come back for a while."""

    def limited_pool(self, size: int, busy_limit: int, starved_after: float) -> RequestThreadPool:
        pool = RequestThreadPool(size, busy_limit=busy_limit, starved_after=starved_after)
        self.addCleanup(pool.shutdown)
        return pool

    def blocked_requests(
        self, pool: RequestThreadPool, count: int, gate: threading.Event
    ) -> tuple[list[RequestExecutor], list[Future[threading.Thread]], list[threading.Thread]]:
        started: list[threading.Thread] = []

        def hold() -> threading.Thread:
            started.append(threading.current_thread())
            gate.wait(WAIT)
            return threading.current_thread()

        executors = [pool.executor() for _ in range(count)]
        futures = [executor.submit(hold) for executor in executors]
        for executor in executors:
            executor.release()
        return executors, futures, started

    def test_requests_wait_while_lent_threads_come_back(self) -> None:
        pool = self.limited_pool(8, busy_limit=2, starved_after=60)
        gate = threading.Event()
        _, futures, started = self.blocked_requests(pool, 5, gate)
        wait_until(lambda: len(started) == 2)
        time.sleep(0.05)  # room for a wrong third start to show
        self.assertEqual((len(started), pool.busy_count, pool.thread_count), (2, 2, 2))
        gate.set()
        threads = {future.result(WAIT) for future in futures}
        # The two threads served all five requests in turn.
        self.assertEqual(len(threads), 2)
        wait_until(lambda: pool.busy_count == 0)
        self.assertEqual(pool.thread_count, 2)

    def test_waiting_requests_get_threads_once_none_come_back(self) -> None:
        pool = self.limited_pool(8, busy_limit=2, starved_after=0.05)
        # As views waiting on one another would: more than the busy limit must run at once.
        threads = self.threads_meeting(pool, 5)
        self.assertEqual(len(threads), 5)
        self.assertEqual(pool.thread_count, 5)

    def test_never_past_max_threads(self) -> None:
        pool = self.limited_pool(3, busy_limit=1, starved_after=0.01)
        gate = threading.Event()
        _, futures, started = self.blocked_requests(pool, 5, gate)
        wait_until(lambda: len(started) == 3)
        time.sleep(0.05)
        self.assertEqual((len(started), pool.thread_count), (3, 3))
        gate.set()
        for future in futures:
            future.result(WAIT)
        self.assertEqual(pool.thread_count, 3)

    def test_a_burst_after_a_quiet_spell_is_not_starvation(self) -> None:
        pool = self.limited_pool(8, busy_limit=2, starved_after=60)
        # As if no thread had come back for a long time: the pool was idle.
        pool._progress -= 3600
        gate = threading.Event()
        _, futures, started = self.blocked_requests(pool, 4, gate)
        wait_until(lambda: len(started) == 2)
        time.sleep(0.05)
        self.assertEqual(pool.busy_count, 2)
        gate.set()
        for future in futures:
            future.result(WAIT)

    def test_the_default_busy_limit_is_the_cores_and_four_more(self) -> None:
        self.assertEqual(RequestThreadPool(64).busy_limit, (os.cpu_count() or 1) + 4)
        self.assertEqual(RequestThreadPool(2).busy_limit, 2)


class ExecutorContextTests(PoolTestCase):
    async def test_sync_to_async_calls_run_on_the_request_thread(self) -> None:
        pool = self.make_pool(2)
        executor = pool.executor()
        async with executor_context(executor):
            first = await sync_to_async(current_thread)()
            second = await sync_to_async(current_thread)()
        executor.release()
        self.assertIs(first, second)
        self.assertTrue(first.name.startswith("asgi_bridge-"))

    async def test_request_thread_context_is_entered_only_where_it_is_missing(self) -> None:
        pool = self.make_pool(1)
        executor = pool.executor()
        token = request_executor.set(executor)
        try:
            entered = request_thread_context()
            self.assertIsInstance(entered, ThreadSensitiveContext)
            async with entered:
                # Already routed to this request's thread: nothing more to enter.
                self.assertNotIsInstance(request_thread_context(), ThreadSensitiveContext)
                thread = await sync_to_async(current_thread)()
        finally:
            request_executor.reset(token)
            executor.release()
        self.assertTrue(thread.name.startswith("asgi_bridge-"))
        # Outside a request there is no thread to route to.
        self.assertNotIsInstance(request_thread_context(), ThreadSensitiveContext)

    async def test_two_requests_in_parallel_use_two_threads(self) -> None:
        pool = self.make_pool(2)
        barrier = threading.Barrier(2, timeout=WAIT)

        async def request() -> Any:
            executor = pool.executor()
            try:
                async with executor_context(executor):
                    return await sync_to_async(
                        lambda: barrier.wait() is not None and current_thread()
                    )()
            finally:
                executor.release()

        first, second = await asyncio.gather(request(), request())
        self.assertIsNot(first, second)


EXIT_SCRIPT = """
import threading
import django
from django.conf import settings

DATABASE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
settings.configure(DATABASES={"default": DATABASE})
django.setup()
from django.db import connections
from asgi_bridge.threads import request_threads

original_close_all = connections.close_all

def reporting_close_all():
    alive = connections["default"].connection is not None
    original_close_all()
    print("closed on", threading.current_thread().name, "open before:", alive, flush=True)

connections.close_all = reporting_close_all
executor = request_threads(2).executor()
# A lambda: connections["default"] must be looked up on the pooled thread, not here.
executor.submit(lambda: connections["default"].ensure_connection()).result(5)
executor.release()
"""


class ProcessExitTests(SimpleTestCase):
    def test_pooled_threads_close_their_database_connections_at_exit(self) -> None:
        finished = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertEqual(finished.stdout.strip(), "closed on asgi_bridge-1 open before: True")


FORK_SCRIPT = """
import os
import threading
import time
from asgi_bridge.threads import request_threads

def thread_name():
    return threading.current_thread().name

pool = request_threads(2)
executor = pool.executor()
executor.submit(thread_name).result(5)
executor.release()
# Fork only once the parent's thread is idle in the pool, as a preloading server would.
while pool.idle_count == 0:
    time.sleep(0.001)
pid = os.fork()
if pid == 0:
    child = request_threads(2).executor()
    print("child ran on", child.submit(thread_name).result(5), flush=True)
    child.release()
    os._exit(0)
os.waitpid(pid, 0)
"""


class ForkTests(SimpleTestCase):
    def test_a_forked_child_starts_its_own_pool(self) -> None:
        finished = subprocess.run(
            [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertRegex(finished.stdout.strip(), r"^child ran on asgi_bridge-\d+$")


class BoundedWaitTests(PoolTestCase):
    """A request waits a bounded time, in a bounded line, for its first thread."""

    def blocked_pool(self, **options: Any) -> tuple[RequestThreadPool, threading.Event]:
        """A one-thread pool whose thread is held until the returned event is set."""
        pool = RequestThreadPool(1, **options)
        self.addCleanup(pool.shutdown)
        started, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)
        holder = pool.executor()
        holder.submit(lambda: started.set() or release.wait(WAIT))
        self.addCleanup(holder.release)
        started.wait(WAIT)
        return pool, release

    def test_a_request_that_gets_no_thread_in_time_is_refused(self) -> None:
        pool, release = self.blocked_pool(wait_timeout=0.05)
        waiting = pool.executor()
        future = waiting.submit(current_thread)
        with self.assertRaises(ThreadWaitTimeout) as refused:
            future.result(WAIT)
        self.assertIn("ASGI_BRIDGE['THREAD_WAIT_TIMEOUT']", str(refused.exception))
        stats = pool.stats()
        self.assertEqual((stats.timeouts, stats.waiting, stats.waits), (1, 0, 1))
        # The request may ask again: it waits in line anew.
        release.set()
        self.assertIsNotNone(waiting.submit(current_thread).result(WAIT))
        waiting.release()

    def test_a_refused_run_soon_job_reports_the_refusal(self) -> None:
        pool, _ = self.blocked_pool(wait_timeout=0.05)
        refusals: Future[BaseException] = Future()
        pool.executor().run_soon(lambda: None, refusals.set_result)
        self.assertIsInstance(refusals.result(WAIT), ThreadWaitTimeout)

    def test_a_request_whose_code_has_started_is_never_refused(self) -> None:
        pool = RequestThreadPool(1, wait_timeout=0.05)
        self.addCleanup(pool.shutdown)
        request = pool.executor()
        thread = request.submit(current_thread).result(WAIT)
        wait_until(lambda: pool.idle_count == 1)
        started, release = threading.Event(), threading.Event()
        holder = pool.executor()
        holder.submit(lambda: started.set() or release.wait(WAIT))
        started.wait(WAIT)
        later = request.submit(current_thread)
        # Several times the wait timeout: a request past its first job still waits.
        time.sleep(0.3)
        self.assertFalse(later.done())
        release.set()
        self.assertIs(later.result(WAIT), thread)
        self.assertEqual(pool.stats().timeouts, 0)
        holder.release()
        request.release()

    def test_a_full_queue_refuses_at_once(self) -> None:
        pool, release = self.blocked_pool(queue_size=1)
        first = pool.executor()
        waiting = first.submit(current_thread)
        second = pool.executor()
        with self.assertRaises(ThreadQueueFull) as refused:
            second.submit(current_thread).result(WAIT)
        self.assertIn("ASGI_BRIDGE['THREAD_QUEUE_SIZE']", str(refused.exception))
        stats = pool.stats()
        self.assertEqual((stats.queue_full, stats.waiting), (1, 1))
        release.set()
        self.assertIsNotNone(waiting.result(WAIT))
        first.release()
        second.release()

    def test_waits_are_counted(self) -> None:
        pool, release = self.blocked_pool()
        waiting = pool.executor()
        future = waiting.submit(current_thread)
        wait_until(lambda: pool.stats().waiting == 1)
        release.set()
        future.result(WAIT)
        stats = pool.stats()
        self.assertEqual((stats.waits, stats.waiting, stats.timeouts), (1, 0, 0))
        self.assertGreater(stats.wait_seconds, 0)
        self.assertEqual(stats.longest_wait, stats.wait_seconds)
        waiting.release()
