"""CPU per request of the handlers alone: no server, no sockets, no load generator.

Drives the benchmark project's application directly, the way a server would (one request at a
time, ``http.disconnect`` once the response is complete), in one process pinned to one core, and
prints the CPU time (all threads, µs) per request of the stock handler, of asgi_bridge and of
Django's WSGI handler (called as a WSGI server calls it), with asgi_bridge's ratios to the other
two: their µs over asgi_bridge's, so above 1.00x favours asgi_bridge. The handlers run in
alternating rounds, so a burst of background load hits them alike; the minimum over the rounds
is the figure least disturbed by the rest of the machine.

    .venv/bin/python bench/inprocess.py [--paths /sync-hello/,/async-hello/] [--requests 2000]
                                        [--rounds 7] [--loop uvloop|asyncio] [--core 0]

It isolates what changes in asgi_bridge from what the server costs; bench/run.py remains the
measure of the targets. Nothing here asserts.
"""

import argparse
import asyncio
import io
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
# The WSGI handler is called as a WSGI server would call it, also without a server.
HANDLERS = ("stock", "bridge", "wsgi")

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


def wsgi_environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_USER_AGENT": "bench/inprocess",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }


def one_wsgi_request(app: Any, path: str) -> None:
    """One request as a WSGI server gives it: call, read the whole body, close."""
    statuses: list[str] = []
    body = app(wsgi_environ(path), lambda status, headers: statuses.append(status))
    try:
        b"".join(body)
    finally:
        body.close()
    if not statuses[0].startswith(("2", "3")):
        raise RuntimeError(f"{path} answered {statuses[0]}")


def wsgi_requests(app: Any, path: str, requests: int) -> None:
    for _ in range(requests):
        one_wsgi_request(app, path)


async def cpu_per_request(app: Any, name: str, path: str, requests: int) -> float:
    start = time.process_time()
    if name == "wsgi":
        # Off the event loop, as under a WSGI server: Django runs async views through
        # async_to_sync there, which refuses to run on a thread with a running loop.
        await asyncio.to_thread(wsgi_requests, app, path, requests)
    else:
        for _ in range(requests):
            await one_request(app, path)
    return (time.process_time() - start) / requests * 1e6


async def measure(args: argparse.Namespace) -> None:
    from django.core.asgi import get_asgi_application as stock_application
    from django.core.wsgi import get_wsgi_application

    from asgi_bridge import get_asgi_application as bridge_application

    apps: dict[str, Any] = {
        "stock": stock_application(),
        "bridge": bridge_application(),
        "wsgi": get_wsgi_application(),
    }
    print(
        f"{'path':<18} {'stock':>22} {'asgi_bridge':>22} {'wsgi (no server)':>22}"
        f" {'vs stock':>9} {'vs wsgi':>8}"
    )
    for path in args.paths.split(","):
        samples: dict[str, list[float]] = {name: [] for name in HANDLERS}
        for name in HANDLERS:
            for _ in range(args.warmup):
                await cpu_per_request(apps[name], name, path, 1)
        for round_number in range(args.rounds):
            order = HANDLERS if round_number % 2 == 0 else HANDLERS[::-1]
            for name in order:
                samples[name].append(await cpu_per_request(apps[name], name, path, args.requests))
        best = {name: min(values) for name, values in samples.items()}
        cells = [
            f"{best[name]:>8.1f} (median {statistics.median(samples[name]):>7.1f})"
            for name in HANDLERS
        ]
        print(
            f"{path:<18} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22}"
            f" {best['stock'] / best['bridge']:>8.2f}x {best['wsgi'] / best['bridge']:>7.2f}x",
            flush=True,
        )


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

    print(
        f"in-process, one core (core {args.core}), {args.loop}; {args.rounds} rounds of "
        f"{args.requests} requests per handler and path; min over rounds, median in brackets"
    )
    print(machine.in_process_facts())
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_inprocess_") as workdir:
        env = run.prepare_project(Path(workdir))
        child = subprocess.run([sys.executable, __file__, "--child", *argv], env=env)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
