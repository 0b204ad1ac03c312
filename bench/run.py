"""Benchmark asgi_bridge against Django's stock ASGI handler, side by side, and print the ratios.

For each server (uvicorn by default, granian on request) and each handler it measures requests/s
and the server's CPU time per request for each endpoint under keep-alive load, then peak memory
growth for 64 parallel 10 MiB downloads and one 200 MiB upload. Django's WSGI handler on gunicorn
(one sync worker) runs the same endpoints as a third column, the baseline issue #3 names. Every
server runs one worker on core 0, every client on core 1.

    .venv/bin/python bench/run.py [--quick] [--servers uvicorn,granian] [--no-wsgi]
                                  [--duration S] [--connections N] [--handlers stock,bridge]
                                  [--rounds N] [--interleave] [--only throughput|memory]
                                  [--endpoints targets|sync_hello,orm,...]

Nothing here asserts: the targets are printed beside the numbers for information only.
"""

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import machine
import memory
import report
import servers
import throughput

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
HANDLERS = ("stock", "bridge")


@dataclass(frozen=True)
class Contender:
    """One column of the table: a handler on a server, and the slot its results go in."""

    key: str
    handler: str
    spec: servers.ServerSpec

    def measures(self, endpoint: throughput.Endpoint) -> bool:
        return self.handler != servers.WSGI_HANDLER or endpoint.under_wsgi


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (about 2 minutes)")
    parser.add_argument("--servers", default="uvicorn", help="comma list from: uvicorn,granian")
    parser.add_argument("--duration", type=float, help="seconds per endpoint (default 10, quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default 2, quick 1)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--handlers",
        default=",".join(HANDLERS),
        help="the two handlers to compare, baseline first; 'stock,stock' measures run-to-run noise",
    )
    parser.add_argument(
        "--wsgi",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure Django's WSGI handler on gunicorn, 1 sync worker (default: on)",
    )
    parser.add_argument(
        "--only", choices=("throughput", "memory"), help="run one half of the benchmark"
    )
    parser.add_argument(
        "--endpoints",
        help="comma list of the endpoints to measure (default: all of "
        f"{','.join(endpoint.key for endpoint in throughput.ENDPOINTS)}); "
        "'targets' measures those of issue #3",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the req/s pass, alternating order; median"
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="keep every server up and alternate them per endpoint (steadier on a busy machine)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk if installed (or installable as root), else the Python generator",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    args.handlers = tuple(name.strip() for name in args.handlers.split(","))
    unknown = [name for name in args.servers if name not in servers.SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {sorted(servers.SERVERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        args.endpoints = chosen_endpoints(args.endpoints)
    except ValueError as error:
        parser.error(str(error))
    if len(args.handlers) != 2 or not set(args.handlers) <= set(HANDLERS):
        parser.error(f"--handlers takes two of {HANDLERS}, e.g. stock,bridge")
    # The WSGI baseline is a throughput yardstick; the memory scenarios compare the ASGI handlers.
    args.wsgi = args.wsgi and args.only != "memory"
    return args


def chosen_endpoints(choice: str | None) -> list[throughput.Endpoint]:
    """The endpoints --endpoints names, in the benchmark's own order."""
    if choice is None:
        return list(throughput.ENDPOINTS)
    names = {name.strip() for name in choice.split(",") if name.strip()}
    if "targets" in names:
        names.remove("targets")
        names.update(target.endpoint for target in report.ISSUE_TARGETS)
    known = {endpoint.key for endpoint in throughput.ENDPOINTS}
    unknown = sorted(names - known)
    if unknown or not names:
        raise ValueError(f"unknown endpoint(s) {unknown}; choose from {sorted(known)} or targets")
    return [endpoint for endpoint in throughput.ENDPOINTS if endpoint.key in names]


def check_cores() -> int:
    cores = len(os.sched_getaffinity(0))
    needed = max(servers.SERVER_CORE, throughput.LOAD_CORE) + 1
    if cores < needed or shutil.which("taskset") is None:
        sys.exit(f"Needs taskset and cores {servers.SERVER_CORE} and {throughput.LOAD_CORE}.")
    return cores


def print_header(command: str, facts: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"command: {command}")
    machine.print_facts(facts)
    chosen = [endpoint.key for endpoint in args.endpoints]
    some = len(chosen) < len(throughput.ENDPOINTS)
    print(
        f"settings: servers={','.join(args.servers)} handlers={','.join(args.handlers)}"
        f"{' +wsgi (gunicorn)' if args.wsgi else ''} "
        f"duration={args.duration:g}s warmup={args.warmup:g}s connections={args.connections} "
        f"rounds={args.rounds}{' interleaved' if args.interleave else ''}"
        f"{' only=' + args.only if args.only else ''}"
        f"{' endpoints=' + ','.join(chosen) if some else ''}"
    )
    print(flush=True)


def write_download_file(path: Path) -> None:
    with path.open("wb") as target:
        for _ in range(memory.DOWNLOAD_SIZE // memory.MIB):
            target.write(os.urandom(memory.MIB))


def prepare_project(workdir: Path) -> dict[str, str]:
    """Create the database and the download file; return the environment servers run with."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchsite.settings",
        "BENCH_DB": str(workdir / "bench.sqlite3"),
        "BENCH_FILE": str(workdir / "download.bin"),
        "PYTHONUNBUFFERED": "1",
    }
    write_download_file(Path(env["BENCH_FILE"]))
    manage = [sys.executable, str(servers.PROJECT_DIR / "manage.py")]
    for step in (["migrate", "--noinput", "-v0"], ["seed_items"]):
        subprocess.run(
            manage + step, env=env, cwd=servers.PROJECT_DIR, check=True, capture_output=True
        )
    return env


def measure_endpoint(
    load: throughput.LoadGenerator,
    server: servers.RunningServer,
    endpoint: throughput.Endpoint,
    args: argparse.Namespace,
) -> dict[str, Any]:
    check = asyncio.run(throughput.check_endpoint(server.port, endpoint))
    if args.warmup > 0:
        load.run(server.port, endpoint, args.warmup, args.connections)
    # CPU per request is steadier than requests/s on a shared machine: time the server spends
    # waiting for a core does not count.
    pids = server.measured_pids()
    cpu_before = servers.cpu_seconds(pids)
    started = time.perf_counter()
    result = load.run(server.port, endpoint, args.duration, args.connections).as_dict()
    elapsed = time.perf_counter() - started
    cpu = servers.cpu_seconds(pids) - cpu_before
    result["server_cpu_s"] = round(cpu, 3)
    result["server_cpu_percent"] = round(100 * cpu / elapsed, 1)
    requests = result["requests"]
    result["cpu_us_per_request"] = round(1e6 * cpu / requests, 1) if requests else None
    result["check"] = check
    return result


def measure_safely(
    load: throughput.LoadGenerator,
    server: servers.RunningServer,
    endpoint: throughput.Endpoint,
    args: argparse.Namespace,
    key: str,
    round_index: int,
) -> dict[str, Any]:
    try:
        result = measure_endpoint(load, server, endpoint, args)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    label = endpoint.label if args.rounds == 1 else f"{endpoint.label} (round {round_index + 1})"
    print_progress(server.spec.name, key, label, result, "req/s")
    if result.get("errors") or "error" in result:
        print(f"    server log tail:\n{indent(server.log_tail(15))}", flush=True)
    return result


def summarize_rounds(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median requests/s and CPU per request over rounds, every round kept, errors totalled."""
    measured = sorted(
        (sample for sample in samples if "error" not in sample),
        key=lambda sample: sample["requests_per_second"],
    )
    if not measured:
        return {**samples[0], "rounds": samples}
    summary = dict(measured[(len(measured) - 1) // 2])
    summary["requests_per_second"] = statistics.median(
        sample["requests_per_second"] for sample in measured
    )
    cpu = [sample["cpu_us_per_request"] for sample in measured if sample["cpu_us_per_request"]]
    summary["cpu_us_per_request"] = statistics.median(cpu) if cpu else None
    for count in ("non_2xx", "socket_errors", "errors"):
        summary[count] = sum(sample[count] for sample in measured)
    summary["check"] = next((sample["check"] for sample in measured if sample["check"]), None)
    failed = len(samples) - len(measured)
    if failed:
        summary["check"] = f"{failed} of {len(samples)} rounds failed"
    summary["rounds"] = samples
    return summary


def run_throughput(
    contenders: list[Contender],
    env: dict[str, str],
    logs: Path,
    load: throughput.LoadGenerator,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Requests/s and CPU per request per column and endpoint, over rounds of alternating order.

    Sequential mode runs one contender's server at a time. --interleave keeps every server up
    (the idle ones cost nothing) and alternates them per endpoint, so a change in background
    load hits every column alike.
    """
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {c.key: {} for c in contenders}

    def record(key: str, endpoint: throughput.Endpoint, result: dict[str, Any]) -> None:
        samples[key].setdefault(endpoint.key, []).append(result)

    def record_failure(contender: Contender, error: servers.ServerFailed) -> None:
        print(f"  [{contender.spec.name}/{contender.key}] server failed: {error}", flush=True)
        for endpoint in args.endpoints:
            if contender.measures(endpoint):
                record(contender.key, endpoint, {"error": "server failed to start"})

    def start(contender: Contender) -> AbstractContextManager[servers.RunningServer]:
        return servers.running_server(contender.spec, contender.handler, env, logs)

    def measure(
        contender: Contender, server: servers.RunningServer, endpoint: throughput.Endpoint
    ) -> None:
        if contender.measures(endpoint):
            result = measure_safely(load, server, endpoint, args, contender.key, round_index)
            record(contender.key, endpoint, result)

    for round_index in range(args.rounds):
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        if args.interleave:
            with ExitStack() as stack:
                running: list[tuple[Contender, servers.RunningServer]] = []
                for contender in order:
                    try:
                        running.append((contender, stack.enter_context(start(contender))))
                    except servers.ServerFailed as error:
                        record_failure(contender, error)
                for endpoint in args.endpoints:
                    for contender, server in running:
                        measure(contender, server, endpoint)
            continue
        for contender in order:
            try:
                with start(contender) as server:
                    for endpoint in args.endpoints:
                        measure(contender, server, endpoint)
            except servers.ServerFailed as error:
                record_failure(contender, error)

    return {
        key: {endpoint: summarize_rounds(rounds) for endpoint, rounds in per_endpoint.items()}
        for key, per_endpoint in samples.items()
    }


def run_memory(
    spec: servers.ServerSpec, handler: str, key: str, env: dict[str, str], logs: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for scenario in memory.SCENARIOS:
        # A fresh server per scenario: VmHWM only ever rises, so it must start from a clean slate.
        try:
            with servers.running_server(spec, handler, env, logs) as server:
                results[scenario.key] = memory.measure(server, scenario).as_dict()
                if results[scenario.key]["errors"]:
                    print(f"    server log tail:\n{indent(server.log_tail(15))}", flush=True)
        except (servers.ServerFailed, OSError, asyncio.IncompleteReadError) as error:
            results[scenario.key] = {"error": f"{type(error).__name__}: {error}"}
        print_progress(spec.name, key, scenario.label, results[scenario.key], "MiB")
    return results


def indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def print_progress(
    server: str, handler: str, label: str, outcome: dict[str, Any], unit: str
) -> None:
    if "error" in outcome:
        summary = f"FAILED: {outcome['error'].splitlines()[0]}"
    elif unit == "req/s":
        cpu = outcome["cpu_us_per_request"]
        summary = (
            f"{outcome['requests_per_second']:,.0f} req/s, "
            f"{'n/a' if cpu is None else f'{cpu:,.0f}'} µs CPU/req "
            f"(server {outcome['server_cpu_percent']:.0f}% busy), {outcome['errors']} errors"
            f"{', pre-check: ' + outcome['check'] if outcome['check'] else ''}"
        )
    else:
        errors = "; ".join(outcome["errors"])
        summary = (
            f"+{outcome['growth_mib']} MiB (baseline {outcome['baseline_rss_mib']} MiB, "
            f"{outcome['duration_s']}s){', ERRORS: ' + errors if errors else ''}"
        )
    print(f"  [{server}/{handler}] {label}: {summary}", flush=True)


def column_keys(args: argparse.Namespace) -> report.Columns:
    # Comparing a handler with itself (an A/A run) needs two distinct result slots.
    first, second = args.handlers
    second_key = second if second != first else f"{second} again"
    return report.Columns(first, second_key, servers.WSGI_HANDLER if args.wsgi else None)


def contenders_for(spec: servers.ServerSpec, args: argparse.Namespace) -> list[Contender]:
    columns = column_keys(args)
    contenders = [
        Contender(key, handler, spec)
        for key, handler in zip((columns.base, columns.ours), args.handlers, strict=True)
    ]
    if columns.wsgi:
        contenders.append(Contender(columns.wsgi, servers.WSGI_HANDLER, servers.WSGI_SERVER))
    return contenders


def run_server_benchmarks(
    spec: servers.ServerSpec,
    env: dict[str, str],
    logs: Path,
    load: throughput.LoadGenerator,
    args: argparse.Namespace,
) -> dict[str, Any]:
    contenders = contenders_for(spec, args)
    runs: dict[str, Any] = {
        c.key: {"handler": c.handler, "server": f"{c.spec.name} {c.spec.version}"}
        for c in contenders
    }
    if args.only != "memory":
        for key, results in run_throughput(contenders, env, logs, load, args).items():
            runs[key]["throughput"] = results
    if args.only != "throughput":
        # Memory compares the two ASGI handlers; the WSGI baseline is a throughput yardstick.
        for contender in contenders:
            if contender.handler != servers.WSGI_HANDLER:
                runs[contender.key]["memory"] = run_memory(
                    spec, contender.handler, contender.key, env, logs
                )
    return {"version": spec.version, "handlers": runs}


def estimated_minutes(args: argparse.Namespace) -> float:
    seconds = 0.0
    if args.only != "memory":
        per_measurement = args.duration + args.warmup + 0.5
        measurements = 2 * len(args.endpoints)
        if args.wsgi:
            measurements += sum(endpoint.under_wsgi for endpoint in args.endpoints)
        seconds += args.rounds * (measurements * per_measurement + 3 * (2 + args.wsgi))
    if args.only != "throughput":
        seconds += 2 * 30  # two fresh servers, warm-ups and transfers; stock downloads are slowest
    return len(args.servers) * seconds / 60


def save_results(results: dict[str, Any], stamp: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turning SIGTERM into SystemExit runs the finally blocks that stop the servers.
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    command = shlex.join([sys.executable, *sys.argv])
    usable_cores = check_cores()
    for name in args.servers:
        servers.ensure_installed(servers.SERVERS[name])
    if args.wsgi:
        servers.ensure_installed(servers.WSGI_SERVER)
    load = throughput.find_load_generator(args.load_generator, allow_install=os.geteuid() == 0)
    # Clients (the fallback generator, the memory clients) share the load core with wrk.
    os.sched_setaffinity(0, {throughput.LOAD_CORE})
    facts = machine.machine_facts(usable_cores, load.description)
    print_header(command, facts, args)
    busy_at_start = machine.warn_if_busy("at start")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    logs = RESULTS_DIR / f"{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "machine": facts,
        "settings": {
            "servers": args.servers,
            "handlers": list(args.handlers),
            "wsgi": args.wsgi,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "interleave": args.interleave,
            "connections": args.connections,
            "only": args.only,
            "endpoints": [endpoint.key for endpoint in args.endpoints],
        },
        "servers": {},
    }
    print(f"expected runtime: about {estimated_minutes(args):.0f} min; server logs in {logs}\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_bench_") as workdir:
        env = prepare_project(Path(workdir))
        for name in args.servers:
            spec = servers.SERVERS[name]
            print(f"{name} {spec.version}:", flush=True)
            results["servers"][name] = run_server_benchmarks(spec, env, logs, load, args)
    results["finished_at"] = datetime.now().isoformat(timespec="seconds")
    results["other_cpu_use_percent"] = {
        "start": busy_at_start,
        "end": machine.warn_if_busy("at end"),
    }
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    path = save_results(results, stamp)

    print()
    for name, server in results["servers"].items():
        print(
            f"== {name} {server['version']}: requests/s (higher is better), CPU µs/request "
            f"(lower is better), peak RSS growth (lower is better); "
            f"load generator: {load.description} =="
        )
        print(report.render_server_table(server, column_keys(args)))
        print()
        if args.only != "memory":
            print(report.render_targets(name, server))
            print()
    print(
        f"elapsed: {results['elapsed_s']:.0f}s; raw results: {path.relative_to(BENCH_DIR.parent)}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        # The servers' context managers have already stopped them while this unwound.
        print("\ninterrupted: every server started has been stopped.", file=sys.stderr)
        sys.exit(130)
