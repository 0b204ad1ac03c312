"""CONN_MAX_AGE on uvicorn: asgi_bridge opens at most one PostgreSQL connection per pooled thread.

Django's own handler runs each request's sync code on a thread made for that request, so a
persistent connection (CONN_MAX_AGE > 0) belongs to a thread that never serves again: it is never
reused and stays open until garbage collection finds it (Django ticket 33497). asgi_bridge lends
each request one of ``ASGI_BRIDGE["THREADS"]`` long-lived threads, so a process opens at most that
many connections and reuses them. Both handlers serve example_project's ``/items/count/`` (a sync
view, one ORM query) from a real PostgreSQL under the same load, and PostgreSQL's own statistics
count the sessions each opened. asgi_bridge's count is asserted; the stock handler's is only
reported beside it, in the terminal summary and in JUnit reports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .conftest import (
    EXAMPLE_PROJECT,
    SUMMARY_PROPERTY,
    ServerEnvironment,
    build_server_env,
    migrate,
    read_log_tail,
    start_server,
)
from .postgres import PostgresServer, running_postgres

if TYPE_CHECKING:
    from psycopg import Connection

REQUESTS = 2000
CONCURRENCY = 64
THREADS = 8
CONN_MAX_AGE = 60
# A sync view that answers with one query's result: the number of items the migrations seed.
ORM_PATH = "/items/count/"
SEEDED_ITEMS = "5"
DATABASE = "asgi_bridge_e2e"
# The role example_project logs in as; the test's own monitoring connection is the superuser's,
# on another database, so it never counts as the app's.
APP_USER = "example"
SAMPLE_INTERVAL = 0.02
DISCONNECT_TIMEOUT = 5.0

APP_BACKENDS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = %s AND usename = %s AND backend_type = 'client backend'
"""
# Every session established to the database since the cluster started (PostgreSQL 14+).
SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = %s"


@dataclass(frozen=True)
class LoadRun:
    """What PostgreSQL saw while one handler served the load, and how the load went."""

    handler: str
    # Responses by status code, "200 with a wrong count", or the exception.
    outcomes: Counter[str]
    # Sessions the server opened over its whole life, read once all of them had ended.
    sessions: int
    # The most of its connections open at once, sampled every SAMPLE_INTERVAL s.
    peak_open: int
    # Its connections still open when the last response had arrived.
    open_after_load: int
    # Its connections still open DISCONNECT_TIMEOUT s after the server was stopped.
    open_after_stop: int
    server_log: Path

    @property
    def not_ok(self) -> int:
        return REQUESTS - self.outcomes["200"]

    def summary(self) -> str:
        not_ok = ", ".join(
            f"{count} {outcome}" for outcome, count in self.outcomes.items() if outcome != "200"
        )
        return (
            f"{self.sessions} sessions for {REQUESTS} requests "
            f"(peak {self.peak_open} open, {self.open_after_load} still open after the load, "
            f"{self.not_ok} not 200{': ' + not_ok if not_ok else ''})"
        )

    def describe(self) -> str:
        """Everything measured plus the server's log, for assertion messages."""
        return (
            f"{self.handler}: {self.summary()}; outcomes {dict(self.outcomes)}; "
            f"{self.open_after_stop} open {DISCONNECT_TIMEOUT:.0f} s after stopping; "
            f"log {self.server_log}:\n{read_log_tail(self.server_log)}"
        )


def count_app_backends(monitor: Connection[Any], database: str = DATABASE) -> int:
    count: int = monitor.execute(APP_BACKENDS, (database, APP_USER)).fetchone()[0]
    return count


def read_sessions(monitor: Connection[Any]) -> int:
    sessions: int = monitor.execute(SESSIONS, (DATABASE,)).fetchone()[0]
    return sessions


def wait_for_no_app_backends(
    monitor: Connection[Any], timeout: float, database: str = DATABASE
) -> int:
    """Poll until the app has no connection left; return how many it still has at the end."""
    stop_at = time.monotonic() + timeout
    while (left := count_app_backends(monitor, database)) and time.monotonic() < stop_at:
        time.sleep(0.05)
    return left


class PeakSampler:
    """Count the app's open connections in a background thread; keep the highest count."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.postgres = postgres
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.peak = max(self.peak, count_app_backends(self._monitor))
                self._stop.wait(SAMPLE_INTERVAL)
        except BaseException as exc:  # re-raised in the test's thread by __exit__
            self._error = exc

    def __enter__(self) -> PeakSampler:
        # Connected here, not in the thread, so sampling has begun before the load does.
        self._monitor = self.postgres.connect()
        self.peak = count_app_backends(self._monitor)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._monitor.close()
        if self._error is not None and exc is None:
            raise self._error


async def send_requests(base_url: str) -> Counter[str]:
    """GET ORM_PATH REQUESTS times from CONCURRENCY workers, each over its own connection."""
    outcomes: Counter[str] = Counter()
    # One iterator shared by all workers hands out the requests.
    numbers = iter(range(REQUESTS))

    async def worker() -> None:
        # A client per worker: one shared pool of CONCURRENCY connections costs the client
        # more CPU than the server spends answering.
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
            for _ in numbers:
                try:
                    response = await client.get(ORM_PATH)
                except httpx.TransportError as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                outcome = str(response.status_code)
                if outcome == "200" and response.text != SEEDED_ITEMS:
                    outcome = "200 with a wrong count"
                outcomes[outcome] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


def run_load(
    postgres: PostgresServer,
    environment: ServerEnvironment,
    handler: str,
    threads: int | None = None,
) -> LoadRun:
    """Serve the load through ``handler`` on uvicorn and count what PostgreSQL saw."""
    env = {**environment.env, "EXAMPLE_HANDLER": handler}
    if threads is not None:
        env["EXAMPLE_THREADS"] = str(threads)
    server_environment = ServerEnvironment(environment.cwd, env, environment.log_dir)
    with postgres.connect() as monitor:
        leftover = wait_for_no_app_backends(monitor, DISCONNECT_TIMEOUT)
        assert leftover == 0, f"{leftover} connections from an earlier run are still open"
        sessions_before = read_sessions(monitor)
        server = start_server("uvicorn", "127.0.0.1", server_environment)
        try:
            with PeakSampler(postgres) as sampler:
                outcomes = asyncio.run(send_requests(server.base_url))
            open_after_load = count_app_backends(monitor)
        finally:
            server.stop()
        open_after_stop = wait_for_no_app_backends(monitor, DISCONNECT_TIMEOUT)
        # Read last: a session's statistics are certain to be flushed once it has ended.
        sessions = read_sessions(monitor) - sessions_before
    return LoadRun(
        handler=handler,
        outcomes=outcomes,
        sessions=sessions,
        peak_open=sampler.peak,
        open_after_load=open_after_load,
        open_after_stop=open_after_stop,
        server_log=server.log_path,
    )


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with running_postgres(tmp_path_factory.mktemp("postgres_logs")) as server:
        yield server


@pytest.fixture(scope="module")
def app_environment(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> ServerEnvironment:
    """example_project on a migrated PostgreSQL database with CONN_MAX_AGE; no handler chosen."""
    postgres.create_database(DATABASE, APP_USER)
    state_dir = tmp_path_factory.mktemp("example_project_postgres")
    env = build_server_env(state_dir / "unused.sqlite3", state_dir / "big.bin")
    for inherited in ("EXAMPLE_HANDLER", "EXAMPLE_THREADS"):
        env.pop(inherited, None)
    env.update(
        EXAMPLE_PG_NAME=DATABASE,
        EXAMPLE_PG_HOST=postgres.host,
        EXAMPLE_PG_PORT=str(postgres.port),
        EXAMPLE_PG_USER=APP_USER,
        EXAMPLE_CONN_MAX_AGE=str(CONN_MAX_AGE),
    )
    environment = ServerEnvironment(
        cwd=EXAMPLE_PROJECT, env=env, log_dir=tmp_path_factory.mktemp("server_logs")
    )
    migrate(environment)
    return environment


@pytest.fixture(scope="module")
def stock_run(postgres: PostgresServer, app_environment: ServerEnvironment) -> LoadRun:
    return run_load(postgres, app_environment, "stock")


def test_stock_handler_connections_are_counted(
    stock_run: LoadRun, record_property: pytest.RecordProperty
) -> None:
    """The baseline: reported, never bounded; it only has to have served and been counted."""
    record_property(SUMMARY_PROPERTY, f"stock: {stock_run.summary()}")
    assert stock_run.outcomes["200"] > 0, stock_run.describe()
    assert stock_run.sessions > 0, stock_run.describe()


def test_asgi_bridge_opens_at_most_one_connection_per_thread(
    postgres: PostgresServer,
    app_environment: ServerEnvironment,
    stock_run: LoadRun,
    record_property: pytest.RecordProperty,
) -> None:
    bridge_run = run_load(postgres, app_environment, "asgi_bridge", threads=THREADS)
    record_property(
        SUMMARY_PROPERTY,
        f"stock: {stock_run.summary()}; asgi_bridge (THREADS={THREADS}): {bridge_run.summary()}",
    )
    assert bridge_run.outcomes == Counter({"200": REQUESTS}), bridge_run.describe()
    # Without a session the view never reached the database, and the bound below would be empty.
    assert 0 < bridge_run.sessions <= THREADS, bridge_run.describe()
    assert bridge_run.peak_open <= THREADS, bridge_run.describe()
    assert bridge_run.open_after_stop == 0, bridge_run.describe()
