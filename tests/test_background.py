"""after_response(): work that runs once the response is over, in tasks the handler owns."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.http import HttpRequest, HttpResponse
from django.test import SimpleTestCase, override_settings
from django.urls import path

from asgi_bridge import get_asgi_application
from asgi_bridge.background import BackgroundStats, after_response
from asgi_bridge.exceptions import BackgroundQueueFull
from asgi_bridge.handler import ASGIHandler

from . import urls
from .asgi import ServedLikeByAServer, http_scope, started_lifespan
from .test_handler import wait_for_event

# Bounds every wait, so that a hung test fails instead of hanging; never reached otherwise.
WAIT = 5


def queue_jobs(request: HttpRequest) -> HttpResponse:
    """Queues urls.observed["job"] ?count= times; answers 503 if the backlog is full."""
    urls.observed.setdefault("queue_threads", set()).add(threading.get_ident())
    try:
        for _ in range(int(request.GET.get("count", "1"))):
            after_response(urls.observed["job"])
    except BackgroundQueueFull as error:
        return HttpResponse(str(error), status=503)
    return HttpResponse("queued")


urlpatterns = [
    path("", urls.hello),
    path("async/", urls.async_hello),
    path("queue/", queue_jobs),
]


def counts_since(before: BackgroundStats, after: BackgroundStats) -> dict[str, int]:
    """What the process's counters added between two stats(); the gauges as they are now."""
    return {
        "running": after.running,
        "queued": after.queued,
        "completed": after.completed - before.completed,
        "failed": after.failed - before.failed,
        "refused": after.refused - before.refused,
        "abandoned": after.abandoned - before.abandoned,
    }


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

    async def serve(
        self, application: ASGIHandler, path: str, query_string: bytes = b""
    ) -> MarkingSend:
        send = MarkingSend()
        messages = iter([{"type": "http.request", "body": b""}])

        async def receive() -> dict[str, Any]:
            try:
                return next(messages)
            except StopIteration:
                # A client that stays: the handler's listener waits here until cancelled.
                await asyncio.Event().wait()
                raise AssertionError("unreachable") from None

        scope = http_scope(path, query_string=query_string)
        await asyncio.wait_for(application(scope, receive, send), WAIT)
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
        self.assertIn("Abandoned 1 after_response() job(s)", logs.output[-1])
        self.assertIn("1 cancelled while running (", logs.output[-1])
        self.assertIn("endless_job", logs.output[-1])


@override_settings(ROOT_URLCONF=__name__)
class BoundedBackgroundWorkTests(BackgroundTestCase):
    """after_response() work has threads and a backlog of its own, both bounded."""

    def setUp(self) -> None:
        super().setUp()
        # A job blocked on this must never outlive its test, whatever the test's outcome.
        self.release = threading.Event()
        self.addCleanup(self.release.set)

    def blocking_job(self) -> None:
        urls.observed.setdefault("job_threads", []).append(threading.get_ident())
        urls.observed["job_started"].set()
        self.release.wait(WAIT)

    @override_settings(ASGI_BRIDGE={"THREADS": 2, "BACKGROUND_THREADS": 1})
    async def test_a_burst_of_sync_work_leaves_requests_their_threads(self) -> None:
        urls.observed.update(job=self.blocking_job, job_started=threading.Event())
        application = get_asgi_application()
        before = application.background.stats()
        # 50 requests each queue a job that holds its thread until released. Requests have two
        # threads: were the work to take them, the third request would never be answered.
        for _ in range(50):
            send = await self.serve(application, "/queue/")
            self.assertEqual(send.messages[-1]["body"], b"queued")
        await wait_for_event(urls.observed["job_started"])
        for view_path in ("/", "/async/"):
            send = await self.serve(application, view_path)
            self.assertEqual(send.messages[0]["status"], 200, view_path)
        stats = application.background.stats()
        self.assertEqual((stats.running, stats.queued), (1, 49))
        self.release.set()
        await application.background.drain(timeout=WAIT)
        self.assertEqual(
            counts_since(before, application.background.stats()),
            {"running": 0, "queued": 0, "completed": 50, "failed": 0, "refused": 0, "abandoned": 0},
        )
        # Each job ran once, all on the one background thread, which no request ever had.
        job_threads = urls.observed["job_threads"]
        self.assertEqual(len(job_threads), 50)
        self.assertEqual(len(set(job_threads)), 1)
        request_threads = {*urls.observed["queue_threads"], urls.observed["view_thread"]}
        self.assertTrue(request_threads.isdisjoint(job_threads))

    @override_settings(ASGI_BRIDGE={"BACKGROUND_THREADS": 2})
    async def test_at_most_background_threads_async_jobs_run_at_once(self) -> None:
        gate = asyncio.Event()
        running: list[int] = []
        most_at_once = 0

        async def waits_at_gate() -> None:
            nonlocal most_at_once
            running.append(1)
            most_at_once = max(most_at_once, len(running))
            await gate.wait()
            running.pop()

        urls.observed["job"] = waits_at_gate
        application = get_asgi_application()
        before = application.background.stats()
        for _ in range(5):
            await self.serve(application, "/queue/")
        # Enough turns of the loop for every job that may start to have started.
        for _ in range(20):
            await asyncio.sleep(0)
        self.assertEqual(len(running), 2)
        stats = application.background.stats()
        self.assertEqual((stats.running, stats.queued), (2, 3))
        gate.set()
        await application.background.drain(timeout=WAIT)
        self.assertEqual(most_at_once, 2)
        self.assertEqual(counts_since(before, application.background.stats())["completed"], 5)

    @override_settings(ASGI_BRIDGE={"BACKGROUND_THREADS": 1, "BACKGROUND_QUEUE_SIZE": 3})
    async def test_after_response_refuses_work_past_the_queue_size(self) -> None:
        gate = asyncio.Event()
        started = asyncio.Event()
        finished: list[int] = []

        async def waits_at_gate() -> None:
            started.set()
            await gate.wait()
            finished.append(1)

        urls.observed["job"] = waits_at_gate
        application = get_asgi_application()
        before = application.background.stats()
        # One job runs, which takes it out of the backlog; then the backlog fills, exactly.
        await self.serve(application, "/queue/")
        await asyncio.wait_for(started.wait(), WAIT)
        send = await self.serve(application, "/queue/", b"count=3")
        self.assertEqual(send.messages[0]["status"], 200)
        with self.assertLogs("asgi_bridge", "WARNING") as logs:
            first = await self.serve(application, "/queue/")
            second = await self.serve(application, "/queue/", b"count=2")
        for send in (first, second):
            self.assertEqual(send.messages[0]["status"], 503)
            message = send.messages[-1]["body"].decode()
            self.assertIn("after_response() refused", message)
            self.assertIn("waits_at_gate", message)
            self.assertIn("3 jobs already wait to run", message)
            self.assertIn("ASGI_BRIDGE['BACKGROUND_QUEUE_SIZE'] is 3", message)
        # The first refusal is logged; the ones after it, while the backlog stays full, counted.
        [record] = logs.records
        self.assertIn("after_response() refused", record.getMessage())
        self.assertIn("BACKGROUND_QUEUE_SIZE", record.getMessage())
        self.assertEqual(
            counts_since(before, application.background.stats()),
            {"running": 1, "queued": 3, "completed": 0, "failed": 0, "refused": 2, "abandoned": 0},
        )
        gate.set()
        await application.background.drain(timeout=WAIT)
        self.assertEqual(len(finished), 4)
        # With room again, work is accepted, and the refusals meanwhile are told.
        with self.assertLogs("asgi_bridge", "WARNING") as logs:
            send = await self.serve(application, "/queue/")
        self.assertEqual(send.messages[0]["status"], 200)
        self.assertIn("accepts work again, after refusing 2 job(s)", logs.output[0])
        await application.background.drain(timeout=WAIT)
        self.assertEqual(len(finished), 5)

    @override_settings(ASGI_BRIDGE={"BACKGROUND_THREADS": 1, "BACKGROUND_QUEUE_SIZE": 2})
    async def test_start_refuses_a_batch_that_does_not_fit(self) -> None:
        application = get_asgi_application()
        before = application.background.stats()
        jobs: list[Any] = [(urls.record_job, (name,), {}) for name in ("a", "b", "c")]
        with (
            self.assertLogs("asgi_bridge", "WARNING"),
            self.assertRaisesMessage(BackgroundQueueFull, "refused record_job, record_job"),
        ):
            application.background.start(jobs)
        self.assertEqual(application.background.pending, 0)
        self.assertEqual(counts_since(before, application.background.stats())["refused"], 3)

    @override_settings(ASGI_BRIDGE={"BACKGROUND_THREADS": 1})
    async def test_shutdown_waits_for_queued_work_too(self) -> None:
        gate = asyncio.Event()
        finished: list[int] = []

        async def waits_at_gate() -> None:
            await gate.wait()
            finished.append(1)

        urls.observed["job"] = waits_at_gate
        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        for _ in range(3):
            await self.serve(application, "/queue/")
        with self.assertLogs("asgi_bridge", "INFO") as logs:
            await lifespan.send_input({"type": "lifespan.shutdown"})
            self.assertTrue(await lifespan.receive_nothing(timeout=0.2))
            gate.set()
            self.assertEqual(
                await lifespan.receive_output(timeout=WAIT),
                {"type": "lifespan.shutdown.complete"},
            )
        self.assertEqual(len(finished), 3)
        self.assertEqual(
            [record.getMessage() for record in logs.records],
            ["Waiting for 3 after_response() job(s) to finish"],
        )

    @override_settings(ASGI_BRIDGE={"BACKGROUND_THREADS": 1, "BACKGROUND_SHUTDOWN_TIMEOUT": 0.1})
    async def test_shutdown_past_the_timeout_reports_what_it_abandons(self) -> None:
        urls.observed.update(job=self.blocking_job, job_started=threading.Event())
        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        before = application.background.stats()
        await self.serve(application, "/queue/")
        await wait_for_event(urls.observed["job_started"])
        urls.observed["job"] = urls.failing_job
        await self.serve(application, "/queue/", b"count=2")
        with self.assertLogs("asgi_bridge", "WARNING") as logs:
            await lifespan.send_input({"type": "lifespan.shutdown"})
            self.assertEqual(
                await lifespan.receive_output(timeout=WAIT),
                {"type": "lifespan.shutdown.complete"},
            )
        [record] = logs.records
        message = record.getMessage()
        self.assertIn("Abandoned 3 after_response() job(s)", message)
        self.assertIn("BACKGROUND_SHUTDOWN_TIMEOUT", message)
        self.assertIn(
            "1 cancelled while running (BoundedBackgroundWorkTests.blocking_job)", message
        )
        self.assertIn("2 never started (failing_job, failing_job)", message)
        self.assertIn("cannot be stopped", message)
        # Nothing counts the sync job any more: it runs on, unwatched, until it returns.
        self.assertEqual(
            counts_since(before, application.background.stats()),
            {"running": 0, "queued": 0, "completed": 0, "failed": 0, "refused": 0, "abandoned": 3},
        )
        self.assertEqual(application.background.pending, 0)
