"""Fixtures that run example_project under real ASGI servers for the end-to-end tests.

Each test class names a server (``server_name``) and a bind address (``server_host``); the
class-scoped ``server`` fixture starts that server in its own process group on a free port,
waits until it answers, and stops it by process group when the class is done, whether or not
its tests passed. Nothing here reads the Django settings of the test process: the servers run
``example_project.settings`` against a throwaway SQLite database migrated once per session.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PROJECT = REPO_ROOT / "example_project"
APPLICATION = "example_project.asgi:application"
READINESS_PATH = "/hello/sync/"
READINESS_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Free ports are picked before the server binds them, so another process can win the race.
START_ATTEMPTS = 3
LOG_TAIL_CHARS = 6000
MiB = 1024 * 1024
UPLOAD_SIZE = 50 * MiB
# asgi_bridge's body limits in the servers under test: above every legitimate body the
# scenarios send (the 50 MiB upload plus its multipart framing), and an idle timeout that
# no steady upload on loopback comes near.
MAX_REQUEST_BODY_SIZE = 64 * MiB
BODY_RECEIVE_TIMEOUT = 2.0
CHUNKED_BODY_SIZE = 5 * MiB

CommandBuilder = Callable[[str, int], list[str]]


def uvicorn_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        APPLICATION,
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
    ]


def daphne_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), APPLICATION]


def granian_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        APPLICATION,
    ]


def hypercorn_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "hypercorn", "-b", f"{bracketed(host)}:{port}", APPLICATION]


SERVER_COMMANDS: dict[str, CommandBuilder] = {
    "uvicorn": uvicorn_command,
    "daphne": daphne_command,
    "granian": granian_command,
    "hypercorn": hypercorn_command,
}


@dataclass(frozen=True)
class ServerTLS:
    """A certificate chain and key for a server to serve HTTPS with, and a client context that
    trusts the CA which issued them."""

    certfile: Path
    keyfile: Path
    client_context: ssl.SSLContext


# The options that make each server speak TLS, appended to its command.
TLS_ARGUMENTS: dict[str, Callable[[ServerTLS], list[str]]] = {
    "uvicorn": lambda tls: ["--ssl-keyfile", str(tls.keyfile), "--ssl-certfile", str(tls.certfile)],
    "hypercorn": lambda tls: ["--keyfile", str(tls.keyfile), "--certfile", str(tls.certfile)],
}


def bracketed(host: str) -> str:
    """Return ``host`` as it appears in a URL or a ``host:port`` pair (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


def find_free_port(host: str) -> int:
    """Ask the kernel for a port that is free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def read_log_tail(log_path: Path) -> str:
    """Return the end of a server log, for failure messages."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no log written>"
    return text[-LOG_TAIL_CHARS:]


@dataclass(frozen=True)
class ServerEnvironment:
    """Where and with which environment every server process of the session runs."""

    cwd: Path
    env: dict[str, str]
    log_dir: Path


@dataclass
class RunningServer:
    """A server process serving example_project, reachable at ``base_url``."""

    name: str
    host: str
    port: int
    pid: int
    log_path: Path
    process: subprocess.Popen[bytes]
    tls: ServerTLS | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{bracketed(self.host)}:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client passes as ``verify=`` to trust this server."""
        return self.tls.client_context if self.tls else True

    @property
    def host_header(self) -> str:
        return f"{bracketed(self.host)}:{self.port}"

    def describe(self) -> str:
        """Say which server this is and show its log, for assertion messages."""
        return (
            f"{self.name} pid={self.pid} at {self.base_url}; log {self.log_path}:\n"
            f"{read_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, up to STOP_TIMEOUT s' grace, then SIGKILL."""
        # start_new_session=True made the server its own group leader, so pgid == pid; the
        # group also holds any worker processes the server spawned (granian does).
        stop_process_group(self.process, lambda: os.killpg(self.pid, signal.SIGTERM))


def stop_process_group(process: subprocess.Popen[bytes], ask_to_stop: Callable[[], None]) -> None:
    """Ask a group leader to stop, give it STOP_TIMEOUT s' grace, then SIGKILL its whole group.

    The SIGKILL also sweeps children that outlived a leader which did exit in time.
    """
    with contextlib.suppress(ProcessLookupError):
        ask_to_stop()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)


def require_server_installed(name: str) -> None:
    """Fail, never skip, when a server the suite promises to cover is not installed."""
    if name not in SERVER_COMMANDS:
        pytest.fail(f"unknown server {name!r}; known: {sorted(SERVER_COMMANDS)}")
    if importlib.util.find_spec(name) is None:
        pytest.fail(f"{name} is not installed for {sys.executable}; install the 'test' extra")


def spawn_server(
    name: str,
    host: str,
    environment: ServerEnvironment,
    tls: ServerTLS | None = None,
    extra_arguments: Sequence[str] = (),
) -> RunningServer:
    """Start one server process on a free port, its output captured to a log file; with
    ``tls``, it serves HTTPS (and WSS) only. ``extra_arguments`` go to the server's command."""
    port = find_free_port(host)
    log_path = environment.log_dir / f"{name}-{port}.log"
    command = SERVER_COMMANDS[name](host, port)
    if tls is not None:
        command += TLS_ARGUMENTS[name](tls)
    command += list(extra_arguments)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=environment.cwd,
            env=environment.env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(name, host, port, process.pid, log_path, process, tls)


def wait_until_ready(server: RunningServer) -> str | None:
    """Poll the readiness URL; return None once it answers 200, else why it never did."""
    deadline = time.monotonic() + READINESS_TIMEOUT
    last_problem = "no attempt made"
    with httpx.Client(base_url=server.base_url, timeout=2.0, verify=server.verify) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return f"exited with code {server.process.returncode} before answering"
            try:
                response = client.get(READINESS_PATH)
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return None
                last_problem = f"GET {READINESS_PATH} answered {response.status_code}"
            time.sleep(0.1)
    return f"not ready after {READINESS_TIMEOUT:.0f} s; last: {last_problem}"


def start_retrying_taken_ports(spawn: Callable[[], RunningServer], what: str) -> RunningServer:
    """Start a server with ``spawn()`` and wait until it answers; fail with its log if not.

    A free port is picked before the server binds it, so another process can take it first:
    then the server is started again, on a new port.
    """
    for _attempt in range(START_ATTEMPTS):
        server = spawn()
        problem = wait_until_ready(server)
        if problem is None:
            return server
        server.stop()
        if "already in use" not in read_log_tail(server.log_path).lower():
            break
    pytest.fail(f"{what} did not start: {problem}\n{server.describe()}")


def start_server(
    name: str,
    host: str,
    environment: ServerEnvironment,
    tls: ServerTLS | None = None,
    extra_arguments: Sequence[str] = (),
) -> RunningServer:
    """Start a server and wait until it serves example_project; fail with its log if not."""
    require_server_installed(name)
    return start_retrying_taken_ports(
        lambda: spawn_server(name, host, environment, tls, extra_arguments), f"{name} on {host}"
    )


def build_server_env(database: Path, big_file: Path) -> dict[str, str]:
    """The environment of example_project's processes, independent of the test process."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_DEBUG="0",
        EXAMPLE_DB_PATH=str(database),
        EXAMPLE_BIG_FILE=str(big_file),
        EXAMPLE_STATIC_ROOT=str(database.parent / "static"),
        EXAMPLE_MAX_REQUEST_BODY_SIZE=str(MAX_REQUEST_BODY_SIZE),
        EXAMPLE_BODY_RECEIVE_TIMEOUT=str(BODY_RECEIVE_TIMEOUT),
        PYTHONUNBUFFERED="1",
    )
    return env


def migrate(environment: ServerEnvironment) -> None:
    """Create example_project's schema and seed data in the session's database, and collect
    its static files into the session's STATIC_ROOT, as a deployment does."""
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=environment.cwd,
            env=environment.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            pytest.fail(
                f"manage.py {command[0]} failed with code {result.returncode}:\n"
                f"{result.stdout[-LOG_TAIL_CHARS:]}\n{result.stderr[-LOG_TAIL_CHARS:]}"
            )


@dataclass(frozen=True)
class Payload:
    """A file of pseudo-random bytes to send as a request body, with its size and digest."""

    path: Path
    size: int
    sha256: str


def write_payload(path: Path, size: int, seed: int) -> Payload:
    """Write ``size`` deterministic bytes a MiB at a time, so no full copy sits in memory."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            piece = rng.randbytes(min(MiB, remaining))
            digest.update(piece)
            out.write(piece)
            remaining -= len(piece)
    return Payload(path, size, digest.hexdigest())


@pytest.fixture(scope="session")
def upload_payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    return write_payload(tmp_path_factory.mktemp("payloads") / "upload.bin", UPLOAD_SIZE, 1)


@pytest.fixture(scope="session")
def chunked_payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    return write_payload(tmp_path_factory.mktemp("payloads") / "chunked.bin", CHUNKED_BODY_SIZE, 2)


def migrated_environment(tmp_path_factory: pytest.TempPathFactory, name: str) -> ServerEnvironment:
    """A migrated throwaway database and a log directory, in temporary folders named ``name``."""
    if not (EXAMPLE_PROJECT / "manage.py").is_file():
        pytest.fail(f"{EXAMPLE_PROJECT / 'manage.py'} does not exist")
    state_dir = tmp_path_factory.mktemp(name)
    environment = ServerEnvironment(
        cwd=EXAMPLE_PROJECT,
        env=build_server_env(state_dir / "db.sqlite3", state_dir / "big.bin"),
        log_dir=tmp_path_factory.mktemp(f"{name}_logs"),
    )
    migrate(environment)
    return environment


@pytest.fixture(scope="session")
def server_environment(tmp_path_factory: pytest.TempPathFactory) -> ServerEnvironment:
    """A migrated throwaway database and a log directory shared by every server."""
    return migrated_environment(tmp_path_factory, "example_project")


@pytest.fixture(scope="class")
def server(
    request: pytest.FixtureRequest, server_environment: ServerEnvironment
) -> Iterator[RunningServer]:
    """The server named by the test class, bound to the class's ``server_host``."""
    name: str = request.cls.server_name
    host: str = getattr(request.cls, "server_host", "127.0.0.1")
    running = start_server(name, host, server_environment)
    try:
        yield running
    finally:
        running.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the server's log to the report of a failing test that used a server."""
    report: pytest.TestReport = yield
    running = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(running, RunningServer):
        report.sections.append((f"{running.name} log ({running.log_path})", running.describe()))
    return report


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client for the class's server, with a fresh cookie jar per test."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http_client:
        yield http_client


# Figures a test measured, shown at the end of the run whatever the capture mode: the test calls
# record_property(SUMMARY_PROPERTY, "one line"), which --junitxml reports carry as well.
SUMMARY_PROPERTY = "summary"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the summary lines the end-to-end tests recorded, passed or failed."""
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == SUMMARY_PROPERTY
    ]
    if lines:
        terminalreporter.section("measured by the end-to-end tests")
        for line in lines:
            terminalreporter.write_line(line)
