"""Requests that await: stock Django's ASGI handler against asgi_bridge, in one run, with ratios.

- In-process: CONCURRENT (200) async views that each ``await asyncio.sleep(0.5)``, sent at once
  through the benchmark project's default middleware; the wall time of the batch for each
  handler over a few alternating rounds, median. Target: asgi_bridge <= 1.5x stock.
- On uvicorn (one worker on core 0, the client on core 1): 150 async long polls and 100
  server-sent event streams open at once; how long an async GET and a sync GET then take to
  answer, and how long every stream took to get its first event. Target: each <= 1.5 s.

    .venv/bin/python bench/concurrency.py [--rounds 5] [--only inprocess|server]

asgi_bridge runs with a fixed pool of THREADS (32) threads, whatever the machine's cores. Nothing
here asserts: the targets are printed beside the numbers, for information.

Run as a script, this module measures. uvicorn imports it as ``concurrency:application`` (from
this directory): the benchmark project's application (``BENCH_HANDLER`` chooses stock or
bridge) with this benchmark's two views added to its URLconf.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR / "project"
RESULTS_DIR = BENCH_DIR / "results"
HANDLERS = ("stock", "bridge")
LABELS = {"stock": "stock", "bridge": "asgi_bridge"}
THREADS = 32
EVENTS_PATH = "/concurrency/events/"
# A long poll or an event stream outlives the measurement; the client ends it by hanging up.
OPEN_SECONDS = 120
# The long polls' time to reach their view before the streams open (stock needs ~0.5 s).
SETTLE_SECONDS = 1.0
# Connections opened at once, below uvicorn's listen backlog.
CONNECTING_AT_ONCE = 32
BATCH_RATIO_TARGET = 1.5
SECONDS_TARGET = 1.5


# -- what the server serves ----------------------------------------------------------------------


def sleep_path(seconds: float) -> str:
    # In the path, not the query: bench/inprocess.py's requests carry no query string.
    return f"/concurrency/sleep/{round(seconds * 1000)}/"


async def async_sleep(request: HttpRequest, milliseconds: int) -> HttpResponse:
    """An async view that awaits, then answers; given many seconds, a long poll."""
    await asyncio.sleep(milliseconds / 1000)
    return HttpResponse("slept", content_type="text/plain")


async def first_event_then_silence() -> AsyncIterator[bytes]:
    yield b"event: hello\ndata: first\n\n"
    await asyncio.sleep(OPEN_SECONDS)


async def event_stream(request: HttpRequest) -> StreamingHttpResponse:
    """One server-sent event, then an open stream: Django's own response, under both handlers."""
    return StreamingHttpResponse(first_event_then_silence(), content_type="text/event-stream")


def add_views() -> None:
    """Add this benchmark's views to the benchmark project's URLconf, before its first request."""
    from benchsite import urls
    from django.urls import path

    urls.urlpatterns += [
        path("concurrency/sleep/<int:milliseconds>/", async_sleep),
        path(EVENTS_PATH.lstrip("/"), event_stream),
    ]


@functools.cache
def served_application() -> Any:
    sys.path.insert(0, str(PROJECT_DIR))
    import asgi  # bench/project/asgi.py: the handler BENCH_HANDLER names

    add_views()
    return asgi.application


def __getattr__(name: str) -> Any:
    # Built on uvicorn's getattr, not at import: running this file as a script builds nothing.
    if name == "application":
        return served_application()
    raise AttributeError(name)


# -- in-process: the wall time of a batch of sleeping async views -------------------------------


async def batch_seconds(app: Any, path: str, count: int) -> float:
    import inprocess

    started = time.perf_counter()
    await asyncio.gather(*(inprocess.one_request(app, path) for _ in range(count)))
    return time.perf_counter() - started


async def measure_batches(args: argparse.Namespace) -> dict[str, list[float]]:
    from django.core.asgi import get_asgi_application as stock_application

    from asgi_bridge import get_asgi_application as bridge_application

    add_views()
    apps = {"stock": stock_application(), "bridge": bridge_application()}
    path = sleep_path(args.sleep)
    for app in apps.values():
        await batch_seconds(app, sleep_path(0), args.concurrent)
    samples: dict[str, list[float]] = {name: [] for name in HANDLERS}
    for round_number in range(args.rounds):
        order = HANDLERS if round_number % 2 == 0 else HANDLERS[::-1]
        for name in order:
            seconds = await batch_seconds(apps[name], path, args.concurrent)
            samples[name].append(seconds)
            print(f"  in-process round {round_number + 1}, {LABELS[name]}: {seconds:.3f} s")
    return samples


def run_child(args: argparse.Namespace) -> None:
    """The in-process measurement, in a process of its own on one core, as a one-worker server."""
    os.sched_setaffinity(0, {args.core})
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()
    if args.loop == "uvloop":
        import uvloop

        samples = uvloop.run(measure_batches(args))
    else:
        samples = asyncio.run(measure_batches(args))
    Path(args.child).write_text(json.dumps(samples))


def run_in_process(args: argparse.Namespace, env: dict[str, str]) -> dict[str, list[float]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", result.name]
        subprocess.run(command, env=env, check=True)
        samples: dict[str, list[float]] = json.loads(Path(result.name).read_text())
    return samples


# -- on uvicorn: plain requests and first events while the crowd waits ---------------------------


@dataclass
class Crowded:
    """What one handler did on uvicorn while the long polls and the streams were open."""

    long_polls_sent: int
    streams_with_first_event: int
    first_events_s: float | None
    async_get_s: float | None
    sync_get_s: float | None
    errors: list[str]

    def describe(self, args: argparse.Namespace) -> str:
        return (
            f"{self.streams_with_first_event} of {args.streams} streams' first events in "
            f"{seconds_cell(self.first_events_s, args.give_up)} s, async GET in "
            f"{seconds_cell(self.async_get_s, args.give_up)} s, sync GET in "
            f"{seconds_cell(self.sync_get_s, args.give_up)} s"
            f"{'; errors: ' + '; '.join(self.errors[:3]) if self.errors else ''}"
        )


async def send_get(port: int, target: str, connecting: asyncio.Semaphore) -> Any:
    import http11

    async with connecting:
        reader, writer = await asyncio.open_connection(http11.HOST, port)
    writer.write(http11.build_request("GET", target, port, keep_alive=False))
    await writer.drain()
    return reader, writer


async def first_event(port: int, connecting: asyncio.Semaphore, writers: list[Any]) -> None:
    """Open an event stream and read until its first event; the stream stays open."""
    import http11

    reader, writer = await send_get(port, EVENTS_PATH, connecting)
    writers.append(writer)
    status, _ = http11.parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
    if status != 200:
        raise RuntimeError(f"{EVENTS_PATH} answered {status}")
    received = b""
    while b"data: first\n\n" not in received:
        piece = await reader.read(4096)
        if not piece:
            raise RuntimeError(f"{EVENTS_PATH} ended before its first event")
        received += piece


async def timed_get(port: int, path: str, give_up: float) -> float | None:
    """Seconds for a GET to be answered, None if it was not within ``give_up`` s."""
    import http11

    started = time.perf_counter()
    try:
        response = await http11.request_once(port, "GET", path, timeout=give_up)
    except asyncio.TimeoutError:
        return None
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}")
    return time.perf_counter() - started


async def crowd(port: int, args: argparse.Namespace) -> Crowded:
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)
    errors: list[str] = []
    polls = await asyncio.gather(
        *(send_get(port, sleep_path(OPEN_SECONDS), connecting) for _ in range(args.long_polls))
    )
    writers = [writer for _, writer in polls]
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        started = time.perf_counter()
        streams = [
            asyncio.create_task(first_event(port, connecting, writers)) for _ in range(args.streams)
        ]
        done, pending = await asyncio.wait(streams, timeout=args.give_up)
        first_events = time.perf_counter() - started if not pending else None
        for task in pending:
            task.cancel()
        errors += [repr(task.exception()) for task in done if task.exception()]
        received = sum(1 for task in done if not task.exception())
        async_get = await timed_get(port, "/async-hello/", args.give_up)
        sync_get = await timed_get(port, "/sync-hello/", args.give_up)
    finally:
        for writer in writers:
            writer.transport.abort()
    return Crowded(len(polls), received, first_events, async_get, sync_get, errors)


def run_on_uvicorn(env: dict[str, str], args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    import http11
    import servers

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "concurrency:application",
            "--app-dir", str(BENCH_DIR),
            "--host", http11.HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    uvicorn = servers.SERVERS["uvicorn"]
    spec = servers.ServerSpec(uvicorn.name, uvicorn.distribution, command, uvicorn.requirement)
    results: dict[str, Any] = {}
    for name in HANDLERS:
        with servers.running_server(spec, name, env, logs) as server:
            results[name] = asyncio.run(crowd(server.port, args))
        print(f"  uvicorn, {LABELS[name]}: {results[name].describe(args)}", flush=True)
    return results


# -- the report ---------------------------------------------------------------------------------


def seconds_cell(seconds: float | None, give_up: float) -> str:
    return f"> {give_up:g}" if seconds is None else f"{seconds:.3f}"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_batches(samples: dict[str, list[float]], args: argparse.Namespace) -> None:
    stock, bridge = (statistics.median(samples[name]) for name in HANDLERS)
    ratio = bridge / stock
    print(
        f"in-process, core {args.core}, {args.loop}: {args.concurrent} concurrent async views "
        f"awaiting asyncio.sleep({args.sleep:g}), default middleware; median of {args.rounds} "
        f"rounds (lower is better)"
    )
    print(f"{'measure':<28} {'stock':>9} {'asgi_bridge':>12} {'asgi_bridge/stock':>18}  target")
    print(
        f"{'wall time of the batch (s)':<28} {stock:>9.3f} {bridge:>12.3f} {ratio:>17.2f}x  "
        f"<= {BATCH_RATIO_TARGET:.2f}x  {verdict(ratio <= BATCH_RATIO_TARGET)}"
    )


def print_crowded(results: dict[str, Crowded], args: argparse.Namespace) -> None:
    print(
        f"uvicorn, one worker on core 0, client on core 1: {args.long_polls} async long polls "
        f"and {args.streams} event streams open; asgi_bridge THREADS={THREADS} "
        f"(seconds, lower is better; '> {args.give_up:g}': gave up waiting)"
    )
    print(f"{'measure':<36} {'stock':>9} {'asgi_bridge':>12} {'asgi_bridge/stock':>18}  target")
    rows = [
        ("every stream's first event", "first_events_s"),
        ("async GET answered", "async_get_s"),
        ("sync GET answered", "sync_get_s"),
    ]
    for label, field in rows:
        stock, bridge = (getattr(results[name], field) for name in HANDLERS)
        ratio = f"{bridge / stock:.2f}x" if stock and bridge else "n/a"
        met = bridge is not None and bridge <= SECONDS_TARGET
        print(
            f"{label:<36} {seconds_cell(stock, args.give_up):>9} "
            f"{seconds_cell(bridge, args.give_up):>12} {ratio:>18}  "
            f"<= {SECONDS_TARGET:g} s  {verdict(met)}"
        )
    for name in HANDLERS:
        result = results[name]
        if result.streams_with_first_event < args.streams or result.errors:
            print(f"  {LABELS[name]}: {result.describe(args)}")


# -- the command line ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("inprocess", "server"), help="run one half")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds per handler")
    parser.add_argument("--concurrent", type=int, default=200, help="in-process batch size")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each view awaits")
    parser.add_argument("--long-polls", type=int, default=150, help="long polls on uvicorn")
    parser.add_argument("--streams", type=int, default=100, help="event streams on uvicorn")
    parser.add_argument(
        "--give-up", type=float, default=10.0, help="seconds to wait for an answer on uvicorn"
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--core", type=int, default=0, help="the in-process run's one core")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH_DIR))
    if args.child:
        run_child(args)
        return 0
    import machine
    import run
    import servers
    import throughput

    usable_cores = run.check_cores()
    servers.ensure_installed(servers.SERVERS["uvicorn"])
    os.sched_setaffinity(0, {throughput.LOAD_CORE})
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    facts = machine.machine_facts(usable_cores, "python asyncio raw sockets (bench/concurrency.py)")
    for key, value in facts.items():
        if key == "packages":
            value = ", ".join(f"{package} {version}" for package, version in value.items())
        print(f"{key}: {value}")
    print(flush=True)
    machine.warn_if_busy("at start")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    logs = RESULTS_DIR / f"concurrency-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": shlex.join(sys.argv), "machine": facts}
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_concurrency_") as workdir:
        env = {**run.prepare_project(Path(workdir)), "BENCH_THREADS": str(THREADS)}
        if args.only != "server":
            results["in_process"] = run_in_process(args, env)
        if args.only != "inprocess":
            crowded = run_on_uvicorn(env, args, logs)
            results["uvicorn"] = {name: asdict(result) for name, result in crowded.items()}
    machine.warn_if_busy("at end")
    print()
    if "in_process" in results:
        print_batches(results["in_process"], args)
        print()
    if "uvicorn" in results:
        print_crowded(crowded, args)
        print()
    path = RESULTS_DIR / f"concurrency-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {path.relative_to(BENCH_DIR.parent)}; server logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
