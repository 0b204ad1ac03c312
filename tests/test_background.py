"""after_response(): work that runs once the response is over, in tasks the handler owns."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.test import SimpleTestCase, override_settings

from asgi_bridge import get_asgi_application
from asgi_bridge.background import after_response
from asgi_bridge.handler import ASGIHandler

from . import urls
from .asgi import ServedLikeByAServer, http_scope, started_lifespan
from .test_handler import wait_for_event


class MarkingSend:
    """Records messages and notes in urls.observed when the final body message went out."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            urls.observed["final_body_sent"] = True


class BackgroundTestCase(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()

    async def serve(self, application: ASGIHandler, path: str) -> MarkingSend:
        send = MarkingSend()
        messages = iter([{"type": "http.request", "body": b""}])

        async def receive() -> dict[str, Any]:
            try:
                return next(messages)
            except StopIteration:
                # A client that stays: the handler's listener waits here until cancelled.
                await asyncio.Event().wait()
                raise AssertionError("unreachable") from None

        await application(http_scope(path), receive, send)
        return send


class AfterResponseTests(BackgroundTestCase):
    async def test_work_runs_in_order_after_the_final_body_message(self) -> None:
        application = get_asgi_application()
        with self.assertLogs("asgi_bridge", "ERROR") as logs:
            send = await self.serve(application, "/after/")
            await application.background.drain(timeout=5)
        self.assertEqual(send.messages[-1]["body"], b"queued")
        jobs = urls.observed["jobs"]
        self.assertEqual(
            [name for name, _, _ in jobs],
            ["first", "second (sync part)", "second", "third"],
        )
        # Every job saw the response already sent.
        self.assertEqual({sent for _, _, sent in jobs}, {True})
        loop_thread = threading.get_ident()
        sync_threads = {thread for name, thread, _ in jobs if name != "second"}
        self.assertNotIn(loop_thread, sync_threads)
        self.assertEqual(len(sync_threads), 1)
        self.assertEqual(dict((name, thread) for name, thread, _ in jobs)["second"], loop_thread)
        # The failing job was logged with its traceback and did not stop the ones after it.
        [record] = logs.records
        self.assertIn("failing_job", record.getMessage())
        self.assertIn("the mail server said no", logs.output[0])
        self.assertIsNotNone(record.exc_info)

    async def test_work_queued_by_an_async_view(self) -> None:
        application = get_asgi_application()
        await self.serve(application, "/after/async/")
        await application.background.drain(timeout=5)
        names = [name for name, _, _ in urls.observed["jobs"]]
        self.assertEqual(names, ["from async view (sync part)", "from async view"])

    async def test_the_request_does_not_wait_for_its_work(self) -> None:
        gate = asyncio.Event()

        async def waits_for_the_test() -> None:
            await gate.wait()
            urls.observed["waited"] = True

        urls.observed["gated_job"] = waits_for_the_test
        application = get_asgi_application()
        send = await self.serve(application, "/after/gated/")
        # The request has returned while its work still waits, in a task of the handler's.
        self.assertEqual(send.messages[-1]["body"], b"queued")
        self.assertEqual(application.background.pending, 1)
        self.assertNotIn("waited", urls.observed)
        gate.set()
        await application.background.drain(timeout=5)
        self.assertEqual(application.background.pending, 0)
        self.assertTrue(urls.observed["waited"])

    async def test_work_of_a_request_whose_client_left_mid_stream_still_runs(self) -> None:
        application = get_asgi_application()
        communicator = ApplicationCommunicator(application, http_scope("/after/stream/"))
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=5)
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=5)
        await application.background.drain(timeout=5)
        self.assertTrue(urls.observed["closed"])
        self.assertEqual([name for name, _, _ in urls.observed["jobs"]], ["after stream"])

    async def start_blocked_view(self, application: ASGIHandler) -> ApplicationCommunicator:
        urls.observed.update(view_started=threading.Event(), release=threading.Event())
        communicator = ApplicationCommunicator(application, http_scope("/after/late/"))
        await communicator.send_input({"type": "http.request"})
        await wait_for_event(urls.observed["view_started"])
        await communicator.send_input({"type": "http.disconnect"})
        return communicator

    async def wait_for_jobs(self, application: ASGIHandler) -> list[str]:
        for _ in range(500):
            if "jobs" in urls.observed:
                break
            await asyncio.sleep(0.01)
        await application.background.drain(timeout=5)
        return [name for name, _, _ in urls.observed.get("jobs", [])]

    async def test_work_queued_by_a_view_that_outlived_its_client_still_runs(self) -> None:
        application = get_asgi_application()
        communicator = await self.start_blocked_view(application)
        # The handler waits for the view before closing the request (request_finished).
        self.assertTrue(await communicator.receive_nothing(timeout=0.1))
        urls.observed["release"].set()
        await communicator.wait(timeout=5)
        self.assertEqual(await self.wait_for_jobs(application), ["late"])

    async def test_work_queued_after_the_server_cancelled_the_request_still_runs(self) -> None:
        application = get_asgi_application()
        communicator = await self.start_blocked_view(application)
        await asyncio.sleep(0.05)
        # A server that gives up on the request (daphne does, after a while) cancels the task;
        # the view, on its thread, goes on and queues work after the request has ended.
        communicator.future.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await communicator.future
        self.assertNotIn("jobs", urls.observed)
        urls.observed["release"].set()
        self.assertEqual(await self.wait_for_jobs(application), ["late"])


class OutsideARequestTests(SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()

    def test_sync_code_outside_a_request_runs_the_work_at_once(self) -> None:
        after_response(urls.record_job, "now")
        self.assertEqual([name for name, _, _ in urls.observed["jobs"]], ["now"])

    def test_errors_outside_a_request_are_logged_not_raised(self) -> None:
        with self.assertLogs("asgi_bridge", "ERROR") as logs:
            after_response(urls.failing_job)
        self.assertIn("the mail server said no", logs.output[0])

    async def test_async_code_outside_a_request_starts_the_work_in_a_task(self) -> None:
        finished = asyncio.Event()

        async def job() -> None:
            urls.observed["ran"] = True
            finished.set()

        after_response(job)
        self.assertNotIn("ran", urls.observed)
        await asyncio.wait_for(finished.wait(), 5)


class ShutdownWaitsForWorkTests(BackgroundTestCase):
    async def test_shutdown_completes_only_after_pending_work(self) -> None:
        gate = asyncio.Event()

        async def slow_job() -> None:
            await gate.wait()
            urls.observed["slow_job_done"] = True

        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        application.background.start([(slow_job, (), {})])
        await lifespan.send_input({"type": "lifespan.shutdown"})
        self.assertTrue(await lifespan.receive_nothing(timeout=0.2))
        gate.set()
        self.assertEqual(
            await lifespan.receive_output(timeout=5), {"type": "lifespan.shutdown.complete"}
        )
        self.assertTrue(urls.observed["slow_job_done"])

    @override_settings(ASGI_BRIDGE={"BACKGROUND_SHUTDOWN_TIMEOUT": 0.1})
    async def test_shutdown_cancels_and_logs_work_past_the_timeout(self) -> None:
        async def endless_job() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                urls.observed["cancelled"] = True
                raise

        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        application.background.start([(endless_job, (), {})])
        await asyncio.sleep(0)
        with self.assertLogs("asgi_bridge", "WARNING") as logs:
            await lifespan.send_input({"type": "lifespan.shutdown"})
            self.assertEqual(
                await lifespan.receive_output(timeout=5), {"type": "lifespan.shutdown.complete"}
            )
        self.assertTrue(urls.observed["cancelled"])
        self.assertIn("Cancelled 1 after_response() task(s)", logs.output[-1])
