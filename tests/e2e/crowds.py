"""Helpers for end-to-end tests that hold hundreds of connections open at once."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


@contextlib.contextmanager
def open_files_raised_to(wanted: int, needed: int) -> Iterator[None]:
    """Raise the soft limit on open files to ``wanted`` (within the hard limit) meanwhile; fail
    if the hard limit leaves fewer than ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted < needed:
        pytest.fail(f"the hard limit on open files ({hard}) is too low for this test")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def all_without_stall(tasks: list[asyncio.Task[T]], what: str, stall: float) -> list[T]:
    """Wait for every task; fail if none finishes for ``stall`` seconds (the rest are
    cancelled). A bound on a hang, not a measurement."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(
            pending, timeout=stall, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            for task in pending:
                task.cancel()
            raise AssertionError(
                f"{what}: {len(tasks) - len(pending)} of {len(tasks)}, "
                f"then none more for {stall:g} s"
            )
    return [task.result() for task in tasks]
