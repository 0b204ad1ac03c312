"""Instructions per request of the handlers alone, counted by valgrind: the same on every run.

CPU time on a shared machine moves by 5 to 25% from run to run; the number of instructions a
request executes does not. This runs each handler (stock, asgi_bridge, Django's WSGI handler)
the way bench/inprocess.py does, one request at a time without a server, under valgrind's
cachegrind, once with only the warm-up requests and once with ``--requests`` more, and prints
the difference per request, with asgi_bridge's ratios to the other two (their count over
asgi_bridge's, so above 1.00x favours asgi_bridge).

    .venv/bin/python bench/instructions.py [--paths /sync-hello/,/orm/] [--requests 1000]

What it counts is user-space instructions of every thread, run one at a time on valgrind's
single virtual core. It does not see what the kernel does: system calls, context switches, the
GIL changing hands between the event loop and a request's thread. A thread hop costs a few
thousand instructions here and tens of microseconds of CPU on a real core, so this measures the
Python work of a request, and bench/inprocess.py and bench/run.py measure the rest. Nothing here
asserts. Needs ``valgrind`` on the PATH (``apt-get install valgrind``).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PATHS = "/async-hello/,/sync-hello/,/orm/"
HANDLERS = ("stock", "bridge", "wsgi")
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=DEFAULT_PATHS, help="comma list of GET paths")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per run")
    parser.add_argument("--warmup", type=int, default=200, help="requests before counting")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="valgrind runs at a time"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("HANDLER", "PATH", "REQUESTS"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def run_child(handler: str, path: str, requests: int, warmup: int) -> None:
    """Serve ``warmup + requests`` requests with one handler, then exit."""
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(BENCH_DIR))
    sys.path.insert(0, str(BENCH_DIR / "project"))
    import django

    django.setup()
    import inprocess

    total = warmup + requests
    if handler == "wsgi":
        from django.core.wsgi import get_wsgi_application

        inprocess.wsgi_requests(get_wsgi_application(), path, total)
        return
    if handler == "stock":
        from django.core.asgi import get_asgi_application
    else:
        from asgi_bridge import get_asgi_application
    app = get_asgi_application()

    async def serve() -> None:
        for _ in range(total):
            await inprocess.one_request(app, path)

    import uvloop

    uvloop.run(serve())


def instructions(env: dict[str, str], handler: str, path: str, requests: int, warmup: int) -> int:
    """User-space instructions of a whole child process serving that many counted requests."""
    command = [
        *VALGRIND,
        sys.executable,
        __file__,
        "--warmup",
        str(warmup),
        "--child",
        handler,
        path,
        str(requests),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    match = _REFS.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"{handler} {path} failed under valgrind:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_request(env: dict[str, str], args: argparse.Namespace) -> dict[tuple[str, str], float]:
    """Instructions per counted request, by (handler, path).

    The run with no counted requests holds start-up, imports and warm-up; the difference is
    what the counted requests alone executed. Counts do not depend on what else runs, so the
    runs go ``--jobs`` at a time.
    """
    runs = [
        (handler, path, requests)
        for path in args.paths.split(",")
        for handler in HANDLERS
        for requests in (0, args.requests)
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        counts = dict(
            zip(runs, pool.map(lambda run: instructions(env, *run, args.warmup), runs), strict=True)
        )
    return {
        (handler, path): (counts[handler, path, args.requests] - counts[handler, path, 0])
        / args.requests
        for handler, path, _ in runs
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        handler, path, requests = args.child
        run_child(handler, path, int(requests), args.warmup)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    sys.path.insert(0, str(BENCH_DIR))
    import machine
    import run

    print(
        f"instructions per request (valgrind cachegrind, user space, all threads); "
        f"{args.requests} requests after {args.warmup} of warm-up; thousands"
    )
    print(machine.in_process_facts())
    columns = ("stock", 9), ("asgi_bridge", 12), ("wsgi", 9), ("vs stock", 9), ("vs wsgi", 8)
    print(f"{'path':<18}" + "".join(f" {name:>{width}}" for name, width in columns))
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_instructions_") as workdir:
        # A fixed hash seed: dict and set layouts, and so the counts, repeat from run to run.
        env = {**run.prepare_project(Path(workdir)), "PYTHONHASHSEED": "0"}
        counts = per_request(env, args)
    for path in args.paths.split(","):
        stock, bridge, wsgi = (counts[handler, path] for handler in HANDLERS)
        print(
            f"{path:<18} {stock / 1000:>9.1f} {bridge / 1000:>12.1f} {wsgi / 1000:>9.1f}"
            f" {stock / bridge:>8.2f}x {wsgi / bridge:>7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
