"""Threads as a bounded resource: 503 when none comes free in time, and the metrics that show it."""

from __future__ import annotations

import asyncio
import logging
import threading

from asgiref.testing import ApplicationCommunicator
from django.test import RequestFactory, SimpleTestCase, override_settings

from asgi_bridge import get_asgi_application
from asgi_bridge.metrics import log_metrics_every, metrics_view, thread_metrics

from . import urls
from .asgi import ServedLikeByAServer, body_of, collect_response, http_scope, record_signals
from .test_handler import wait_for_event

BUSY = {"THREADS": 1, "THREAD_WAIT_TIMEOUT": 0.05}


class BusyTests(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()
        urls.observed.update(view_started=threading.Event(), release=threading.Event())
        self.addCleanup(urls.observed["release"].set)
        self.signals = record_signals(self)
        # Built now: get_asgi_application() sets logging up again, which would take assertLogs'
        # handler off the django.request logger.
        self.application = get_asgi_application()

    async def hold_the_only_thread(self) -> ApplicationCommunicator:
        holder = ApplicationCommunicator(self.application, http_scope("/blocking/"))
        await holder.send_input({"type": "http.request"})
        await wait_for_event(urls.observed["view_started"])
        return holder

    async def release_and_finish(self, holder: ApplicationCommunicator) -> None:
        urls.observed["release"].set()
        self.assertEqual(body_of(await collect_response(holder)), b"released")
        await holder.wait(timeout=5)

    async def get(self, path: str = "/") -> list[dict[str, object]]:
        communicator = ApplicationCommunicator(self.application, http_scope(path))
        await communicator.send_input({"type": "http.request"})
        messages = await collect_response(communicator)
        await communicator.wait(timeout=5)
        return messages

    @override_settings(ASGI_BRIDGE=BUSY)
    async def test_no_thread_within_the_wait_is_a_logged_503(self) -> None:
        before = thread_metrics()
        holder = await self.hold_the_only_thread()
        self.signals.clear()
        with self.assertLogs("django.request", "WARNING") as logged:
            messages = await self.get()
        self.assertEqual(messages[0]["status"], 503)
        headers = dict(messages[0]["headers"])  # type: ignore[arg-type]
        self.assertEqual(headers[b"Retry-After"], b"1")
        self.assertIn("THREAD_WAIT_TIMEOUT", logged.output[0])
        # Django never saw the request: no signal for it.
        self.assertEqual(self.signals, [])
        after = thread_metrics()
        self.assertEqual(after.timeouts - before.timeouts, 1)
        self.assertEqual(after.busy_responses - before.busy_responses, 1)
        await self.release_and_finish(holder)
        # The pool serves again once the thread is back.
        self.assertEqual((await self.get())[0]["status"], 200)

    @override_settings(ASGI_BRIDGE={"THREADS": 1, "THREAD_QUEUE_SIZE": 2})
    async def test_a_full_queue_is_a_503_at_once(self) -> None:
        before = thread_metrics()
        holder = await self.hold_the_only_thread()
        waiting = [asyncio.ensure_future(self.get()) for _ in range(2)]
        for _ in range(500):
            if thread_metrics().waiting == 2:
                break
            await asyncio.sleep(0.01)
        with self.assertLogs("django.request", "WARNING") as logged:
            messages = await self.get()
        self.assertEqual(messages[0]["status"], 503)
        self.assertIn("THREAD_QUEUE_SIZE", logged.output[0])
        self.assertEqual(thread_metrics().queue_full - before.queue_full, 1)
        await self.release_and_finish(holder)
        self.assertEqual([(await each)[0]["status"] for each in waiting], [200, 200])

    @override_settings(ASGI_BRIDGE=BUSY)
    async def test_async_views_awaiting_are_not_refused(self) -> None:
        # The only thread is held; an async view that already started waits for its second
        # visit past the wait timeout, and finishes once the thread is back.
        urls.observed["async_started"] = asyncio.Event()
        urls.observed["async_release"] = asyncio.Event()
        before = thread_metrics()
        waiting = asyncio.ensure_future(self.get("/async/handoff/"))
        await asyncio.wait_for(urls.observed["async_started"].wait(), 5)
        holder = await self.hold_the_only_thread()
        urls.observed["async_release"].set()
        await asyncio.sleep(0.2)  # several wait timeouts
        self.assertFalse(waiting.done())
        await self.release_and_finish(holder)
        self.assertEqual(body_of(await waiting), b"through the gate")
        self.assertEqual(thread_metrics().timeouts, before.timeouts)


@override_settings(MIDDLEWARE=["tests.middleware.RecordingMiddleware"])
class BusyWithMiddlewareTests(BusyTests):
    """The same with sync middleware: the chain runs in halves around the async view."""


class MetricsTests(SimpleTestCase):
    def test_prometheus_view(self) -> None:
        response = metrics_view(RequestFactory().get("/metrics/"))
        self.assertEqual(response["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        text = response.content.decode()
        for line in (
            "# TYPE asgi_bridge_thread_pool_busy gauge",
            "# TYPE asgi_bridge_thread_pool_timeouts_total counter",
            "# TYPE asgi_bridge_thread_pool_busy_responses_total counter",
            "# TYPE asgi_bridge_websockets_open gauge",
            "# TYPE asgi_bridge_websockets_slow_reader_closes_total counter",
        ):
            self.assertIn(line, text)
        metrics = thread_metrics()
        self.assertIn(f"asgi_bridge_thread_pool_max_threads {metrics.max_threads}\n", text)

    def test_log_lines_at_an_interval(self) -> None:
        self.addCleanup(log_metrics_every, None)
        with self.assertLogs("asgi_bridge.metrics", logging.INFO) as logged:
            log_metrics_every(0.01)
            for _ in range(500):
                if logged.output:
                    break
                threading.Event().wait(0.01)
        self.assertRegex(logged.output[0], r"threads: \d+ busy, \d+ idle of \d+ started")

    @override_settings(ASGI_BRIDGE={"METRICS_LOG_INTERVAL": 0.01})
    def test_the_setting_starts_the_log_lines(self) -> None:
        self.addCleanup(log_metrics_every, None)
        with self.assertLogs("asgi_bridge.metrics", logging.INFO) as logged:
            get_asgi_application()
            for _ in range(500):
                if logged.output:
                    break
                threading.Event().wait(0.01)
        self.assertIn("waiting", logged.output[0])
