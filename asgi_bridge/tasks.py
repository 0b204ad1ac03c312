"""A ``django.tasks`` backend that runs each enqueued task after the current response.

Django 6.0's tasks framework lets code enqueue work without saying where it runs; this backend
runs it the way ``after_response()`` runs work::

    # settings.py
    TASKS = {"default": {"BACKEND": "asgi_bridge.tasks.AfterResponseBackend"}}

    # views.py
    from django.tasks import task

    @task
    def send_welcome_mail(user_id: int) -> None: ...

    def signup(request):
        user = ...
        send_welcome_mail.enqueue(user.pk)  # in an async view: await ....aenqueue(user.pk)
        return redirect("welcome")

A task enqueued while asgi_bridge serves a request starts once the response has been sent, in a
task the handler owns: a sync task on a pooled thread with ``close_old_connections()`` around
it, an async one on the event loop. Lifespan shutdown waits for it, up to
``ASGI_BRIDGE["BACKGROUND_SHUTDOWN_TIMEOUT"]``. Enqueued anywhere else (a management command,
Django's test ``Client``, a WSGI server) a task runs at once, as with Django's
``ImmediateBackend``.

There is no queue behind this: no retries, no other process, and work not yet done is lost if
the process dies. It suits short, best-effort work (a mail, a cache refresh); work that must
happen belongs in a backend with a persistent queue.

What the backend supports:

- Async tasks: yes, awaited on the event loop.
- ``priority`` and ``run_after``: no. Tasks run in the order they were enqueued, as soon as the
  response is over, and Django's validation rejects a task that sets either.
- ``QUEUES``: validated by Django (by default only ``"default"``); the queue has no other effect.
- Results: status, return value and errors are recorded as ``ImmediateBackend`` records them,
  and the most recent ``results_kept`` results are kept in this process's memory, so
  ``get_result()`` and ``TaskResult.refresh()`` work in the process that enqueued the task.
  ``supports_get_result`` is still False: Django means results any process can read, and
  another worker process, or this one after a restart, will not find them. ``enqueue()`` returns
  a snapshot; ``refresh()`` brings it up to date.
- Signals and failures: ``task_enqueued``, ``task_started`` and ``task_finished`` are sent as
  Django's own backends send them (for async tasks, receivers run off the event loop). A failure
  is recorded on the result and logged at ERROR, with its traceback, by Django's
  ``django.tasks`` logger; it never reaches the client.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from inspect import iscoroutinefunction
from traceback import format_exception
from typing import Any, ParamSpec, TypeVar

import django
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.crypto import get_random_string

from .background import after_response

# django.tasks is new in Django 6.0 (release notes: "Background Tasks").
if django.VERSION < (6, 0):
    raise ImproperlyConfigured(
        "asgi_bridge.tasks.AfterResponseBackend needs Django 6.0 or later (django.tasks); "
        "this is Django %s." % django.get_version()
    )

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json

P = ParamSpec("P")
R = TypeVar("R")

# Results by id, oldest first. task_backends makes one backend instance per thread, so the store
# belongs to the process; the lock also keeps get_result() from copying a half-updated result.
_results: dict[str, TaskResult[Any, Any]] = {}
_lock = threading.Lock()


def snapshot(result: TaskResult[P, R]) -> TaskResult[P, R]:
    """A copy for the caller, which later progress changes only through ``refresh()``."""
    copied = copy.copy(result)
    object.__setattr__(copied, "errors", list(result.errors))
    object.__setattr__(copied, "worker_ids", list(result.worker_ids))
    return copied


class AfterResponseBackend(BaseTaskBackend):
    """Runs each task with ``after_response()``: after the response, or at once outside one."""

    supports_defer = False
    supports_async_task = True
    # Results stay in this process; see the module docstring.
    supports_get_result = False
    supports_priority = False

    # How many of this process's most recent results get_result() can find.
    results_kept = 1000

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.worker_id = get_random_string(32)

    def enqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        self.validate_task(task)
        result = TaskResult(
            task=task,
            id=get_random_string(32),
            # django-stubs 6.1.2 declares the members as `READY = ...`; mypy reads an Ellipsis.
            status=TaskResultStatus.READY,  # type: ignore[arg-type]
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        self.keep(result)
        task_enqueued.send(type(self), task_result=result)
        # after_response() runs run() on a pooled thread and awaits arun() on the event loop.
        after_response(self.arun if iscoroutinefunction(task.func) else self.run, result)
        with _lock:
            return snapshot(result)

    def keep(self, result: TaskResult[Any, Any]) -> None:
        with _lock:
            _results[result.id] = result
            while len(_results) > self.results_kept:
                del _results[next(iter(_results))]

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        with _lock:
            result = _results.get(result_id)
            if result is None or result.backend != self.alias:
                raise TaskResultDoesNotExist(result_id)
            return snapshot(result)

    async def aget_result(self, result_id: str) -> TaskResult[Any, Any]:
        # A dictionary lookup: not worth a thread.
        return self.get_result(result_id)

    def run(self, result: TaskResult[Any, Any]) -> None:
        """Run a sync task in this thread, recording how it went on ``result``."""
        leading_args = self.mark_running(result)
        task_started.send(type(self), task_result=result)
        try:
            value = result.task.call(*leading_args, *result.args, **result.kwargs)
            value = normalize_json(value)
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            self.mark_failed(result, error)
            # Inside the except block: Django's logging receiver takes the traceback from there.
            task_finished.send(type(self), task_result=result)
        else:
            self.mark_successful(result, value)
            task_finished.send(type(self), task_result=result)

    async def arun(self, result: TaskResult[Any, Any]) -> None:
        """Await an async task, recording how it went on ``result``."""
        leading_args = self.mark_running(result)
        await task_started.asend(type(self), task_result=result)
        try:
            value = await result.task.acall(*leading_args, *result.args, **result.kwargs)
            value = normalize_json(value)
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            self.mark_failed(result, error)
            # Called from this except block, sync_to_async() re-raises the error in the
            # receivers' thread, where Django's logging receiver looks for the traceback.
            # Not asend(): Django 6.0's runs sync receivers in an asyncio task of their own.
            await sync_to_async(task_finished.send)(type(self), task_result=result)
            if isinstance(error, asyncio.CancelledError):
                raise
        else:
            self.mark_successful(result, value)
            await task_finished.asend(type(self), task_result=result)

    def mark_running(self, result: TaskResult[Any, Any]) -> tuple[Any, ...]:
        """Record the start; return the arguments that go before the caller's."""
        now = timezone.now()
        with _lock:
            object.__setattr__(result, "status", TaskResultStatus.RUNNING)
            object.__setattr__(result, "started_at", now)
            object.__setattr__(result, "last_attempted_at", now)
            result.worker_ids.append(self.worker_id)
        return (TaskContext(task_result=result),) if result.task.takes_context else ()

    def mark_successful(self, result: TaskResult[Any, Any], value: Any) -> None:
        now = timezone.now()
        with _lock:
            object.__setattr__(result, "_return_value", value)
            object.__setattr__(result, "finished_at", now)
            object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)

    def mark_failed(self, result: TaskResult[Any, Any], error: BaseException) -> None:
        error_type = type(error)
        task_error = TaskError(
            exception_class_path=f"{error_type.__module__}.{error_type.__qualname__}",
            traceback="".join(format_exception(error)),
        )
        now = timezone.now()
        with _lock:
            object.__setattr__(result, "finished_at", now)
            result.errors.append(task_error)
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
