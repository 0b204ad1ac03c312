"""Requests per second per endpoint: wrk when available, else a Python asyncio load generator.

Both generators run on the load core, keep `connections` keep-alive connections busy for a fixed
duration and report requests/s plus the requests that failed (non-2xx/3xx status, socket error).
"""

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import http11

LOAD_CORE = 1
WRK_POST_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
ECHO_BODY_SIZE = 65536  # must match the body wrk_post.lua sends


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    method: str
    path: str
    body_size: int = 0
    expected_size: int | None = None  # response body size, where it is known exactly
    under_wsgi: bool = True  # whether the WSGI baseline (gunicorn) is measured on it too
    wsgi_note: str = ""  # printed under the table: how the WSGI handler serves it, or why not


ENDPOINTS = [
    Endpoint(
        "async_hello", "async hello", "GET", "/async-hello/", expected_size=13,
        wsgi_note="Django's WSGI handler runs this async view through async_to_sync",
    ),
    Endpoint("sync_hello", "sync hello", "GET", "/sync-hello/", expected_size=13),
    Endpoint("json", "json ~1 KB", "GET", "/json/"),
    Endpoint("echo", "echo 64 KiB POST", "POST", "/echo/", ECHO_BODY_SIZE, ECHO_BODY_SIZE),
    Endpoint(
        "stream_async", "stream async 16x4 KiB", "GET", "/stream-async/", 0, 16 * 4096,
        under_wsgi=False,
        wsgi_note="not measured: WSGI cannot stream an async iterator; Django buffers it whole",
    ),
    Endpoint("stream_sync", "stream sync 16x4 KiB", "GET", "/stream-sync/", 0, 16 * 4096),
    Endpoint("orm", "ORM query (10 rows)", "GET", "/orm/"),
    Endpoint("orm_persistent", "ORM query, CONN_MAX_AGE=60", "GET", "/orm-persistent/"),
]  # fmt: skip


@dataclass
class ThroughputResult:
    requests_per_second: float
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


class LoadGenerator(Protocol):
    description: str

    def run(
        self, port: int, endpoint: Endpoint, duration: float, connections: int
    ) -> ThroughputResult: ...


class WrkLoad:
    """Drives wrk with one thread on the load core; the 64 KiB POST comes from wrk_post.lua."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        version = subprocess.run([executable, "-v"], capture_output=True, text=True).stdout
        self.description = (
            f"wrk ({version.splitlines()[0].split(' [')[0] if version else 'unknown'})"
        )

    def run(
        self, port: int, endpoint: Endpoint, duration: float, connections: int
    ) -> ThroughputResult:
        command = [
            "taskset", "-c", str(LOAD_CORE), self.executable,
            "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        ]  # fmt: skip
        if endpoint.method == "POST":
            command += ["-s", str(WRK_POST_SCRIPT)]
        command.append(f"http://{http11.HOST}:{port}{endpoint.path}")
        completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
        if completed.returncode != 0:
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
        return parse_wrk_output(completed.stdout, duration)


def parse_wrk_output(output: str, duration: float) -> ThroughputResult:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    socket_errors = sum(
        int(count) for count in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
    )
    latency = {
        f"p{percent}": to_milliseconds(value, unit)
        for percent, value, unit in re.findall(
            r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M
        )
    }
    return ThroughputResult(
        requests_per_second=number(r"Requests/sec:\s+([\d.]+)"),
        requests=int(number(r"(\d+) requests in")),
        duration_s=duration,
        non_2xx=int(number(r"Non-2xx or 3xx responses:\s+(\d+)")),
        socket_errors=socket_errors,
        latency_ms=latency,
    )


def to_milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Tally:
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0


class PythonLoad:
    """Fallback generator: asyncio keep-alive connections over raw sockets, in this process.

    The caller pins this process to the load core. It is slower than wrk, so on fast endpoints it
    may measure its own limit; the output names the generator so readers know which one ran.
    """

    description = "python asyncio raw-socket generator (bench/throughput.py)"

    def run(
        self, port: int, endpoint: Endpoint, duration: float, connections: int
    ) -> ThroughputResult:
        tally = Tally()
        started = time.perf_counter()
        run_fast(drive_connections(port, endpoint, started + duration, connections, tally))
        elapsed = time.perf_counter() - started
        return ThroughputResult(
            requests_per_second=tally.requests / elapsed,
            requests=tally.requests,
            duration_s=elapsed,
            non_2xx=tally.non_2xx,
            socket_errors=tally.socket_errors,
        )


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    # uvloop roughly halves the client's cost per request, leaving more headroom for the server.
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def drive_connections(
    port: int, endpoint: Endpoint, deadline: float, connections: int, tally: Tally
) -> None:
    body = b"x" * endpoint.body_size if endpoint.method == "POST" else b""
    length = len(body) if endpoint.method == "POST" else None
    request = http11.build_request(endpoint.method, endpoint.path, port, length) + body
    workers = [keep_requesting(port, request, deadline, tally) for _ in range(connections)]
    await asyncio.gather(*workers)


async def keep_requesting(port: int, request: bytes, deadline: float, tally: Tally) -> None:
    while time.perf_counter() < deadline:
        try:
            reader, writer = await asyncio.open_connection(http11.HOST, port)
        except OSError:
            tally.socket_errors += 1
            continue
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                remaining = max(0.001, deadline - time.perf_counter())
                response = await asyncio.wait_for(http11.read_response(reader), remaining)
                tally.requests += 1
                if not 200 <= response.status < 400:
                    tally.non_2xx += 1
                if not response.keep_alive:
                    break
        except asyncio.TimeoutError:
            return  # the deadline passed mid-response; like wrk, that request is not counted
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.socket_errors += 1
        finally:
            writer.close()


def find_load_generator(choice: str, allow_install: bool) -> LoadGenerator:
    """wrk if installed (installing it with apt-get when running as root), else the fallback."""
    if choice == "python":
        return PythonLoad()
    executable = shutil.which("wrk")
    if executable is None and allow_install:
        install_wrk()
        executable = shutil.which("wrk")
    if executable:
        return WrkLoad(executable)
    if choice == "wrk":
        raise SystemExit("--load-generator wrk: wrk is not installed and could not be installed.")
    return PythonLoad()


def install_wrk() -> None:
    print("wrk not found; installing it with apt-get ...", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"  {' '.join(command)} failed; using the Python load generator.", flush=True)
            return


async def check_endpoint(port: int, endpoint: Endpoint) -> str | None:
    """One request before measuring: a wrong status or size would make the numbers meaningless."""
    body = b"x" * endpoint.body_size if endpoint.method == "POST" else None
    try:
        response = await http11.request_once(port, endpoint.method, endpoint.path, body)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    if response.status != 200:
        return f"status {response.status}"
    if endpoint.expected_size is not None and response.body_size != endpoint.expected_size:
        return f"body of {response.body_size} bytes, expected {endpoint.expected_size}"
    return None
