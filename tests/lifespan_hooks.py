"""LIFESPAN hooks the lifespan tests name in ASGI_BRIDGE; each records what happened to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Hook names in the order they were entered and exited, e.g. ["enter resource", "exit resource"].
events: list[str] = []


class Resource:
    """Stands for a shared client (HTTP, cache) that a real hook would open once."""

    def __init__(self) -> None:
        self.closed = False


@asynccontextmanager
async def resource() -> AsyncIterator[dict[str, Any]]:
    events.append("enter resource")
    shared = Resource()
    try:
        yield {"resource": shared}
    finally:
        shared.closed = True
        events.append("exit resource")


@asynccontextmanager
async def with_handler(handler: Any) -> AsyncIterator[dict[str, Any]]:
    events.append("enter with_handler")
    try:
        yield {"handler_class": type(handler).__name__}
    finally:
        events.append("exit with_handler")


@asynccontextmanager
async def yields_nothing() -> AsyncIterator[None]:
    events.append("enter yields_nothing")
    yield
    events.append("exit yields_nothing")


@asynccontextmanager
async def fails_at_startup() -> AsyncIterator[None]:
    events.append("enter fails_at_startup")
    raise RuntimeError("database unreachable")
    yield  # pragma: no cover


@asynccontextmanager
async def fails_at_shutdown() -> AsyncIterator[None]:
    events.append("enter fails_at_shutdown")
    yield
    raise RuntimeError("could not flush the queue")


@asynccontextmanager
async def yields_a_number() -> AsyncIterator[int]:
    yield 42


not_a_hook = "a string"
