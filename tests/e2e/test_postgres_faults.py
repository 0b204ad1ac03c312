"""PostgreSQL restarted under load, behind asgi_bridge on uvicorn (issue 21's faults).

example_project serves ``/items/count/`` (one ORM query) from a real PostgreSQL with
``CONN_MAX_AGE = 60`` and ``CONN_HEALTH_CHECKS``, on ``THREADS`` pooled threads, while clients
keep requesting it. The server is then shut down: requests fail with 500 (Django's error page),
the ASGI server keeps serving, and nothing hangs. Once PostgreSQL is back on the same port, the
pooled threads' persistent connections, broken by the restart, are found dead by the health
check and replaced: requests succeed again, and PostgreSQL never sees more than ``THREADS`` of
the app's connections. After the server stops, none is left open.

The bounds on waits only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from .conftest import (
    EXAMPLE_PROJECT,
    SUMMARY_PROPERTY,
    RunningServer,
    ServerEnvironment,
    build_server_env,
    migrate,
    start_server,
)
from .postgres import PostgresServer, running_postgres
from .test_postgres_connections import (
    APP_USER,
    ORM_PATH,
    SEEDED_ITEMS,
    count_app_backends,
    wait_for_no_app_backends,
)

DATABASE = "asgi_bridge_faults"
THREADS = 4
CONCURRENCY = 16
# A phase that takes longer than this has hung.
PHASE_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with running_postgres(tmp_path_factory.mktemp("postgres_fault_logs")) as server:
        yield server


@pytest.fixture(scope="module")
def served(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    postgres.create_database(DATABASE, APP_USER)
    state_dir = tmp_path_factory.mktemp("example_project_faults")
    env = build_server_env(state_dir / "unused.sqlite3", state_dir / "big.bin")
    env.pop("EXAMPLE_HANDLER", None)
    env.update(
        EXAMPLE_PG_NAME=DATABASE,
        EXAMPLE_PG_HOST=postgres.host,
        EXAMPLE_PG_PORT=str(postgres.port),
        EXAMPLE_PG_USER=APP_USER,
        EXAMPLE_CONN_MAX_AGE="60",
        EXAMPLE_CONN_HEALTH_CHECKS="1",
        EXAMPLE_THREADS=str(THREADS),
    )
    environment = ServerEnvironment(
        cwd=EXAMPLE_PROJECT, env=env, log_dir=tmp_path_factory.mktemp("fault_server_logs")
    )
    migrate(environment)
    server = start_server("uvicorn", "127.0.0.1", environment)
    try:
        yield server
    finally:
        server.stop()


async def load(base_url: str, count: int) -> Counter[str]:
    """``count`` GETs of ORM_PATH from CONCURRENCY clients: how each ended."""
    outcomes: Counter[str] = Counter()
    numbers = iter(range(count))

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=PHASE_TIMEOUT) as client:
            for _ in numbers:
                try:
                    response = await client.get(ORM_PATH)
                except httpx.TransportError as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                ok = response.status_code == 200 and response.text == SEEDED_ITEMS
                outcomes["200" if ok else str(response.status_code)] += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), PHASE_TIMEOUT)
    return outcomes


def until_served(base_url: str) -> int:
    """Request ORM_PATH until it succeeds; how many tries it took."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    tries = 0
    while True:
        tries += 1
        response = httpx.get(base_url + ORM_PATH, timeout=PHASE_TIMEOUT)
        if response.status_code == 200:
            return tries
        if time.monotonic() > deadline:
            raise AssertionError(f"never served again; last answer {response.status_code}")
        time.sleep(0.05)


def test_postgres_restarted_under_load(
    postgres: PostgresServer, served: RunningServer, record_property: pytest.RecordProperty
) -> None:
    before = asyncio.run(load(served.base_url, 400))
    assert before == Counter({"200": 400}), (before, served.describe())
    with postgres.connect() as monitor:
        assert count_app_backends(monitor, DATABASE) <= THREADS

    postgres.terminate()
    down = asyncio.run(load(served.base_url, 200))
    # Every request was answered, with Django's 500: no hang, no dropped connection.
    assert down == Counter({"500": 200}), (down, served.describe())

    postgres.restart()
    tries = until_served(served.base_url)
    after = asyncio.run(load(served.base_url, 400))
    assert after == Counter({"200": 400}), (after, served.describe(), postgres.describe())
    with postgres.connect() as monitor:
        open_now = count_app_backends(monitor, DATABASE)
        assert 0 < open_now <= THREADS, open_now
    log = served.log_path.read_text(errors="replace")
    assert "Internal Server Error: /items/count/" in log
    record_property(
        SUMMARY_PROPERTY,
        f"PostgreSQL restart under load: before {dict(before)}, while down {dict(down)}, "
        f"served again after {tries} tries, after {dict(after)}; the app's connections after: "
        f"{open_now} (THREADS={THREADS})",
    )


def test_no_connection_is_left_after_the_server_stops(
    postgres: PostgresServer, served: RunningServer
) -> None:
    served.stop()
    with postgres.connect() as monitor:
        assert wait_for_no_app_backends(monitor, 5.0, DATABASE) == 0
