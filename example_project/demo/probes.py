"""In-memory probes that let end-to-end tests watch the request lifecycle from outside.

The server counts every ``request_started``/``request_finished`` signal and keeps an ordered
list of events such as ``("stream_cleanup", token)``; ``/probe/events/`` returns them. Nothing is
persisted, so the numbers only mean something when the server runs a single process. One lock
guards everything, because sync views, async views and server threads all record here.
"""

from __future__ import annotations

import os
import threading
from typing import Any, TypedDict

from django.http import FileResponse


class ProbeSnapshot(TypedDict):
    started: int
    finished: int
    events: list[list[object]]


class ProbeLog:
    """Signal counters and an event list, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0
        self._finished = 0
        self._events: list[tuple[object, ...]] = []

    def count_started(self) -> None:
        with self._lock:
            self._started += 1

    def count_finished(self) -> None:
        with self._lock:
            self._finished += 1

    def record(self, kind: str, token: str, *extra: object) -> None:
        with self._lock:
            self._events.append((kind, token, *extra))

    def snapshot(self) -> ProbeSnapshot:
        with self._lock:
            return {
                "started": self._started,
                "finished": self._finished,
                "events": [list(event) for event in self._events],
            }


PROBES = ProbeLog()


# What the signals saw on the current thread, for /probe/thread/: a thread serves one request at
# a time, so a flag set by request_started and read by the view belongs to the same request.
_ON_THIS_THREAD = threading.local()


def count_request_started(sender: object, **kwargs: object) -> None:
    _ON_THIS_THREAD.started = True
    PROBES.count_started()


def count_request_finished(sender: object, **kwargs: object) -> None:
    token = getattr(_ON_THIS_THREAD, "watched_token", None)
    if token is not None:
        _ON_THIS_THREAD.watched_token = None
        PROBES.record("finished_on", token, threading.current_thread().name)
    PROBES.count_finished()


def view_thread_report(token: str) -> dict[str, object]:
    """Called by a sync view: its thread, whether its request started here, and a watch on
    where its request_finished fires (recorded as ``("finished_on", token, thread name)``)."""
    started_here = getattr(_ON_THIS_THREAD, "started", False)
    _ON_THIS_THREAD.started = False
    _ON_THIS_THREAD.watched_token = token
    return {"thread": threading.current_thread().name, "started_here": started_here}


def record_event(kind: str, token: str, *extra: object) -> None:
    PROBES.record(kind, token, *extra)


class TrackedFileResponse(FileResponse):
    """A FileResponse over a plain file that records ``("file_closed", token, bytes_read)``
    when it closes the file.

    Tests use the event to check that the server closed the file, also when the client went
    away mid-download, and how much of it had been read by then (none when the server sent the
    file itself through pathsend, which takes only a real file, not a subclass).
    """

    def __init__(self, path: str | os.PathLike[str], token: str, **kwargs: Any) -> None:
        self.token = token
        # An absolute str, so FileResponse and servers see a usable .name.
        self.tracked_file = open(os.path.abspath(path), "rb")  # noqa: SIM115
        super().__init__(self.tracked_file, **kwargs)

    def close(self) -> None:
        tracked = self.tracked_file
        bytes_read = None if tracked.closed else tracked.tell()
        super().close()
        if bytes_read is not None and tracked.closed:
            record_event("file_closed", self.token, bytes_read)
