"""example_project on gunicorn with uvicorn-worker's ``UvicornWorker``, two worker processes.

The deployment guide's command for gunicorn is this test's: ``gunicorn -k
uvicorn_worker.UvicornWorker -w 2 ...``. Each worker runs the lifespan (the example's hook
writes a line per process), serves sync and async views and WebSockets, and a graceful stop
(SIGTERM to gunicorn's master, as a process manager sends it) lets a request in flight and
after_response() work finish before each worker's lifespan shutdown, then exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import (
    APPLICATION,
    STOP_TIMEOUT,
    RunningServer,
    ServerEnvironment,
    find_free_port,
    start_retrying_taken_ports,
)
from .test_lifespan_servers import wait_for

WORKERS = 2
# gunicorn's own wait for its workers after SIGTERM, before it kills them.
GRACEFUL_TIMEOUT = 20
# How long to wait for something a server process does on its own (log a line, exit).
WAIT_TIMEOUT = 20.0
# How long the request in flight at SIGTERM takes, and how long before the signal it is sent.
SLOW_VIEW_SECONDS = 3.0
HEAD_START = 1.0
DRAIN_MESSAGE = "Waiting for 1 after_response() job(s) to finish"


def gunicorn_command(host: str, port: int) -> list[str]:
    """The command the deployment guide gives for gunicorn with uvicorn-worker."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--workers",
        str(WORKERS),
        "--bind",
        f"{host}:{port}",
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT),
        APPLICATION,
    ]


def spawn_gunicorn(environment: ServerEnvironment) -> RunningServer:
    """Start gunicorn on a free port of 127.0.0.1, in a process group of its own."""
    host = "127.0.0.1"
    port = find_free_port(host)
    log_path = environment.log_dir / f"gunicorn-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            gunicorn_command(host, port),
            cwd=environment.cwd,
            env=environment.env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer("gunicorn", host, port, process.pid, log_path, process)


@dataclasses.dataclass
class Gunicorn:
    server: RunningServer
    lifespan_log: Path

    def lines(self) -> list[str]:
        try:
            return self.lifespan_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


@pytest.fixture
def gunicorn(server_environment: ServerEnvironment, tmp_path: Path) -> Iterator[Gunicorn]:
    """gunicorn serving example_project; stopped by process group, whatever the test did."""
    for module in ("gunicorn", "uvicorn_worker"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed for {sys.executable}; install the 'test' extra")
    log = tmp_path / "lifespan.log"
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_LIFESPAN_LOG": str(log)}
    )
    running = start_retrying_taken_ports(
        lambda: spawn_gunicorn(environment), "gunicorn with uvicorn_worker.UvicornWorker"
    )
    try:
        yield Gunicorn(running, log)
    finally:
        running.stop()


def pids_of(kind: str, lines: list[str]) -> set[int]:
    """The processes of the lifespan log's ``startup <pid>`` or ``shutdown <pid>`` lines."""
    return {int(line.split()[1]) for line in lines if line.startswith(f"{kind} ")}


def startup_pids(lines: list[str]) -> set[int]:
    return pids_of("startup", lines)


def shutdown_pids(lines: list[str]) -> set[int]:
    return pids_of("shutdown", lines)


async def echo(url: str) -> tuple[str | bytes, str | bytes]:
    async with connect(url, open_timeout=10) as socket:
        await socket.send("hello")
        text = await asyncio.wait_for(socket.recv(), 10)
        await socket.send(b"\x00\x01binary")
        data = await asyncio.wait_for(socket.recv(), 10)
    return text, data


def test_two_workers_serve_http_and_websockets_and_stop_gracefully(
    gunicorn: Gunicorn, tmp_path: Path
) -> None:
    server = gunicorn.server
    # Both workers have run their lifespan startup: two processes, neither of them the master.
    wait_for(lambda: len(startup_pids(gunicorn.lines())) == WORKERS, "two startups", server)
    workers = startup_pids(gunicorn.lines())
    assert server.pid not in workers, server.describe()

    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        sync = client.get("/hello/sync/")
        assert (sync.status_code, sync.text) == (200, "Hello from a sync view"), server.describe()
        async_ = client.get("/hello/async/")
        assert (async_.status_code, async_.text) == (200, "Hello from an async view")
        # The lifespan state reaches request.state in whichever worker answered.
        assert client.get("/lifespan/").json()["process"]["pid"] in workers

        token = uuid.uuid4().hex
        release = tmp_path / "release"
        queued = client.get("/background/", params={"token": token, "release_file": release})
        assert queued.text == f"queued {token}\n", server.describe()

    ws_url = f"ws://{server.host_header}/ws/echo/"
    assert asyncio.run(echo(ws_url)) == ("hello", b"\x00\x01binary"), server.describe()

    # A request in flight when the signal comes: it must still be answered.
    slow: dict[str, object] = {}

    def request_slowly() -> None:
        try:
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                slow["response"] = client.get(
                    "/probe/slow/", params={"seconds": SLOW_VIEW_SECONDS, "token": token}
                )
        except httpx.HTTPError as error:
            slow["error"] = error

    in_flight = threading.Thread(target=request_slowly)
    in_flight.start()
    try:
        time.sleep(HEAD_START)
        # To the master only, as a process manager does: gunicorn passes SIGTERM on to its
        # workers and waits up to --graceful-timeout for them.
        os.kill(server.pid, signal.SIGTERM)
    finally:
        in_flight.join(timeout=WAIT_TIMEOUT)
    response = slow.get("response")
    assert isinstance(response, httpx.Response), f"{slow}\n{server.describe()}"
    assert response.status_code == 200, server.describe()

    # The worker that took the after_response() job waits for it before its lifespan shutdown;
    # the other one may have shut down already.
    wait_for(lambda: DRAIN_MESSAGE in gunicorn.log(), "the wait for the work", server)
    early = shutdown_pids(gunicorn.lines())
    assert len(early) < WORKERS and early <= workers, server.describe()
    release.touch()
    try:
        server.process.wait(timeout=GRACEFUL_TIMEOUT + STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gunicorn did not exit after SIGTERM\n{server.describe()}")
    assert server.process.returncode == 0, server.describe()

    lines = gunicorn.lines()
    assert f"job done {token}" in lines, server.describe()
    assert shutdown_pids(lines) == workers, server.describe()
    # The work finished before the lifespan shutdown of the worker that took it, one of those
    # still up when it was waited for. (The other may shut down at any moment, before the work
    # is done or after: it has nothing to wait for.)
    done = lines.index(f"job done {token}")
    assert any(done < lines.index(f"shutdown {pid}") for pid in workers - early), lines


def test_a_worker_killed_outright_is_replaced_while_the_other_serves(gunicorn: Gunicorn) -> None:
    """SIGKILL to one worker (an OOM kill): no request fails on the other worker meanwhile, and
    the replacement gunicorn starts runs its lifespan startup and serves, as a fresh process."""
    server = gunicorn.server
    wait_for(lambda: len(startup_pids(gunicorn.lines())) == WORKERS, "two startups", server)
    first, second = sorted(startup_pids(gunicorn.lines()))
    os.kill(first, signal.SIGKILL)
    outcomes: dict[str, int] = {}
    answered_by: set[int] = set()
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        deadline = time.monotonic() + WAIT_TIMEOUT
        # Until a replacement has started: the surviving worker answers in the meantime.
        while len(startup_pids(gunicorn.lines())) < WORKERS + 1:
            if time.monotonic() > deadline:
                pytest.fail(f"no replacement worker started\n{server.describe()}")
            try:
                response = client.get("/lifespan/")
            except httpx.TransportError as error:
                outcomes[type(error).__name__] = outcomes.get(type(error).__name__, 0) + 1
                continue
            outcomes[str(response.status_code)] = outcomes.get(str(response.status_code), 0) + 1
            answered_by.add(response.json()["process"]["pid"])
            time.sleep(0.02)
        replacement = (startup_pids(gunicorn.lines()) - {first, second}).pop()
        # Every request meanwhile: answered, and by the survivor.
        assert set(outcomes) == {"200"}, (outcomes, server.describe())
        assert answered_by == {second}, answered_by
        # The replacement serves as a clean process, with its own lifespan state.
        served_by: set[int] = set()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while replacement not in served_by:
            if time.monotonic() > deadline:
                pytest.fail(f"the replacement {replacement} never answered\n{server.describe()}")
            # A new connection each time, so that the kernel may hand it to either worker.
            response = httpx.get(f"{server.base_url}/lifespan/", timeout=30.0)
            assert response.status_code == 200, server.describe()
            served_by.add(response.json()["process"]["pid"])
    assert first not in served_by
    # The killed worker ran no shutdown: it had no chance to.
    assert first not in shutdown_pids(gunicorn.lines())
