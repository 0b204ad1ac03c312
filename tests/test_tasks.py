"""AfterResponseBackend: django.tasks tasks run after the response, like after_response() work."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from datetime import timedelta
from typing import Any
from unittest import mock, skipIf, skipUnless

import django
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import SimpleTestCase, override_settings
from django.urls import path
from django.utils import timezone

from asgi_bridge import get_asgi_application

from . import test_background, urls
from .asgi import started_lifespan

HAS_TASKS = django.VERSION >= (6, 0)
NEEDS_TASKS = "django.tasks needs Django 6.0+: runs in the tox django60/django61 envs"

if HAS_TASKS:
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

    from asgi_bridge.tasks import AfterResponseBackend

    from . import tasks_fixtures

ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "add": (2, 3),
    "async_add": (2, 3),
    "fail": ("the mail server said no",),
    "async_fail": ("the mail server said no",),
    "attempt": (),
    "wait_for_gate": (),
    "returns_a_set": (),
}


def enqueue(request: HttpRequest, name: str) -> HttpResponse:
    result = getattr(tasks_fixtures, name).enqueue(*ARGUMENTS[name])
    urls.observed["enqueued"] = result
    return HttpResponse(result.id)


async def aenqueue(request: HttpRequest, name: str) -> HttpResponse:
    result = await getattr(tasks_fixtures, name).aenqueue(*ARGUMENTS[name])
    urls.observed["enqueued"] = result
    return HttpResponse(result.id)


urlpatterns = [
    path("enqueue/<str:name>/", enqueue),
    path("aenqueue/<str:name>/", aenqueue),
]

AFTER_RESPONSE = {"default": {"BACKEND": "asgi_bridge.tasks.AfterResponseBackend"}}


@skipIf(HAS_TASKS, "on Django 6.0+ asgi_bridge.tasks imports; the other tests here cover it")
class NeedsDjango60Tests(SimpleTestCase):
    def test_importing_the_backend_on_django_5_2_says_what_it_needs(self) -> None:
        sys.modules.pop("asgi_bridge.tasks", None)
        message = (
            "asgi_bridge.tasks.AfterResponseBackend needs Django 6.0 or later (django.tasks); "
            "this is Django %s." % django.get_version()
        )
        with self.assertRaisesMessage(ImproperlyConfigured, message):
            importlib.import_module("asgi_bridge.tasks")


@skipUnless(HAS_TASKS, NEEDS_TASKS)
@override_settings(ROOT_URLCONF=__name__, TASKS=AFTER_RESPONSE)
class InARequestTests(test_background.BackgroundTestCase):
    def setUp(self) -> None:
        super().setUp()
        # Before any assertLogs(): django.setup() configures logging afresh, which resets the
        # handlers of loggers under "django", django.tasks among them.
        self.application = get_asgi_application()

    async def serve_and_finish(self, path: str) -> tuple[str, test_background.MarkingSend]:
        """Serve ``path``; once the request is over, wait for its tasks. Return the result id."""
        application = self.application
        send = await self.serve(application, path)
        await application.background.drain(timeout=5)
        return send.messages[-1]["body"].decode(), send

    async def test_a_sync_task_runs_on_a_pooled_thread_after_the_final_body_message(self) -> None:
        result_id, _ = await self.serve_and_finish("/enqueue/add/")
        # The view's result was taken before the response, and did not change since.
        self.assertEqual(urls.observed["enqueued"].status, TaskResultStatus.READY)
        [(name, thread, response_sent)] = urls.observed["tasks"]
        self.assertEqual(name, "add")
        self.assertTrue(response_sent)
        self.assertNotEqual(thread, threading.get_ident())
        result = await tasks_fixtures.add.aget_result(result_id)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)
        self.assertEqual(result.errors, [])
        self.assertEqual(result.attempts, 1)
        self.assertIsNotNone(result.enqueued_at)
        self.assertIsNotNone(result.started_at)
        self.assertIsNotNone(result.finished_at)

    async def test_an_async_task_runs_on_the_event_loop_after_the_final_body_message(self) -> None:
        result_id, _ = await self.serve_and_finish("/aenqueue/async_add/")
        [(name, thread, response_sent)] = urls.observed["tasks"]
        self.assertEqual(name, "async_add")
        self.assertTrue(response_sent)
        self.assertEqual(thread, threading.get_ident())
        result = await tasks_fixtures.async_add.aget_result(result_id)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)

    async def test_refresh_brings_the_views_result_up_to_date(self) -> None:
        await self.serve_and_finish("/aenqueue/add/")
        result = urls.observed["enqueued"]
        self.assertEqual(result.status, TaskResultStatus.READY)
        await result.arefresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)

    async def assert_failed_and_logged(self, path: str, task_name: str) -> None:
        with (
            self.assertLogs("django.tasks", "ERROR") as logs,
            self.assertNoLogs("asgi_bridge", "ERROR"),
        ):
            result_id, send = await self.serve_and_finish(path)
        self.assertEqual(send.messages[0]["status"], 200)
        self.assertEqual([name for name, _, _ in urls.observed["tasks"]], [task_name])
        result = await getattr(tasks_fixtures, task_name).aget_result(result_id)
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        [error] = result.errors
        self.assertIs(error.exception_class, ValueError)
        self.assertIn("the mail server said no", error.traceback)
        self.assertIn(task_name, error.traceback)
        with self.assertRaisesMessage(ValueError, "Task failed"):
            result.return_value
        [record] = logs.records
        self.assertIn(result_id, record.getMessage())
        self.assertIn("FAILED", record.getMessage())
        # Django's logging receiver found the traceback: the signal went out while handling it.
        self.assertIsNotNone(record.exc_info)
        self.assertIn("the mail server said no", logs.output[0])

    async def test_a_failing_sync_task_is_failed_with_its_error_recorded_and_logged(self) -> None:
        await self.assert_failed_and_logged("/enqueue/fail/", "fail")

    async def test_a_failing_async_task_is_failed_with_its_error_recorded_and_logged(self) -> None:
        await self.assert_failed_and_logged("/aenqueue/async_fail/", "async_fail")

    async def test_a_return_value_that_is_not_json_fails_the_task(self) -> None:
        with self.assertLogs("django.tasks", "ERROR"):
            result_id, _ = await self.serve_and_finish("/enqueue/returns_a_set/")
        result = await tasks_fixtures.returns_a_set.aget_result(result_id)
        self.assertEqual(result.status, TaskResultStatus.FAILED)

    async def test_a_task_that_takes_context_gets_its_result(self) -> None:
        result_id, _ = await self.serve_and_finish("/enqueue/attempt/")
        result = await tasks_fixtures.attempt.aget_result(result_id)
        self.assertEqual(result.return_value, {"attempt": 1, "id": result_id})

    async def test_lifespan_shutdown_waits_for_a_pending_task(self) -> None:
        urls.observed["gate"] = asyncio.Event()
        application = self.application
        lifespan = await started_lifespan(application)
        send = await self.serve(application, "/aenqueue/wait_for_gate/")
        self.assertEqual(application.background.pending, 1)
        await lifespan.send_input({"type": "lifespan.shutdown"})
        self.assertTrue(await lifespan.receive_nothing(timeout=0.2))
        urls.observed["gate"].set()
        self.assertEqual(
            await lifespan.receive_output(timeout=5), {"type": "lifespan.shutdown.complete"}
        )
        result = await tasks_fixtures.wait_for_gate.aget_result(send.messages[-1]["body"].decode())
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, "through")

    @override_settings(ASGI_BRIDGE={"BACKGROUND_SHUTDOWN_TIMEOUT": 0.1})
    async def test_a_task_cancelled_at_shutdown_is_failed(self) -> None:
        urls.observed["gate"] = asyncio.Event()
        # This test's settings, read when the handler starts.
        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        send = await self.serve(application, "/aenqueue/wait_for_gate/")
        with self.assertLogs("django.tasks", "ERROR"), self.assertLogs("asgi_bridge", "WARNING"):
            await lifespan.send_input({"type": "lifespan.shutdown"})
            self.assertEqual(
                await lifespan.receive_output(timeout=5), {"type": "lifespan.shutdown.complete"}
            )
        result = await tasks_fixtures.wait_for_gate.aget_result(send.messages[-1]["body"].decode())
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertIs(result.errors[0].exception_class, asyncio.CancelledError)


@skipUnless(HAS_TASKS, NEEDS_TASKS)
@override_settings(TASKS=AFTER_RESPONSE)
class OutsideARequestTests(SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()

    def test_a_sync_task_runs_at_once_in_the_callers_thread(self) -> None:
        result = tasks_fixtures.add.enqueue(2, 3)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)
        [(_, thread, _)] = urls.observed["tasks"]
        self.assertEqual(thread, threading.get_ident())

    def test_an_async_task_runs_at_once(self) -> None:
        result = tasks_fixtures.async_add.enqueue(2, 3)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)

    async def test_aenqueue_from_async_code_runs_the_task_at_once(self) -> None:
        result = await tasks_fixtures.async_add.aenqueue(2, 3)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)

    def test_a_failing_task_is_failed_and_logged_not_raised(self) -> None:
        with self.assertLogs("django.tasks", "ERROR") as logs:
            result = tasks_fixtures.fail.enqueue("the mail server said no")
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertIn("the mail server said no", result.errors[0].traceback)
        self.assertIn("the mail server said no", logs.output[0])


@skipUnless(HAS_TASKS, NEEDS_TASKS)
@override_settings(TASKS=AFTER_RESPONSE)
class CapabilitiesTests(SimpleTestCase):
    def test_flags(self) -> None:
        backend = task_backends["default"]
        self.assertIsInstance(backend, AfterResponseBackend)
        self.assertTrue(backend.supports_async_task)
        self.assertFalse(backend.supports_defer)
        self.assertFalse(backend.supports_priority)
        # Results stay in this process; Django's flag means any process can read them.
        self.assertFalse(backend.supports_get_result)

    def test_run_after_and_priority_are_refused(self) -> None:
        with self.assertRaisesMessage(InvalidTask, "run_after"):
            tasks_fixtures.add.using(run_after=timezone.now() + timedelta(minutes=1))
        with self.assertRaisesMessage(InvalidTask, "priority"):
            tasks_fixtures.add.using(priority=10)

    def test_queue_names_are_checked_against_queues(self) -> None:
        with self.assertRaisesMessage(InvalidTask, "Queue 'mail' is not valid for backend."):
            tasks_fixtures.add.using(queue_name="mail")
        with override_settings(
            TASKS={"default": {**AFTER_RESPONSE["default"], "QUEUES": ["mail"]}}
        ):
            result = tasks_fixtures.add.using(queue_name="mail").enqueue(2, 3)
            self.assertEqual(result.return_value, 5)

    def test_an_unknown_result_does_not_exist(self) -> None:
        with self.assertRaises(TaskResultDoesNotExist):
            task_backends["default"].get_result("no-such-result")

    def test_results_belong_to_the_backend_that_enqueued_them(self) -> None:
        both = {**AFTER_RESPONSE, "other": AFTER_RESPONSE["default"]}
        with override_settings(TASKS=both):
            result = tasks_fixtures.add.using(backend="other").enqueue(2, 3)
            self.assertEqual(task_backends["other"].get_result(result.id).return_value, 5)
            with self.assertRaises(TaskResultDoesNotExist):
                task_backends["default"].get_result(result.id)

    def test_only_the_most_recent_results_are_kept(self) -> None:
        with mock.patch.object(AfterResponseBackend, "results_kept", 2):
            first, second, third = (tasks_fixtures.add.enqueue(n, n) for n in range(3))
            backend = task_backends["default"]
            with self.assertRaises(TaskResultDoesNotExist):
                backend.get_result(first.id)
            self.assertEqual(backend.get_result(second.id).return_value, 2)
            self.assertEqual(backend.get_result(third.id).return_value, 4)

    def test_a_result_is_a_snapshot(self) -> None:
        result = tasks_fixtures.add.enqueue(2, 3)
        again = task_backends["default"].get_result(result.id)
        self.assertIsNot(again, result)
        self.assertIsNot(again.worker_ids, result.worker_ids)
        self.assertEqual(again.worker_ids, result.worker_ids)
