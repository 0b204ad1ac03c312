"""Starting, readiness-checking and stopping the servers under test, one pinned worker each.

The ASGI servers (uvicorn, granian) serve the stock and asgi_bridge handlers; gunicorn with one
sync worker serves Django's WSGI handler as the baseline issue #3 names. Every server runs in its
own session (so its own process group) and is stopped by signalling that group, so no worker
outlives the benchmark, whether it ends normally, fails or is interrupted.
"""

import asyncio
import importlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import http11

PROJECT_DIR = Path(__file__).resolve().parent / "project"
SERVER_CORE = 0
READY_PATH = "/sync-hello/"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    distribution: str
    command: Callable[[int], list[str]]
    requirement: str  # what ensure_installed asks pip for; keep in step with the bench extra

    @property
    def version(self) -> str:
        return metadata.version(self.distribution)


def uvicorn_command(port: int) -> list[str]:
    # uvicorn picks uvloop and httptools on its own when they are installed.
    return [
        sys.executable, "-m", "uvicorn", "asgi:application",
        "--app-dir", str(PROJECT_DIR),
        "--host", http11.HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def granian_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
        "--working-dir", str(PROJECT_DIR),
        "--host", http11.HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "asgi:application",
    ]  # fmt: skip


def gunicorn_command(port: int) -> list[str]:
    # The deployment issue #3 compares against: Django's WSGIHandler, one sync worker.
    return [
        sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
        "--chdir", str(PROJECT_DIR),
        "--bind", f"{http11.HOST}:{port}",
        "--log-level", "warning",
        "wsgi:application",
    ]  # fmt: skip


SERVERS = {
    "uvicorn": ServerSpec("uvicorn", "uvicorn", uvicorn_command, "uvicorn[standard]>=0.30"),
    "granian": ServerSpec("granian", "granian", granian_command, "granian>=2.0"),
}
WSGI_SERVER = ServerSpec("gunicorn", "gunicorn", gunicorn_command, "gunicorn>=23.0")
WSGI_HANDLER = "wsgi"


def uvicorn_project_spec(module: str) -> ServerSpec:
    """uvicorn serving ``<module>:application`` from project/ (``asgi``, ``channels_asgi``).

    Started with ``-P`` (Python 3.11+), so that the current directory is not put on sys.path:
    run from bench/, bench/websockets.py would shadow the websockets library uvicorn serves
    WebSockets with.
    """
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []

    def command(port: int) -> list[str]:
        return [
            sys.executable, *safe_path, "-m", "uvicorn", f"{module}:application",
            "--app-dir", str(PROJECT_DIR),
            "--host", http11.HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    uvicorn = SERVERS["uvicorn"]
    return ServerSpec(uvicorn.name, uvicorn.distribution, command, uvicorn.requirement)


def is_installed(spec: ServerSpec) -> bool:
    try:
        metadata.version(spec.distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def ensure_installed(spec: ServerSpec) -> None:
    """Install a missing server with pip into the running interpreter, or exit saying how to."""
    if is_installed(spec):
        return
    print(f"{spec.name} not found; installing {spec.requirement!r} with pip ...", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", spec.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    importlib.invalidate_caches()  # so the distribution installed just now is found
    if result.returncode != 0 or not is_installed(spec):
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        hint = " or pass --no-wsgi" if spec is WSGI_SERVER else ""
        sys.exit(
            f"{spec.name} is needed and `{shlex.join(command)}` failed:\n{tail}\n"
            f"Install the bench extra (`pip install -e '.[bench]'`){hint}."
        )


class ServerFailed(RuntimeError):
    """The server exited or never answered; the message carries the tail of its log."""


@dataclass
class RunningServer:
    spec: ServerSpec
    handler: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def measured_pids(self) -> list[int]:
        """The processes that serve requests: the workers if the server forks, else itself."""
        descendants = descendant_pids(self.process.pid)
        return descendants or [self.process.pid]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((http11.HOST, 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes (all their threads) have used so far."""
    total_ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # After the ")" that ends the command name: state is field 3, utime 14 and stime 15.
        fields = stat.rsplit(")", 1)[1].split()
        total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS


def descendant_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses; the ppid follows the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return sorted(found)


def start_server(
    spec: ServerSpec, handler: str, env: dict[str, str], log_dir: Path, core: int = SERVER_CORE
) -> RunningServer:
    port = free_port()
    log_path = log_dir / f"{spec.name}-{handler}-{port}.log"
    command = ["taskset", "-c", str(core), *spec.command(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env={**env, "BENCH_HANDLER": handler},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(spec, handler, port, process, log_path)


def wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if leader_exited(server):
            raise ServerFailed(
                f"{server.spec.name} ({server.handler}) exited:\n{server.log_tail()}"
            )
        try:
            response = asyncio.run(http11.request_once(server.port, "GET", READY_PATH, timeout=5))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            time.sleep(0.1)
            continue
        if response.status == 200:
            return
        raise ServerFailed(
            f"{server.spec.name} ({server.handler}) answered {READY_PATH} with "
            f"{response.status}:\n{server.log_tail()}"
        )
    raise ServerFailed(
        f"{server.spec.name} ({server.handler}) not ready after {READY_TIMEOUT:.0f}s:\n"
        f"{server.log_tail()}"
    )


def leader_exited(server: RunningServer) -> bool:
    # WNOWAIT leaves the exited leader as a zombie, so its pid (the group id) cannot be reused by
    # an unrelated process before stop_server has signalled the group for the last time.
    try:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, server.process.pid, flags) is not None
    except ChildProcessError:
        return True


def signal_group(server: RunningServer, sig: signal.Signals) -> None:
    # The group id equals the leader's pid because the server was started in a new session.
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, sig)


def stop_server(server: RunningServer) -> None:
    signal_group(server, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while not leader_exited(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Whatever is still in the group (a stuck leader, orphaned workers) is killed outright.
    signal_group(server, signal.SIGKILL)
    server.process.wait()


@contextmanager
def running_server(
    spec: ServerSpec, handler: str, env: dict[str, str], log_dir: Path, core: int = SERVER_CORE
) -> Iterator[RunningServer]:
    """Start a server, wait until it answers, and always stop its whole process group."""
    server = start_server(spec, handler, env, log_dir, core)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop_server(server)
