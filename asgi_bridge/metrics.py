"""What the thread pool is doing: a snapshot to read, log lines at an interval, a Prometheus view.

``websocket_metrics()`` counts the WebSockets open and those closed with 1013 because their
client did not read; ``metrics_view`` serves those too.

``thread_metrics()`` returns a ``ThreadMetrics``: the pool's threads (busy, idle), the requests
waiting for one, how many waited and for how long, and how many were refused a thread (timed
out or found the queue full) and answered 503. ``ASGI_BRIDGE["METRICS_LOG_INTERVAL"]`` logs the
same at INFO on the ``asgi_bridge.metrics`` logger every so many seconds. ``metrics_view`` is a
Django view that serves them in Prometheus' text format, for a project that routes it::

    path("metrics/", asgi_bridge.metrics.metrics_view)

Every figure is for this process: a server with several workers has one pool per worker.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass

from django.http import HttpRequest, HttpResponse

from .conf import bridge_settings
from .threads import PoolStats, request_threads

logger = logging.getLogger("asgi_bridge.metrics")


class _Counter:
    """A count that only the event loop's thread adds to, read from any thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


# 503 responses sent because a request got no thread.
busy_responses = _Counter()
# WebSockets open now, and those closed with 1013 because their client did not read.
open_websockets = _Counter()
slow_websocket_closes = _Counter()


@dataclass(frozen=True)
class WebSocketMetrics:
    """WebSockets open in this process, and those closed because their client did not read."""

    open: int
    slow_reader_closes: int


def websocket_metrics() -> WebSocketMetrics:
    return WebSocketMetrics(open_websockets.value, slow_websocket_closes.value)


@dataclass(frozen=True)
class ThreadMetrics(PoolStats):
    """``PoolStats`` and the 503 responses sent for requests that got no thread."""

    busy_responses: int


def thread_metrics() -> ThreadMetrics:
    """The pool of this process as it is now, with its counters since it started."""
    config = bridge_settings()
    pool = request_threads(config.threads, config.thread_wait_timeout, config.thread_queue_size)
    return ThreadMetrics(**asdict(pool.stats()), busy_responses=busy_responses.value)


def log_line(metrics: ThreadMetrics) -> str:
    return (
        f"threads: {metrics.busy} busy, {metrics.idle} idle of {metrics.threads} started "
        f"(at most {metrics.max_threads}); {metrics.waiting} waiting; "
        f"{metrics.waits} waited {metrics.wait_seconds:.3f} s in all, "
        f"longest {metrics.longest_wait:.3f} s; {metrics.timeouts} timed out, "
        f"{metrics.queue_full} found the queue full, {metrics.busy_responses} answered 503"
    )


# (name, help, type) of each figure in Prometheus' text format.
_PROMETHEUS = (
    ("max_threads", "Most threads the pool may start (THREADS).", "gauge"),
    ("threads", "Threads started.", "gauge"),
    ("busy", "Threads lent to a request.", "gauge"),
    ("idle", "Threads idle.", "gauge"),
    ("waiting", "Requests waiting for a thread.", "gauge"),
    ("waits", "Requests that waited for a thread.", "counter"),
    ("wait_seconds", "Seconds requests waited for a thread, added up.", "counter"),
    ("timeouts", "Requests that got no thread within THREAD_WAIT_TIMEOUT.", "counter"),
    ("queue_full", "Requests that found THREAD_QUEUE_SIZE requests waiting.", "counter"),
    ("busy_responses", "503 responses sent for requests that got no thread.", "counter"),
)


_PROMETHEUS_WEBSOCKETS = (
    ("open", "WebSockets open.", "gauge"),
    ("slow_reader_closes", "WebSockets closed with 1013: their client did not read.", "counter"),
)


def prometheus_text(metrics: ThreadMetrics, websockets: WebSocketMetrics | None = None) -> str:
    """The metrics in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    groups: list[tuple[str, object, tuple[tuple[str, str, str], ...]]] = [
        ("thread_pool", metrics, _PROMETHEUS)
    ]
    if websockets is not None:
        groups.append(("websockets", websockets, _PROMETHEUS_WEBSOCKETS))
    for prefix, values, figures in groups:
        for name, help_text, kind in figures:
            metric = f"asgi_bridge_{prefix}_{name}"
            if kind == "counter":
                metric += "_total"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} {kind}",
                f"{metric} {getattr(values, name)}",
            ]
    return "\n".join(lines) + "\n"


def metrics_view(request: HttpRequest) -> HttpResponse:
    """This process's thread pool and WebSocket metrics for Prometheus to scrape."""
    return HttpResponse(
        prometheus_text(thread_metrics(), websocket_metrics()),
        content_type="text/plain; version=0.0.4; charset=utf-8",
    )


class _MetricsLogger:
    """One daemon thread per process, logging the metrics every ``interval`` seconds."""

    def __init__(self) -> None:
        self.interval: float | None = None
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def every(self, interval: float | None) -> None:
        with self.changed:
            self.interval = interval
            self.changed.notify()
            if interval is not None and self.thread is None:
                self.thread = threading.Thread(
                    target=self.run, name="asgi_bridge-metrics-log", daemon=True
                )
                self.thread.start()

    def run(self) -> None:
        with self.changed:
            while True:
                interval = self.interval
                if interval is None:
                    self.changed.wait()
                    continue
                if not self.changed.wait(interval):
                    logger.info(log_line(thread_metrics()))


_metrics_logger = _MetricsLogger()


def log_metrics_every(interval: float | None) -> None:
    """Log the metrics every ``interval`` seconds from now on; None stops."""
    _metrics_logger.every(interval)


def _forget_logger_in_child() -> None:
    # A forked child has none of its parent's threads; its handler starts a logger of its own.
    global _metrics_logger
    _metrics_logger = _MetricsLogger()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_logger_in_child)
