"""call_on_thread: sync_to_async's round trip to a request's thread, without its machinery."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest import mock

from asgiref.local import Local
from asgiref.sync import async_to_sync, sync_to_async

from asgi_bridge import hop
from asgi_bridge.threads import RequestExecutor, on_request_thread, request_executor

from .test_threads import WAIT, PoolTestCase

flavour: contextvars.ContextVar[str] = contextvars.ContextVar("flavour", default="plain")
local = Local()


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

    async def cancel_inside_async_to_sync(self, call: Any, then: str) -> tuple[str, list[str]]:
        """Cancel ``call`` while the function waits in async_to_sync; ``then`` is what it does."""
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
                return async_to_sync(waits)()
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

    async def test_a_cancel_inside_async_to_sync_ends_as_with_sync_to_async(self) -> None:
        # asgiref passes the cancel on to the coroutine and then waits for the function.
        reference_executor = ThreadPoolExecutor(1)
        self.addCleanup(reference_executor.shutdown)

        def reference(func: Any) -> Any:
            return sync_to_async(func, thread_sensitive=False, executor=reference_executor)()

        expected = {
            "return": ("function returned", ["coroutine cancelled", "function saw the cancel"]),
            "reraise": ("caller cancelled", ["coroutine cancelled", "function saw the cancel"]),
            "absorb": ("absorbed", ["coroutine cancelled"]),
        }
        for then, outcome in expected.items():
            with self.subTest(then=then):
                self.assertEqual(await self.cancel_inside_async_to_sync(self.call, then), outcome)
                self.assertEqual(await self.cancel_inside_async_to_sync(reference, then), outcome)

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
