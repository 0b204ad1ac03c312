"""The round trips between the loop and a request's thread, without asgiref's machinery.

call_on_thread does what sync_to_async does, from_request_thread what async_to_sync does.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast
from unittest import mock

from asgiref.local import Local
from asgiref.sync import async_to_sync, sync_to_async

from asgi_bridge import hop
from asgi_bridge.threads import (
    RequestExecutor,
    from_request_thread,
    on_request_thread,
    request_executor,
)

from .test_threads import WAIT, PoolTestCase

flavour: contextvars.ContextVar[str] = contextvars.ContextVar("flavour", default="plain")
local = Local()


# What the caller gets, and what the coroutine and the function saw, when the function (which
# waits in async_to_sync) then returns, re-raises the cancel, or the coroutine absorbs it.
CANCEL_OUTCOMES = {
    "return": ("function returned", ["coroutine cancelled", "function saw the cancel"]),
    "reraise": ("caller cancelled", ["coroutine cancelled", "function saw the cancel"]),
    "absorb": ("absorbed", ["coroutine cancelled"]),
}


async def cancel_inside_async_to_sync(
    call: Any, then: str, converter: Any = async_to_sync
) -> tuple[str, list[str]]:
    """Cancel ``call`` while the function waits in ``converter`` (async_to_sync); ``then``
    is what it does."""
    inside = asyncio.Event()
    outcome: list[str] = []

    async def waits() -> str:
        inside.set()
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            outcome.append("coroutine cancelled")
            if then == "absorb":
                return "absorbed"
            raise
        return "slept"

    def bridge() -> str:
        try:
            return cast(str, converter(waits)())
        except asyncio.CancelledError:
            outcome.append("function saw the cancel")
            if then == "reraise":
                raise
            return "function returned"

    caller = asyncio.ensure_future(call(bridge))
    await inside.wait()
    caller.cancel()
    try:
        result = await caller
    except asyncio.CancelledError:
        result = "caller cancelled"
    return result, outcome


class CallOnThreadTests(PoolTestCase):
    def setUp(self) -> None:
        self.executor = self.make_pool(2).executor()
        self.addCleanup(self.executor.release)

    async def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await hop.call_on_thread(self.executor, func, args, kwargs)

    async def test_runs_on_the_request_thread_and_returns_the_result(self) -> None:
        def where(a: int, *, b: int) -> tuple[str, int]:
            return threading.current_thread().name, a + b

        first = await self.call(where, 1, b=2)
        second = await self.call(where, 3, b=4)
        self.assertEqual(first[1], 3)
        self.assertEqual(second[1], 7)
        self.assertTrue(first[0].startswith("asgi_bridge-"))
        self.assertEqual(first[0], second[0])

    async def test_context_variables_travel_there_and_back(self) -> None:
        flavour.set("from the loop")

        def swap() -> str:
            seen = flavour.get()
            flavour.set("from the thread")
            return seen

        self.assertEqual(await self.call(swap), "from the loop")
        self.assertEqual(flavour.get(), "from the thread")

    async def test_asgiref_local_values_travel_there_and_back(self) -> None:
        # asgiref 3.11+ tags Local data with its thread: the hop moves it, as sync_to_async does.
        local.prefix = "/loop/"

        def swap() -> str:
            seen: str = local.prefix
            local.prefix = "/thread/"
            return seen

        self.assertEqual(await self.call(swap), "/loop/")
        self.assertEqual(local.prefix, "/thread/")
        del local.prefix

    async def test_an_exception_reaches_the_caller(self) -> None:
        def fail() -> None:
            raise KeyError("missing")

        with self.assertRaisesMessage(KeyError, "missing"):
            await self.call(fail)

    async def test_stop_iteration_becomes_a_runtime_error(self) -> None:
        # An asyncio future cannot carry StopIteration; a silent hang would be worse.
        with self.assertRaisesMessage(RuntimeError, "raised StopIteration") as raised:
            await self.call(next, iter(()))
        self.assertIsInstance(raised.exception.__cause__, StopIteration)

    async def test_the_exception_being_handled_is_handled_in_the_function_too(self) -> None:
        try:
            raise ValueError("being handled")
        except ValueError:
            seen = await self.call(sys.exc_info)
        self.assertIsInstance(seen[1], ValueError)

    async def test_async_to_sync_in_the_function_runs_on_the_callers_loop(self) -> None:
        loop = asyncio.get_running_loop()

        async def running_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        self.assertIs(await self.call(async_to_sync(running_loop)), loop)

    async def test_a_cancelled_caller_does_not_wait_for_a_running_function(self) -> None:
        started, proceed, returned = threading.Event(), threading.Event(), threading.Event()

        def slow() -> None:
            started.set()
            proceed.wait(WAIT)
            returned.set()

        caller = asyncio.ensure_future(self.call(slow))
        await asyncio.to_thread(started.wait, WAIT)
        caller.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await caller
        self.assertFalse(returned.is_set())
        proceed.set()
        await asyncio.to_thread(returned.wait, WAIT)
        self.assertTrue(returned.is_set())

    async def test_a_function_whose_caller_was_cancelled_before_it_started_never_runs(self) -> None:
        proceed = threading.Event()
        ran: list[str] = []
        blocker = asyncio.ensure_future(self.call(proceed.wait, WAIT))
        caller = asyncio.ensure_future(self.call(ran.append, "ran"))
        await asyncio.sleep(0)
        caller.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await caller
        proceed.set()
        await blocker
        self.assertEqual(await self.call(lambda: list(ran)), [])

    async def test_a_cancel_inside_async_to_sync_ends_as_with_sync_to_async(self) -> None:
        # asgiref passes the cancel on to the coroutine and then waits for the function.
        reference_executor = ThreadPoolExecutor(1)
        self.addCleanup(reference_executor.shutdown)

        def reference(func: Any) -> Any:
            return sync_to_async(func, thread_sensitive=False, executor=reference_executor)()

        for then, outcome in CANCEL_OUTCOMES.items():
            with self.subTest(then=then):
                self.assertEqual(await cancel_inside_async_to_sync(self.call, then), outcome)
                self.assertEqual(await cancel_inside_async_to_sync(reference, then), outcome)

    def test_a_closed_loop_does_not_trouble_the_thread(self) -> None:
        started, proceed = threading.Event(), threading.Event()

        def outlives_the_loop() -> str:
            started.set()
            proceed.wait(WAIT)
            return "done"

        async def leave_early() -> None:
            caller = asyncio.ensure_future(self.call(outlives_the_loop))
            await asyncio.to_thread(started.wait, WAIT)
            caller.cancel()

        loop = asyncio.new_event_loop()
        loop.run_until_complete(leave_early())
        loop.close()
        with self.assertNoLogs("asgi_bridge", "ERROR"):
            proceed.set()
            after = self.executor.submit(threading.current_thread)
            self.assertTrue(after.result(WAIT).name.startswith("asgi_bridge-"))


class OnRequestThreadTests(PoolTestCase):
    """on_request_thread takes the hop for a pooled request, sync_to_async otherwise."""

    async def run_in_request(self, available: bool) -> tuple[str, str, mock.MagicMock]:
        executor = self.make_pool(1).executor()
        self.addCleanup(executor.release)
        token = request_executor.set(executor)
        flavour.set("request")

        def swap() -> str:
            seen = flavour.get()
            flavour.set(threading.current_thread().name)
            return seen

        try:
            with (
                mock.patch.object(hop, "AVAILABLE", available),
                mock.patch.object(hop, "call_on_thread", wraps=hop.call_on_thread) as spy,
            ):
                seen = await on_request_thread(swap)()
        finally:
            request_executor.reset(token)
        return seen, flavour.get(), spy

    async def test_the_hop_carries_a_request_to_its_thread(self) -> None:
        seen, after, spy = await self.run_in_request(available=True)
        self.assertEqual(spy.call_count, 1)
        self.assertIsInstance(spy.call_args.args[0], RequestExecutor)
        self.assertEqual(seen, "request")
        self.assertTrue(after.startswith("asgi_bridge-"))

    async def test_without_the_hop_sync_to_async_does_the_same(self) -> None:
        seen, after, spy = await self.run_in_request(available=False)
        self.assertEqual(spy.call_count, 0)
        self.assertEqual(seen, "request")
        self.assertTrue(after.startswith("asgi_bridge-"))


class FromRequestThreadTests(PoolTestCase):
    """from_request_thread, on a request's pooled thread, against async_to_sync itself."""

    def setUp(self) -> None:
        self.pool = self.make_pool(1)
        self.executor = self.pool.executor()
        self.addCleanup(self.executor.release)
        token = request_executor.set(self.executor)
        self.addCleanup(request_executor.reset, token)
        spy = mock.patch.object(hop, "call_on_loop", wraps=hop.call_on_loop)
        self.call_on_loop = spy.start()
        self.addCleanup(spy.stop)

    async def call(self, func: Any, *args: Any) -> Any:
        """Run the sync ``func`` on the request's thread, as the handler's hop does."""
        return await hop.call_on_thread(self.executor, func, args, {})

    async def both_ways(self, sync_func: Any) -> tuple[Any, Any]:
        """``sync_func(converter)`` on the request's thread, with each converter; it must have
        taken the short way once, and only with from_request_thread."""
        reference = await self.call(sync_func, async_to_sync)
        self.assertEqual(self.call_on_loop.call_count, 0)
        result = await self.call(sync_func, from_request_thread)
        self.assertEqual(self.call_on_loop.call_count, 1)
        return result, reference

    async def test_the_coroutine_runs_on_the_loop_and_returns_its_result(self) -> None:
        async def where(a: int, *, b: int) -> tuple[int, int]:
            return threading.get_ident(), a + b

        result, reference = await self.both_ways(lambda convert: convert(where)(1, b=2))
        self.assertEqual(result, (threading.get_ident(), 3))
        self.assertEqual(result, reference)

    async def test_its_thread_sensitive_sync_calls_run_on_the_waiting_thread(self) -> None:
        async def calls_sync_code() -> int:
            return await sync_to_async(threading.get_ident)()

        def from_thread(convert: Any) -> tuple[int, int]:
            return threading.get_ident(), convert(calls_sync_code)()

        result, reference = await self.both_ways(from_thread)
        self.assertEqual(result[0], result[1])
        self.assertEqual(reference[0], reference[1])
        self.assertNotEqual(result[1], threading.get_ident())

    async def test_context_variables_and_locals_travel_there_and_back(self) -> None:
        async def swap() -> tuple[str, str]:
            seen = flavour.get(), local.prefix
            flavour.set("from the loop")
            local.prefix = "/loop/"
            return seen

        def from_thread(convert: Any) -> tuple[tuple[str, str], tuple[str, str]]:
            flavour.set("from the thread")
            local.prefix = "/thread/"
            seen = convert(swap)()
            return seen, (flavour.get(), local.prefix)

        result, reference = await self.both_ways(from_thread)
        self.assertEqual(result, (("from the thread", "/thread/"), ("from the loop", "/loop/")))
        self.assertEqual(result, reference)

    async def test_exceptions_and_the_one_being_handled_reach_the_same_places(self) -> None:
        async def fail() -> None:
            raise KeyError("missing")

        async def handled() -> Any:
            return sys.exc_info()[1]

        def from_thread(convert: Any) -> tuple[str, Any]:
            try:
                convert(fail)()
            except KeyError as error:
                raised = str(error)
            try:
                raise ValueError("being handled")
            except ValueError:
                seen = convert(handled)()
            return raised, type(seen)

        reference = await self.call(from_thread, async_to_sync)
        result = await self.call(from_thread, from_request_thread)
        self.assertEqual(self.call_on_loop.call_count, 2)
        self.assertEqual(result, ("'missing'", ValueError))
        self.assertEqual(result, reference)

    async def test_a_failure_before_the_coroutine_starts_reaches_the_thread(self) -> None:
        loop_thread = threading.get_ident()
        restore = hop._restore_context
        # Armed by the thread just before it awaits the coroutine: only the loop's side of that
        # trip fails, not the hop that brought the thread there.
        armed = threading.Event()

        def fails_on_the_loop(context: contextvars.Context) -> None:
            if armed.is_set() and threading.get_ident() == loop_thread:
                armed.clear()
                raise LookupError("context refused")
            assert restore is not None
            restore(context)

        async def never_awaited() -> None:
            raise AssertionError("the coroutine must not run")

        def from_thread() -> str:
            armed.set()
            try:
                from_request_thread(never_awaited)()
            except LookupError as error:
                return str(error)
            return "no error"

        with mock.patch.object(hop, "_restore_context", fails_on_the_loop):
            self.assertEqual(await self.call(from_thread), "context refused")
        self.assertEqual(self.call_on_loop.call_count, 1)

    async def test_a_cancel_while_it_waits_ends_as_with_async_to_sync(self) -> None:
        for then, outcome in CANCEL_OUTCOMES.items():
            with self.subTest(then=then):
                calls = self.call_on_loop.call_count
                self.assertEqual(
                    await cancel_inside_async_to_sync(self.call, then, from_request_thread),
                    outcome,
                )
                self.assertEqual(self.call_on_loop.call_count, calls + 1)

    async def test_a_release_while_it_waits_takes_effect_when_the_thread_is_done(self) -> None:
        inside, proceed = asyncio.Event(), asyncio.Event()

        async def waits() -> str:
            inside.set()
            await proceed.wait()
            return "done"

        caller = asyncio.ensure_future(self.call(from_request_thread(waits)))
        await inside.wait()
        self.executor.release()
        proceed.set()
        self.assertEqual(await caller, "done")
        for _ in range(500):
            if self.pool.idle_count:
                break
            await asyncio.sleep(0.01)
        self.assertEqual(self.pool.idle_count, 1)

    async def test_elsewhere_it_is_async_to_sync(self) -> None:
        async def where() -> int:
            return threading.get_ident()

        # A thread of asgiref's own, not the request's: async_to_sync finds the loop the same way.
        on_other_thread = sync_to_async(from_request_thread(where), thread_sensitive=False)
        self.assertEqual(await on_other_thread(), threading.get_ident())
        self.assertEqual(self.call_on_loop.call_count, 0)
