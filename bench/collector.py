"""Garbage collections per request under load, and the CPU they take, by handler.

Under keep-alive load many requests are in flight at once, and the objects they hold outlive
the collector's young generations. This runs each handler on one core with wrk on the other,
asks the serving process for its collector totals before and after each burst (the project
counts them when BENCH_GC_STATS is set; see project/benchsite/gcstats.py), and prints, per
generation, collections per 1,000 requests and collector CPU per request, beside the server's
whole CPU per request. Contenders alternate burst by burst, all servers up at once, so a change
in the VM's speed hits them alike; cells are medians over the rounds.

    .venv/bin/python bench/collector.py [--endpoints sync_hello,orm] [--rounds 8]
                                        [--duration 3] [--contenders stock,bridge,...]

Contenders: stock, bridge, bridge_nofreeze (FREEZE_GC off) on uvicorn, the same three with a
granian_ prefix on granian; wsgi on gunicorn.
Nothing here asserts.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import machine
import run
import servers
import throughput

sys.path.insert(0, str(servers.PROJECT_DIR))
from benchsite.gcstats import SIGNAL

# name: (server, handler, extra environment)
CONTENDERS: dict[str, tuple[servers.ServerSpec, str, dict[str, str]]] = {
    "stock": (servers.SERVERS["uvicorn"], "stock", {}),
    "bridge": (servers.SERVERS["uvicorn"], "bridge", {}),
    "bridge_nofreeze": (servers.SERVERS["uvicorn"], "bridge", {"BENCH_FREEZE_GC": "0"}),
    "wsgi": (servers.WSGI_SERVER, servers.WSGI_HANDLER, {}),
    "granian_stock": (servers.SERVERS["granian"], "stock", {}),
    "granian_bridge": (servers.SERVERS["granian"], "bridge", {}),
    "granian_bridge_nofreeze": (servers.SERVERS["granian"], "bridge", {"BENCH_FREEZE_GC": "0"}),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default="sync_hello,orm")
    parser.add_argument("--contenders", default="bridge,bridge_nofreeze,wsgi")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per burst")
    parser.add_argument("--connections", type=int, default=64)
    return parser.parse_args(argv)


def read_totals(server: servers.RunningServer, prefix: str) -> dict[str, Any]:
    """Ask the serving process for its totals, and wait for the file it writes."""
    pid = server.measured_pids()[-1]
    path = Path(f"{prefix}.{pid}")
    path.unlink(missing_ok=True)
    os.kill(pid, SIGNAL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.02)
    raise RuntimeError(f"{server.spec.name} ({server.handler}) wrote no collector totals")


def burst(
    load: throughput.LoadGenerator,
    server: servers.RunningServer,
    endpoint: throughput.Endpoint,
    args: argparse.Namespace,
    prefix: str,
) -> dict[str, Any]:
    """One burst of load: requests, server CPU and collector totals over it, per request."""
    pids = server.measured_pids()
    before, cpu_before = read_totals(server, prefix), servers.cpu_seconds(pids)
    result = load.run(server.port, endpoint, args.duration, args.connections)
    after, cpu_after = read_totals(server, prefix), servers.cpu_seconds(pids)
    if result.errors or not result.requests:
        raise RuntimeError(
            f"{server.spec.name} ({server.handler}) failed requests on {endpoint.path}"
        )
    requests = result.requests
    sample: dict[str, Any] = {
        "cpu_us": 1e6 * (cpu_after - cpu_before) / requests,
        "frozen": after["frozen"],
    }
    gc_us = 0.0
    for generation, (old, new) in enumerate(
        zip(before["generations"], after["generations"], strict=True)
    ):
        sample[f"gen{generation}_per_1000"] = 1000 * (new[0] - old[0]) / requests
        sample[f"gen{generation}_us"] = 1e6 * (new[1] - old[1]) / requests
        gc_us += sample[f"gen{generation}_us"]
    sample["gc_us"] = gc_us
    return sample


def print_table(endpoint: throughput.Endpoint, samples: dict[str, list[dict[str, Any]]]) -> None:
    columns = [
        ("gen0/1000", "gen0_per_1000"), ("gen1/1000", "gen1_per_1000"),
        ("gen2/1000", "gen2_per_1000"), ("gen0 µs", "gen0_us"), ("gen1 µs", "gen1_us"),
        ("gen2 µs", "gen2_us"), ("GC µs", "gc_us"), ("CPU µs", "cpu_us"),
    ]  # fmt: skip
    bursts = len(next(iter(samples.values())))
    print(f"\n{endpoint.label} ({endpoint.path}); per request, medians of {bursts} bursts")
    print(f"{'contender':<24}" + "".join(f"{title:>11}" for title, _ in columns) + f"{'frozen':>9}")
    for name, rows in samples.items():
        cells = "".join(
            f"{statistics.median(row[key] for row in rows):>11.1f}" for _, key in columns
        )
        print(f"{name:<24}{cells}{rows[-1]['frozen']:>9}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    names = args.contenders.split(",")
    endpoints = [e for e in throughput.ENDPOINTS if e.key in args.endpoints.split(",")]
    load = throughput.find_load_generator("wrk", allow_install=False)
    print(
        f"garbage collection under {load.description} -c{args.connections}, "
        f"{args.duration:g} s bursts, {args.rounds} rounds; {machine.in_process_facts()}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="asgi_bridge_collector_") as workdir,
        ExitStack() as stack,
    ):
        prefix = str(Path(workdir) / "gc")
        env = {**run.prepare_project(Path(workdir)), "BENCH_GC_STATS": prefix}
        running = {}
        for name in names:
            spec, handler, extra = CONTENDERS[name]
            running[name] = stack.enter_context(
                servers.running_server(spec, handler, {**env, **extra}, Path(workdir))
            )
        for endpoint in endpoints:
            for server in running.values():
                load.run(server.port, endpoint, 2.0, args.connections)  # warm-up
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for round_index in range(args.rounds):
                order = names if round_index % 2 == 0 else names[::-1]
                for name in order:
                    samples[name].append(burst(load, running[name], endpoint, args, prefix))
            print_table(endpoint, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
