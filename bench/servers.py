"""Starting, readiness-checking and stopping the ASGI servers under test, one pinned worker each.

Every server runs in its own session (so its own process group) and is stopped by signalling
that group, so no worker outlives the benchmark, whether it ends normally, fails or is interrupted.
"""

import asyncio
import os
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


@dataclass(frozen=True)
class ServerSpec:
    name: str
    distribution: str
    command: Callable[[int], list[str]]

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


SERVERS = {
    "uvicorn": ServerSpec("uvicorn", "uvicorn", uvicorn_command),
    "granian": ServerSpec("granian", "granian", granian_command),
}


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
    spec: ServerSpec, handler: str, env: dict[str, str], log_dir: Path
) -> RunningServer:
    port = free_port()
    log_path = log_dir / f"{spec.name}-{handler}-{port}.log"
    command = ["taskset", "-c", str(SERVER_CORE), *spec.command(port)]
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
    spec: ServerSpec, handler: str, env: dict[str, str], log_dir: Path
) -> Iterator[RunningServer]:
    """Start a server, wait until it answers, and always stop its whole process group."""
    server = start_server(spec, handler, env, log_dir)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop_server(server)
