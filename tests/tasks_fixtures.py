"""Tasks for tests/test_tasks.py: django.tasks wants them at module level. Django 6.0+ only."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.tasks import TaskContext, task

from . import urls


def note(name: str) -> None:
    """Record that a task ran, on which thread, and whether the response was already sent."""
    urls.observed.setdefault("tasks", []).append(
        (name, threading.get_ident(), urls.observed.get("final_body_sent", False))
    )


@task
def add(a: int, b: int) -> int:
    note("add")
    return a + b


@task
async def async_add(a: int, b: int) -> int:
    note("async_add")
    await asyncio.sleep(0)
    return a + b


@task
def fail(reason: str) -> None:
    note("fail")
    raise ValueError(reason)


@task
async def async_fail(reason: str) -> None:
    note("async_fail")
    raise ValueError(reason)


@task(takes_context=True)
def attempt(context: TaskContext[Any, Any]) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
async def wait_for_gate() -> str:
    """Waits until the test sets urls.observed["gate"], an asyncio.Event."""
    await urls.observed["gate"].wait()
    note("wait_for_gate")
    return "through"


@task
def returns_a_set() -> set[int]:
    # Not JSON: Django's backends record this as a failure.
    return {1}
