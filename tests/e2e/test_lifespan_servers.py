"""Lifespan and after_response() work on real servers, started and stopped by these tests.

uvicorn, granian and hypercorn speak the lifespan protocol: the example project's LIFESPAN hook
runs at startup, its state reaches ``request.state``, and a graceful shutdown (SIGTERM) waits
for after_response() work before the hook's shutdown half runs. daphne has no lifespan: the
startup half runs once, before the first request, and the shutdown half never runs.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import (
    STOP_TIMEOUT,
    RunningServer,
    ServerEnvironment,
    require_server_installed,
    spawn_server,
    start_server,
)

LIFESPAN_SERVERS = ["uvicorn", "granian", "hypercorn"]
# How long to wait for something a server process does on its own (log a line, exit).
WAIT_TIMEOUT = 20.0
DRAIN_MESSAGE = "Waiting for 1 after_response() job(s) to finish"


@dataclasses.dataclass
class LifespanServer:
    server: RunningServer
    lifespan_log: Path

    def lines(self) -> list[str]:
        try:
            return self.lifespan_log.read_text().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture
def lifespan_server(
    request: pytest.FixtureRequest, server_environment: ServerEnvironment, tmp_path: Path
) -> Iterator[LifespanServer]:
    """A fresh server (named by the test's parameter) writing the hook's lines to a file."""
    log = tmp_path / "lifespan.log"
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_LIFESPAN_LOG": str(log)}
    )
    running = start_server(request.param, "127.0.0.1", environment)
    try:
        yield LifespanServer(running, log)
    finally:
        running.stop()


def wait_for(condition: object, what: str, server: RunningServer) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {WAIT_TIMEOUT:.0f} s\n{server.describe()}")


def read_server_log(server: RunningServer) -> str:
    return server.log_path.read_text(errors="replace")


@pytest.mark.parametrize("lifespan_server", LIFESPAN_SERVERS, indirect=True)
def test_lifespan_state_and_work_finishing_before_graceful_shutdown(
    lifespan_server: LifespanServer, tmp_path: Path
) -> None:
    server = lifespan_server.server
    pid = server.pid
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        state = client.get("/lifespan/").json()
        assert state["keys"] == ["process"], server.describe()
        # The hook ran in the worker process that serves requests.
        serving_pid = state["process"]["pid"]
        assert lifespan_server.lines() == [f"startup {serving_pid}"]
        # Startup froze what was alive then out of the garbage collector (FREEZE_GC's default).
        assert client.get("/probe/gc/").json()["frozen_objects"] > 10_000, server.describe()

        token = uuid.uuid4().hex
        release = tmp_path / "release"
        response = client.get("/background/", params={"token": token, "release_file": release})
        # The response came back while its work still waits for the release file.
        assert response.text == f"queued {token}\n"
    assert f"job done {token}" not in lifespan_server.lines()

    # To the server's main process only, as a process manager would: hypercorn's worker
    # processes have no SIGTERM handler of their own and die at once if signalled directly.
    os.kill(pid, signal.SIGTERM)
    # The server's lifespan shutdown now waits for the work, and says so.
    wait_for(lambda: DRAIN_MESSAGE in read_server_log(server), "the wait for the work", server)
    assert lifespan_server.lines() == [f"startup {serving_pid}"], server.describe()
    release.touch()
    try:
        server.process.wait(timeout=STOP_TIMEOUT + WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{server.name} did not exit after SIGTERM\n{server.describe()}")
    assert lifespan_server.lines() == [
        f"startup {serving_pid}",
        f"job done {token}",
        f"shutdown {serving_pid}",
    ], server.describe()


@pytest.mark.parametrize("lifespan_server", ["daphne"], indirect=True)
def test_without_lifespan_startup_runs_once_before_the_first_request(
    lifespan_server: LifespanServer,
) -> None:
    server = lifespan_server.server
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        first = client.get("/lifespan/").json()
        second = client.get("/lifespan/").json()
    assert first["keys"] == ["process"], server.describe()
    assert first["process"] == second["process"]
    assert lifespan_server.lines() == [f"startup {first['process']['pid']}"]
    # Nothing says when startup ends, so nothing is frozen (but what the interpreter freezes
    # by itself: 375 objects on Python 3.12, none on 3.11).
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        assert client.get("/probe/gc/").json()["frozen_objects"] < 1_000, server.describe()
    server.stop()
    # daphne never tells the application it is stopping: the shutdown half does not run.
    assert lifespan_server.lines() == [f"startup {first['process']['pid']}"]


@pytest.mark.parametrize("name", LIFESPAN_SERVERS)
def test_a_failing_startup_stops_the_server_with_the_error(
    name: str, server_environment: ServerEnvironment
) -> None:
    require_server_installed(name)
    message = f"database unreachable {uuid.uuid4().hex}"
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_LIFESPAN_FAIL": message}
    )
    server = spawn_server(name, "127.0.0.1", environment)
    try:
        try:
            server.process.wait(timeout=WAIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} kept running after a failed startup\n{server.describe()}")
        log = read_server_log(server)
        # asgi_bridge's traceback, and the message the server was given.
        assert f"RuntimeError: {message}" in log, server.describe()
        if name == "hypercorn":
            # hypercorn's main process exits 0 once its worker has died of the failure; what it
            # says is the message asgi_bridge sent in lifespan.startup.failed.
            assert f"Lifespan failure in startup. 'RuntimeError: {message}'" in log, log
        else:
            assert server.process.returncode != 0, server.describe()
    finally:
        server.stop()
