"""Soak: mixed traffic against example_project on uvicorn, watching the server for leaks.

    .venv/bin/python bench/soak.py                    # 30 minutes, 16 clients
    .venv/bin/python bench/soak.py --duration 600     # 10 minutes
    .venv/bin/python bench/soak.py --ci               # 60 s, 6 clients: tests/e2e/test_soak.py

One uvicorn process serves example_project (``DEBUG = False``) on a free 127.0.0.1 port, with
its own migrated database, collected static files and a superuser, all in a temporary
directory; it is started and stopped by tests/e2e/conftest.py's helpers, so by process group,
also on failure or Ctrl-C. The database is a throwaway PostgreSQL server (tests/e2e/postgres.py)
with persistent connections (``CONN_MAX_AGE = 60``, ``CONN_HEALTH_CHECKS``), as production
runs; ``--database sqlite`` uses a SQLite file instead. A client process of this module
(asyncio, httpx and websockets) drives --concurrency workers, each picking the next operation at
random by weight (TRAFFIC), plus chat rooms with listeners that come and go and an admin login
and logout every few seconds. The ORM writes create a row and delete it again, so the pages that
list the table stay the same size.

Every --interval seconds the server's resident set (VmRSS), open file descriptors
(/proc/<pid>/fd), threads (/proc/<pid>/task) and database connections (the database's client
backends in PostgreSQL's pg_stat_activity; with SQLite, descriptors open on the database file)
are sampled. After the warm-up (the first --warmup fraction of the run) each series
gets a least-squares slope, and a series *trends upward* when both

- its slope times the measured span (the rise the fit predicts over the run after warm-up) is
  above the series' tolerance (TOLERANCES), and
- the median of the last quarter of the samples after warm-up is above the median of the first
  quarter by more than that tolerance,

so a single spike moves neither and a steady leak moves both. The run fails (exit 1) when any
series trends upward, when the client saw more than MAX_ERROR_RATE of its operations fail, or
when an operation never succeeded. The series are drawn to bench/results/soak-<timestamp>.png
and saved with the verdicts as bench/results/soak-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# bench/websockets.py would shadow the websockets library the client uses: look in bench/ last.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
sys.path += [str(BENCH_DIR), str(REPO_ROOT)]

import httpx  # noqa: E402
import machine  # noqa: E402
import servers  # noqa: E402
import websockets  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from tests.e2e import conftest, postgres  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
MiB = 1024 * 1024
DOWNLOAD_SIZE = 10 * MiB  # example_project's /download/ file
UPLOAD_SIZE = 256 * 1024
ECHO_SIZE = 64 * 1024
ABORTED_UPLOAD_SIZE = 4 * MiB  # announced; a tenth of it is sent before the client leaves
OPERATION_TIMEOUT = 30.0
ADMIN_USER, ADMIN_PASSWORD = "soak", "soak-password-not-secret"
PG_DATABASE, PG_USER = "asgi_bridge_soak", "example"
# Persistent connections, checked before reuse: what a production deployment on PostgreSQL runs.
CONN_MAX_AGE = 60
# The database's connections from the server: client backends, not PostgreSQL's own workers.
PG_BACKENDS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = %s AND usename = %s AND backend_type = 'client backend'
"""
MAX_ERROR_RATE = 0.01
IDLE_WAIT = 3.0
# How far each series may rise after warm-up before the run fails (see the module docstring).
TOLERANCES = {"rss_mib": 16.0, "fds": 16.0, "threads": 4.0, "db_connections": 2.0}
UNITS = {"rss_mib": "MiB", "fds": "fds", "threads": "threads", "db_connections": "connections"}


# -- the client process ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the client did: operations that succeeded and failed, by name, and the first errors."""

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    broadcasts_received: int = 0

    async def run(self, name: str, operation: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(operation, OPERATION_TIMEOUT)
        except Exception as exc:  # every failure is counted, whatever raised it
            self.failed[name] += 1
            if len(self.errors) < 20:
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            self.ok[name] += 1


class Traffic:
    """The operations one client worker performs, each checking what the server answered."""

    def __init__(self, base_url: str, rooms: list[str], rng: random.Random) -> None:
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://")
        self.port = int(base_url.rsplit(":", 1)[1])
        self.rooms = rooms
        self.rng = rng
        self.client = httpx.AsyncClient(base_url=base_url, timeout=OPERATION_TIMEOUT)
        self.upload = rng.randbytes(UPLOAD_SIZE)
        self.upload_sha256 = hashlib.sha256(self.upload).hexdigest()

    async def get_ok(self, path: str) -> httpx.Response:
        response = await self.client.get(path)
        if response.status_code != 200:
            raise AssertionError(f"GET {path} answered {response.status_code}")
        return response

    async def csrf_token(self) -> str:
        if "csrftoken" not in self.client.cookies:
            await self.get_ok("/form/")
        return self.client.cookies["csrftoken"]

    async def hello_sync(self) -> None:
        await self.get_ok("/hello/sync/")

    async def hello_async(self) -> None:
        await self.get_ok("/hello/async/")

    async def static_file(self) -> None:
        await self.get_ok("/static/demo/style.css")

    async def items(self) -> None:
        await self.get_ok("/items/")

    async def items_json(self) -> None:
        await self.get_ok("/items/json/")

    async def item_count(self) -> None:
        await self.get_ok("/items/count/")

    async def form_post(self) -> None:
        name = f"soak {self.rng.randrange(10**6)}"
        data = {"name": name, "csrfmiddlewaretoken": await self.csrf_token()}
        response = await self.client.post("/form/", data=data)
        if response.status_code != 200 or name not in response.text:
            raise AssertionError(f"POST /form/ answered {response.status_code}")

    async def orm_write(self, kind: str) -> None:
        """Create a row and delete it again (in a transaction, or through the async ORM)."""
        path = f"/items/scratch/{kind}/"
        data = {"name": "soak", "csrfmiddlewaretoken": await self.csrf_token()}
        response = await self.client.post(path, data=data)
        if response.status_code != 200 or not response.text.isdigit():
            raise AssertionError(f"POST {path} answered {response.status_code}")

    async def orm_write_sync(self) -> None:
        await self.orm_write("sync")

    async def orm_write_async(self) -> None:
        await self.orm_write("async")

    async def echo(self) -> None:
        body = self.upload[:ECHO_SIZE]
        response = await self.client.post("/echo/", content=body)
        if response.status_code != 200 or response.content != body:
            raise AssertionError(f"POST /echo/ answered {response.status_code}")

    async def upload_file(self) -> None:
        headers = {"X-CSRFToken": await self.csrf_token()}
        files = {"file": ("soak.bin", self.upload, "application/octet-stream")}
        response = await self.client.post("/upload/", files=files, headers=headers)
        if response.status_code != 200 or response.json().get("sha256") != self.upload_sha256:
            raise AssertionError(f"POST /upload/ answered {response.status_code}")

    async def download(self) -> None:
        size = 0
        async with self.client.stream("GET", "/download/") as response:
            async for chunk in response.aiter_raw():
                size += len(chunk)
        if response.status_code != 200 or size != DOWNLOAD_SIZE:
            raise AssertionError(f"GET /download/: {response.status_code}, {size} bytes")

    async def read_then_leave(self, path: str, least: int) -> None:
        """Read at least ``least`` bytes of a long response, then close the connection."""
        size = 0
        async with self.client.stream("GET", path) as response:
            if response.status_code != 200:
                raise AssertionError(f"GET {path} answered {response.status_code}")
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size >= least:
                    break
        if size < least:
            raise AssertionError(f"GET {path} ended after {size} bytes")

    async def download_abort(self) -> None:
        await self.read_then_leave("/download/", self.rng.randrange(64 * 1024, 4 * MiB))

    async def sse_abort(self) -> None:
        path = self.rng.choice(["/sse/clock/", "/sse/clock-sync/"])
        # Each tick is about 80 bytes; hold the stream for a few of them, then leave.
        await self.read_then_leave(f"{path}?interval=0.1", 80 * self.rng.randrange(2, 12))

    async def stream_abort(self) -> None:
        path = self.rng.choice(["/stream/forever/", "/stream/forever-sync/"])
        await self.read_then_leave(f"{path}?delay=0.02", self.rng.randrange(10, 200))

    async def upload_abort(self) -> None:
        """Announce a large body, send a tenth of it, and reset the connection."""
        _reader, writer = await asyncio.open_connection(HOST, self.port)
        head = (
            f"POST /echo/ HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Content-Length: {ABORTED_UPLOAD_SIZE}\r\n\r\n"
        )
        writer.write(head.encode() + bytes(ABORTED_UPLOAD_SIZE // 10))
        await writer.drain()
        writer.transport.abort()

    async def ws_echo(self) -> None:
        async with connect(f"{self.ws_url}/ws/echo/") as ws:
            for number in range(self.rng.randrange(1, 6)):
                message = f"soak {number}"
                await ws.send(message)
                if await ws.recv() != message:
                    raise AssertionError("/ws/echo/ sent back something else")
            if self.rng.random() < 0.3:
                ws.transport.abort()  # leave without a closing handshake

    async def chat(self) -> None:
        """Say something in a room and wait for the room's broadcast of it."""
        text = f"soak {self.rng.randrange(10**9)}"
        async with connect(f"{self.ws_url}/ws/chat/{self.rng.choice(self.rooms)}/") as ws:
            await ws.send(text)
            while json.loads(await ws.recv()).get("text") != text:
                pass

    async def announce(self) -> None:
        path = f"/chat/{self.rng.choice(self.rooms)}/announce/"
        response = await self.client.post(path, data={"text": "soak announcement"})
        if response.status_code != 200:
            raise AssertionError(f"POST {path} answered {response.status_code}")


# Relative weights of the operations each worker picks from.
TRAFFIC: dict[str, tuple[Callable[[Traffic], Awaitable[None]], int]] = {
    "hello_sync": (Traffic.hello_sync, 10),
    "hello_async": (Traffic.hello_async, 10),
    "static_file": (Traffic.static_file, 5),
    "items": (Traffic.items, 5),
    "items_json": (Traffic.items_json, 5),
    "item_count": (Traffic.item_count, 3),
    "form_post": (Traffic.form_post, 3),
    "orm_write_sync": (Traffic.orm_write_sync, 3),
    "orm_write_async": (Traffic.orm_write_async, 3),
    "echo": (Traffic.echo, 3),
    "upload": (Traffic.upload_file, 2),
    "download": (Traffic.download, 1),
    "download_abort": (Traffic.download_abort, 2),
    "upload_abort": (Traffic.upload_abort, 2),
    "sse_abort": (Traffic.sse_abort, 2),
    "stream_abort": (Traffic.stream_abort, 1),
    "ws_echo": (Traffic.ws_echo, 4),
    "chat": (Traffic.chat, 2),
    "announce": (Traffic.announce, 1),
}


async def worker(traffic: Traffic, tally: Tally, deadline: float) -> None:
    names = list(TRAFFIC)
    weights = [weight for _operation, weight in TRAFFIC.values()]
    async with traffic.client:
        while time.monotonic() < deadline:
            name = traffic.rng.choices(names, weights)[0]
            await tally.run(name, TRAFFIC[name][0](traffic))


async def listen(ws_url: str, room: str, tally: Tally, rng: random.Random, deadline: float) -> None:
    """A chat listener that stays 5-30 s, counting broadcasts, then leaves and comes back."""

    async def stay() -> None:
        ws: ClientConnection
        async with connect(f"{ws_url}/ws/chat/{room}/") as ws:
            leave_at = min(deadline, time.monotonic() + rng.uniform(5, 30))
            while (left := leave_at - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), left)
                    tally.broadcasts_received += 1

    while time.monotonic() < deadline:
        # Not under OPERATION_TIMEOUT: a stay may be longer.
        try:
            await stay()
        except (OSError, websockets.WebSocketException) as exc:
            tally.failed["chat_listener"] += 1
            tally.errors.append(f"chat_listener: {type(exc).__name__}: {exc}")
            await asyncio.sleep(1)
        else:
            tally.ok["chat_listener"] += 1


async def admin_login_logout(base_url: str) -> None:
    """Log in to the admin and out again: a session row written and deleted, last_login set."""
    async with httpx.AsyncClient(base_url=base_url, timeout=OPERATION_TIMEOUT) as client:
        await client.get("/admin/login/")
        token = client.cookies["csrftoken"]
        credentials = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        response = await client.post(
            "/admin/login/?next=/admin/", data={**credentials, "csrfmiddlewaretoken": token}
        )
        if response.status_code != 302 or "sessionid" not in client.cookies:
            raise AssertionError(f"admin login answered {response.status_code}")
        # Logging in rotated the CSRF token.
        token = client.cookies["csrftoken"]
        response = await client.post("/admin/logout/", data={"csrfmiddlewaretoken": token})
        if response.status_code != 200:
            raise AssertionError(f"admin logout answered {response.status_code}")


async def log_in_now_and_then(base_url: str, every: float, tally: Tally, deadline: float) -> None:
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        await tally.run("admin_login", admin_login_logout(base_url))


async def drive(args: argparse.Namespace) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + args.duration
    rooms = [f"soak-{number}" for number in range(args.rooms)]
    ws_url = args.base_url.replace("http://", "ws://")
    tasks = [
        worker(Traffic(args.base_url, rooms, random.Random(seed)), tally, deadline)
        for seed in range(args.concurrency)
    ]
    tasks += [
        listen(ws_url, room, tally, random.Random(1000 + index), deadline)
        for index, room in enumerate(rooms * args.listeners)
    ]
    tasks.append(log_in_now_and_then(args.base_url, args.login_every, tally, deadline))
    await asyncio.gather(*tasks)
    return tally


def client_main(args: argparse.Namespace) -> int:
    tally = asyncio.run(drive(args))
    summary = {"ok": tally.ok, "failed": tally.failed, "errors": tally.errors}
    summary["broadcasts_received"] = tally.broadcasts_received
    Path(args.summary).write_text(json.dumps(summary, indent=1))
    return 0


# -- the server, the samples and the verdict -------------------------------------------------


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    fds: int
    threads: int
    db_connections: int


class ConnectionCounter:
    """Counts the server's database connections: in pg_stat_activity, or on the SQLite file."""

    def __init__(self, sqlite_file: Path | None = None, pg: postgres.PostgresServer | None = None):
        self.sqlite_file = sqlite_file
        # The monitor's own connection is to the "postgres" database, so it is never counted.
        self.monitor = pg.connect() if pg is not None else None

    def count(self, fd_targets: list[str]) -> int:
        if self.monitor is not None:
            row = self.monitor.execute(PG_BACKENDS, (PG_DATABASE, PG_USER)).fetchone()
            return int(row[0]) if row else 0
        # A SQLite connection holds one descriptor on the database file (its journal comes and
        # goes with each write).
        return sum(target == str(self.sqlite_file) for target in fd_targets)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def take_sample(pid: int, connections: ConnectionCounter, started: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    fd_dir = Path(f"/proc/{pid}/fd")
    targets = []
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):  # closed between listing and reading
            targets.append(os.readlink(fd))
    return Sample(
        seconds=round(time.monotonic() - started, 2),
        rss_mib=round(int(fields["VmRSS"].split()[0]) / 1024, 2),
        fds=len(targets),
        threads=len(os.listdir(f"/proc/{pid}/task")),
        db_connections=connections.count(targets),
    )


@dataclass
class Trend:
    metric: str
    slope_per_minute: float
    predicted_rise: float
    median_rise: float
    tolerance: float
    samples: int

    @property
    def upward(self) -> bool:
        return self.predicted_rise > self.tolerance and self.median_rise > self.tolerance

    def describe(self) -> str:
        unit = UNITS[self.metric]
        verdict = "TRENDS UPWARD" if self.upward else "flat"
        return (
            f"{self.metric:15} {self.slope_per_minute:+9.3f} {unit}/min  "
            f"fit rise {self.predicted_rise:+8.2f}  quarter medians {self.median_rise:+8.2f}  "
            f"(tolerance {self.tolerance:g} {unit})  {verdict}"
        )


def count_probe_events(base_url: str) -> int:
    """How many events example_project's /probe/events/ has recorded (downloads, streams...)."""
    response = httpx.get(f"{base_url}/probe/events/", timeout=OPERATION_TIMEOUT)
    response.raise_for_status()
    return len(response.json()["events"])


def describe_idle(sample: Sample) -> str:
    return (
        f"RSS {sample.rss_mib:.1f} MiB, {sample.fds} fds, {sample.threads} threads, "
        f"{sample.db_connections} database connections"
    )


def judge(samples: list[Sample], metric: str, warmup_seconds: float) -> Trend:
    measured = [sample for sample in samples if sample.seconds >= warmup_seconds]
    times = [sample.seconds for sample in measured]
    values = [float(getattr(sample, metric)) for sample in measured]
    if len(measured) < 4:
        raise SystemExit(f"only {len(measured)} samples after warm-up: run longer")
    slope = statistics.linear_regression(times, values).slope
    quarter = max(1, len(values) // 4)
    median_rise = statistics.median(values[-quarter:]) - statistics.median(values[:quarter])
    return Trend(
        metric,
        slope * 60,
        slope * (times[-1] - times[0]),
        median_rise,
        TOLERANCES[metric],
        len(measured),
    )


def draw(samples: list[Sample], trends: list[Trend], warmup: float, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(trends), 1, figsize=(9, 2.3 * len(trends)), sharex=True)
    minutes = [sample.seconds / 60 for sample in samples]
    for axis, trend in zip(axes, trends, strict=True):
        values = [getattr(sample, trend.metric) for sample in samples]
        axis.plot(minutes, values, marker=".", linewidth=1)
        axis.axvspan(0, warmup / 60, color="#dddddd", label="warm-up")
        measured = [(m, v) for m, v in zip(minutes, values, strict=True) if m * 60 >= warmup]
        fit = statistics.linear_regression([m for m, _ in measured], [v for _, v in measured])
        ends = [measured[0][0], measured[-1][0]]
        axis.plot(ends, [fit.intercept + fit.slope * m for m in ends], "--", color="#dd8452")
        axis.set_ylabel(UNITS[trend.metric])
        verdict = "trends upward" if trend.upward else "flat"
        axis.set_title(
            f"{trend.metric}: {trend.slope_per_minute:+.3f} {UNITS[trend.metric]}/min, {verdict}",
            fontsize=9,
        )
        axis.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def prepare(state: Path, pg: postgres.PostgresServer | None) -> conftest.ServerEnvironment:
    """A migrated database with a superuser and collected static files, as conftest makes them."""
    env = conftest.build_server_env(state / "db.sqlite3", state / "big.bin")
    if pg is not None:
        pg.create_database(PG_DATABASE, PG_USER)
        env.update(
            EXAMPLE_PG_NAME=PG_DATABASE,
            EXAMPLE_PG_HOST=pg.host,
            EXAMPLE_PG_PORT=str(pg.port),
            EXAMPLE_PG_USER=PG_USER,
            EXAMPLE_CONN_MAX_AGE=str(CONN_MAX_AGE),
            EXAMPLE_CONN_HEALTH_CHECKS="1",
        )
    env.update(
        DJANGO_SUPERUSER_USERNAME=ADMIN_USER,
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        DJANGO_SUPERUSER_EMAIL="soak@example.com",
    )
    log_dir = state / "logs"
    log_dir.mkdir()
    environment = conftest.ServerEnvironment(conftest.EXAMPLE_PROJECT, env, log_dir)
    try:
        conftest.migrate(environment)
    except conftest.pytest.fail.Exception as exc:
        raise SystemExit(str(exc)) from None
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=environment.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
    )
    return environment


def start_client(args: argparse.Namespace, base_url: str, summary: Path, log: Path) -> Any:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--client",
        "--base-url", base_url, "--summary", str(summary),
        "--duration", str(args.duration), "--concurrency", str(args.concurrency),
        "--rooms", str(args.rooms), "--listeners", str(args.listeners),
        "--login-every", str(args.login_every),
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def soak(args: argparse.Namespace) -> int:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    busy_before = machine.busy_cpu_percent()
    with contextlib.ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        pg = None
        try:
            if args.database == "postgresql":
                (state / "postgres-logs").mkdir()
                pg = stack.enter_context(postgres.running_postgres(state / "postgres-logs"))
            environment = prepare(state, pg)
            server = conftest.start_retrying_taken_ports(
                lambda: conftest.spawn_server("uvicorn", HOST, environment), "uvicorn"
            )
        except conftest.pytest.fail.Exception as exc:
            raise SystemExit(str(exc)) from None
        stack.callback(server.stop)
        connections = ConnectionCounter(state / "db.sqlite3", pg)
        stack.callback(connections.close)
        samples: list[Sample] = []
        client = None
        try:
            started = time.monotonic()
            machine_cpu_before = machine.busy_cpu_seconds()
            client = start_client(
                args, server.base_url, state / "summary.json", state / "client.log"
            )
            own_cpu = {server.pid: 0.0, client.pid: 0.0}
            print(
                f"soak: uvicorn pid {server.pid} at {server.base_url} on {args.database}"
                f"{f' (pid {pg.pid})' if pg is not None else ''}, client pid {client.pid}; "
                f"{args.duration:.0f} s, warm-up {args.duration * args.warmup:.0f} s, "
                f"{args.concurrency} workers, {args.rooms} rooms x {args.listeners} listeners",
                flush=True,
            )
            next_print = 0.0
            while client.poll() is None:
                if server.process.poll() is not None:
                    raise SystemExit(f"uvicorn exited during the soak:\n{server.describe()}")
                if time.monotonic() - started > args.duration + 60:
                    raise SystemExit("the client did not finish within a minute of its duration")
                samples.append(take_sample(server.pid, connections, started))
                for pid in own_cpu:
                    with contextlib.suppress(OSError):
                        own_cpu[pid] = servers.cpu_seconds([pid])
                if samples[-1].seconds >= next_print:
                    print(f"  {asdict(samples[-1])}", flush=True)
                    next_print += args.print_every
                time.sleep(args.interval)
            elapsed = time.monotonic() - started
            # Idle again: what the server holds once the traffic is gone (not part of the fit).
            time.sleep(IDLE_WAIT)
            idle = take_sample(server.pid, connections, started)
            probe_events = count_probe_events(server.base_url)
            others_busy = machine.busy_cpu_seconds() - machine_cpu_before - sum(own_cpu.values())
            others_percent = 100 * others_busy / elapsed / (os.cpu_count() or 1)
            client_log = (state / "client.log").read_text(errors="replace")
            if client.returncode != 0:
                raise SystemExit(f"the client failed ({client.returncode}):\n{client_log[-3000:]}")
            summary = json.loads((state / "summary.json").read_text())
        finally:
            if client is not None:
                conftest.stop_process_group(client, lambda: os.killpg(client.pid, signal.SIGTERM))

    warmup = args.duration * args.warmup
    trends = [judge(samples, metric, warmup) for metric in TOLERANCES]
    ok, failed = Counter(summary["ok"]), Counter(summary["failed"])
    operations = sum(ok.values()) + sum(failed.values())
    error_rate = sum(failed.values()) / operations if operations else 1.0
    never_succeeded = sorted(name for name in [*TRAFFIC, "chat_listener"] if not ok[name])
    if args.login_every < args.duration:
        never_succeeded += [] if ok["admin_login"] else ["admin_login"]

    print(
        f"\n{elapsed:.0f} s, {len(samples)} samples every {args.interval:g} s; "
        f"server CPU {own_cpu[server.pid]:.0f} s, client CPU {own_cpu[client.pid]:.0f} s; "
        f"other processes used {others_percent:.0f}% of the {os.cpu_count()} cores "
        f"(busy {busy_before:.0f}% in a 1 s sample before the run)"
    )
    print(
        f"operations: {operations} ({operations / elapsed:.0f}/s), failed {sum(failed.values())} "
        f"({100 * error_rate:.2f}%), chat broadcasts received {summary['broadcasts_received']}"
    )
    print(
        "  "
        + ", ".join(f"{name} {ok[name]}/{ok[name] + failed[name]}" for name in sorted(ok | failed))
    )
    for error in summary["errors"]:
        print(f"  error: {error}")
    print(
        f"slopes after the {warmup:.0f} s warm-up (least squares over {trends[0].samples} samples):"
    )
    for trend in trends:
        print(f"  {trend.describe()}")
    print(f"at the start: {describe_idle(samples[0])}")
    print(f"{IDLE_WAIT:g} s after the traffic ended: {describe_idle(idle)}")
    print(
        f"example_project's probe log holds {probe_events} events: it keeps every one (for the "
        "end-to-end tests), so part of any RSS rise is the example project's, not asgi_bridge's"
    )

    title = (
        f"bench/soak.py, {elapsed / 60:.1f} min on uvicorn and {args.database}, "
        f"{args.concurrency} workers, "
        f"git {machine.git_revision()}, {stamp}"
    )
    png = results / f"soak-{stamp}.png"
    draw(samples, trends, warmup, title, png)
    record = {
        "args": vars(args),
        "elapsed": elapsed,
        "others_cpu_percent": others_percent,
        "summary": summary,
        "trends": [{**asdict(trend), "upward": trend.upward} for trend in trends],
        "samples": [asdict(sample) for sample in samples],
        "idle_after": asdict(idle),
        "probe_events": probe_events,
    }
    (results / f"soak-{stamp}.json").write_text(json.dumps(record, indent=1))
    print(f"plot: {png}")

    problems = [f"{trend.metric} trends upward" for trend in trends if trend.upward]
    if error_rate > MAX_ERROR_RATE:
        problems.append(
            f"{100 * error_rate:.2f}% of operations failed (at most {100 * MAX_ERROR_RATE:g}%)"
        )
    if never_succeeded:
        problems.append(f"never succeeded: {', '.join(never_succeeded)}")
    print("FAILED: " + "; ".join(problems) if problems else "passed: every series is flat")
    return 1 if problems else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--ci", action="store_true", help="60 s with a smaller load, for CI")
    parser.add_argument("--concurrency", type=int, help="client workers (default 16, --ci 6)")
    parser.add_argument("--interval", type=float, help="seconds between samples (5, --ci 2)")
    parser.add_argument("--warmup", type=float, default=0.25, help="fraction (default 0.25)")
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="a throwaway PostgreSQL server (default), or a SQLite file",
    )
    parser.add_argument("--rooms", type=int, default=4, help="chat rooms (default 4)")
    parser.add_argument("--listeners", type=int, help="listeners per room (3, --ci 2)")
    parser.add_argument(
        "--login-every", type=float, help="seconds between admin logins (15, --ci 5)"
    )
    parser.add_argument(
        "--results-dir", default=str(RESULTS_DIR), help="for the PNG and JSON (bench/results)"
    )
    # Internal: run as the client process.
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ci:
        args.duration = 60.0
        args.warmup = 1 / 3
    defaults = {"concurrency": 16, "interval": 5.0, "listeners": 3, "login_every": 15.0}
    ci_defaults = {"concurrency": 6, "interval": 2.0, "listeners": 2, "login_every": 5.0}
    for name, value in (ci_defaults if args.ci else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.print_every = 10.0 if args.ci else 60.0
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.client:
        return client_main(args)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
