"""CPU per request of the two handlers alone: no server, no sockets, no load generator.

Drives the benchmark project's application directly, the way a server would (one request at a
time, ``http.disconnect`` once the response is complete), in one process pinned to one core, and
prints the CPU time (all threads) per request of the stock handler and of asgi_bridge, with their
ratio. The handlers run in alternating rounds, so a burst of background load hits both alike;
the minimum over the rounds is the figure least disturbed by the rest of the machine.

    .venv/bin/python bench/inprocess.py [--paths /sync-hello/,/async-hello/] [--requests 2000]
                                        [--rounds 7] [--loop uvloop|asyncio] [--core 0]

It isolates what changes in asgi_bridge from what the server costs; bench/run.py remains the
measure of the targets. Nothing here asserts.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PATHS = "/async-hello/,/sync-hello/,/json/,/orm/,/orm-persistent/,/stream-sync/"
HANDLERS = ("stock", "bridge")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=DEFAULT_PATHS, help="comma list of GET paths")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per handler, alternating")
    parser.add_argument("--warmup", type=int, default=300, help="requests before measuring")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--core", type=int, default=0, help="the one core the process runs on")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def http_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench/inprocess")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one_request(app: App, path: str) -> None:
    """One request as a keep-alive server gives it: the body, then a disconnect once answered."""
    answered = asyncio.Event()
    body_given = False

    async def receive() -> dict[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            raise RuntimeError(f"{path} answered {message['status']}")
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(http_scope(path), receive, send)


async def cpu_per_request(app: App, path: str, requests: int) -> float:
    start = time.process_time()
    for _ in range(requests):
        await one_request(app, path)
    return (time.process_time() - start) / requests * 1e6


async def measure(args: argparse.Namespace) -> None:
    from django.core.asgi import get_asgi_application as stock_application

    from asgi_bridge import get_asgi_application as bridge_application

    apps: dict[str, App] = {"stock": stock_application(), "bridge": bridge_application()}
    print(f"{'path':<18} {'stock µs CPU/req':>22} {'asgi_bridge':>22} {'stock/asgi_bridge':>18}")
    for path in args.paths.split(","):
        samples: dict[str, list[float]] = {name: [] for name in HANDLERS}
        for name in HANDLERS:
            for _ in range(args.warmup):
                await one_request(apps[name], path)
        for round_number in range(args.rounds):
            order = HANDLERS if round_number % 2 == 0 else HANDLERS[::-1]
            for name in order:
                samples[name].append(await cpu_per_request(apps[name], path, args.requests))
        cells = [
            f"{min(samples[name]):>8.1f} (median {statistics.median(samples[name]):>7.1f})"
            for name in HANDLERS
        ]
        ratio = min(samples["stock"]) / min(samples["bridge"])
        print(f"{path:<18} {cells[0]:>22} {cells[1]:>22} {ratio:>17.2f}x", flush=True)


def run_child(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.core})
    # The stock handler warns on every sync stream; the numbers are the point here.
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(BENCH_DIR / "project"))
    import django

    django.setup()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(measure(args))
    else:
        asyncio.run(measure(args))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    sys.path.insert(0, str(BENCH_DIR))
    import machine
    import run

    packages = ", ".join(
        f"{name} {machine.installed_version(name)}"
        for name in ("django", "asgiref", "asgi_bridge", "uvloop")
    )
    print(
        f"in-process, one core (core {args.core}), {args.loop}; {args.rounds} rounds of "
        f"{args.requests} requests per handler and path; min over rounds, median in brackets"
    )
    print(f"{machine.cpu_model()}; {packages}; git {machine.git_revision()}")
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_inprocess_") as workdir:
        env = run.prepare_project(Path(workdir))
        child = subprocess.run([sys.executable, __file__, "--child", *argv], env=env)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
