"""Helpers for end-to-end tests that hold hundreds of connections open at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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


@dataclass
class ProcessFootprint:
    """A server process's resident memory (KiB), threads and open file descriptors."""

    rss_kib: int
    threads: int
    files: int

    @classmethod
    def of(cls, pid: int) -> ProcessFootprint:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        return cls(
            rss_kib=int(status["VmRSS"].split()[0]),
            threads=int(status["Threads"]),
            files=len(os.listdir(f"/proc/{pid}/fd")),
        )

    @classmethod
    def of_tree(cls, pid: int) -> ProcessFootprint:
        """The sum over ``pid`` and its descendants: a server whose workers are child processes
        (hypercorn's) is measured whole."""
        pids = [pid]
        for each in pids:
            children = Path(f"/proc/{each}/task/{each}/children")
            with contextlib.suppress(FileNotFoundError):
                pids.extend(int(child) for child in children.read_text().split())
        footprints = [cls.of(each) for each in pids]
        return cls(
            rss_kib=sum(each.rss_kib for each in footprints),
            threads=sum(each.threads for each in footprints),
            files=sum(each.files for each in footprints),
        )


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a server's worker processes)."""
    pids = [pid]
    for each in pids:
        children = Path(f"/proc/{each}/task/{each}/children")
        with contextlib.suppress(FileNotFoundError):
            pids.extend(int(child) for child in children.read_text().split())
    return pids


def deleted_files_of_tree(pid: int) -> list[str]:
    """The open descriptors of ``pid``'s process tree that lead to deleted files: the unnamed
    temporary files request bodies are spooled to."""
    found = []
    for each in tree_pids(pid):
        with contextlib.suppress(FileNotFoundError):
            for descriptor in os.listdir(f"/proc/{each}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{each}/fd/{descriptor}")
                    if target.endswith(" (deleted)"):
                        found.append(target)
    return sorted(found)
