"""Static files side by side: asgi_bridge's STATIC_FILES against Django, ServeStatic and WhiteNoise.

Issue 19's benchmark. Every contender serves the same STATIC_ROOT, made by ``collectstatic`` in a
temporary directory, with the project's default middleware behind it:

- asgi_bridge: ``asgi_bridge.get_asgi_application()`` with ``ASGI_BRIDGE["STATIC_FILES"]`` on;
- stock: Django's ``ASGIStaticFilesHandler`` around its ASGI application (what runserver uses);
- ServeStatic: ``servestatic.ServeStaticASGI`` around Django's ASGI application;
- WhiteNoise: its middleware in Django's WSGI application on gunicorn, one sync worker.

The ASGI contenders run on uvicorn, one worker on core 0 (``--granian`` adds asgi_bridge on
granian, which sends files with ``http.response.pathsend``); gunicorn's worker is on core 0 too,
the clients on core 1. Measured in one run: requests/s and server CPU per request for GET of a
2 KiB stylesheet and a 1 MiB script (wrk, 64 keep-alive connections), and the peak RSS growth for
64 concurrent downloads of a 10 MiB file. Medians over ``--rounds``. It prints; nothing asserts.

    .venv/bin/python bench/static.py [--quick] [--rounds 3] [--duration 10] [--granian]
                                     [--contenders bridge,stock,servestatic,whitenoise]
"""

import argparse
import asyncio
import hashlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import http11
import machine
import memory
import report
import run
import servers
import throughput

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
KIB = 1024
MIB = memory.MIB
STATIC_PREFIX = "/static/"  # the project's STATIC_URL
DOWNLOADS = 64
# "Flat" for issue 19: the bound run.py holds asgi_bridge's 64 FileResponse downloads to.
MEMORY_TARGET_MIB = 48.0
# Growth below this is within the allocator's noise; ratios count it as this much.
MEMORY_FLOOR_MIB = 1.0


@dataclass(frozen=True)
class StaticFile:
    """A file under the static source directory, collected into STATIC_ROOT, served at its URL."""

    name: str
    size: int
    label: str
    make: Callable[[int], bytes]

    @property
    def url(self) -> str:
        return STATIC_PREFIX + self.name


def stylesheet(size: int) -> bytes:
    rule = b".bench-rule-%04d { margin: 0 auto; color: #334455; }\n"
    text = b"".join(rule % index for index in range(size // 40 + 1))
    return text[:size]


def script(size: int) -> bytes:
    line = b"export function bench%06d(a, b) { return (a * 31 + b) ^ 0x5bd1e995; }\n"
    text = b"".join(line % index for index in range(size // 60 + 1))
    return text[:size]


SMALL = StaticFile("bench/site-2k.css", 2 * KIB, "GET 2 KiB .css", stylesheet)
LARGE = StaticFile("bench/vendor-1m.js", MIB, "GET 1 MiB .js", script)
HUGE = StaticFile("bench/video-10m.bin", 10 * MIB, "10 MiB .bin", os.urandom)
FILES = (SMALL, LARGE, HUGE)
ENDPOINTS = [
    throughput.Endpoint("static_2k", SMALL.label, "GET", SMALL.url, expected_size=SMALL.size),
    throughput.Endpoint("static_1m", LARGE.label, "GET", LARGE.url, expected_size=LARGE.size),
]
ENDPOINT_FILES = {"static_2k": SMALL, "static_1m": LARGE}


def granian_static_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
        "--working-dir", str(servers.PROJECT_DIR),
        "--host", http11.HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "static_asgi:application",
    ]  # fmt: skip


UVICORN = servers.uvicorn_project_spec("static_asgi")
GRANIAN = servers.ServerSpec(
    "granian", "granian", granian_static_command, servers.SERVERS["granian"].requirement
)


@dataclass(frozen=True)
class Contender:
    """A column: how it is served (server, BENCH_HANDLER, BENCH_STATIC) and its title."""

    key: str
    title: str
    spec: servers.ServerSpec
    handler: str
    static_setting: str = ""

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "BENCH_STATIC": self.static_setting}


CONTENDERS = {
    contender.key: contender
    for contender in (
        Contender("bridge", "asgi_bridge", UVICORN, "bridge", "bridge"),
        Contender("stock", "stock", UVICORN, "stock"),
        Contender("servestatic", "ServeStatic", UVICORN, "servestatic"),
        Contender("whitenoise", "WhiteNoise (wsgi)", servers.WSGI_SERVER, "wsgi", "whitenoise"),
        Contender("bridge_granian", "asgi_bridge (granian)", GRANIAN, "bridge", "bridge"),
    )
}
OURS = "bridge"
DEFAULT_CONTENDERS = ("bridge", "stock", "servestatic", "whitenoise")


def package(distribution: str, requirement: str) -> servers.ServerSpec:
    """A library a contender needs, in the shape servers.ensure_installed installs."""
    return servers.ServerSpec(distribution, distribution, lambda port: [], requirement)


# What the contenders need besides the project; keep in step with the bench extra.
PACKAGES = {
    "servestatic": package("servestatic", "servestatic>=4.0"),
    "whitenoise": package("whitenoise", "whitenoise>=6.0"),
}


@dataclass
class Plan:
    contenders: list[Contender]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s per measurement")
    parser.add_argument("--rounds", type=int, help="rounds, alternating order; median (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default 2, quick 1)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma list from {','.join(CONTENDERS)} (default: {','.join(DEFAULT_CONTENDERS)})",
    )
    parser.add_argument(
        "--granian", action="store_true", help="add the bridge_granian column (pathsend)"
    )
    parser.add_argument(
        "--only", choices=("throughput", "memory"), help="run one half of the benchmark"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    keys = [key.strip() for key in args.contenders.split(",") if key.strip()]
    if args.granian and "bridge_granian" not in keys:
        keys.append("bridge_granian")
    unknown = sorted(set(keys) - set(CONTENDERS))
    if unknown or not keys:
        parser.error(f"unknown contender(s) {unknown}; choose from {','.join(CONTENDERS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.contenders = [CONTENDERS[key] for key in dict.fromkeys(keys)]
    return args


def ensure_installed(contenders: list[Contender]) -> None:
    for spec in {contender.spec.name: contender.spec for contender in contenders}.values():
        servers.ensure_installed(spec)
    for key, spec in PACKAGES.items():
        if key in {contender.key for contender in contenders}:
            servers.ensure_installed(spec)


def prepare_static(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """Write the files into a STATICFILES_DIRS entry and collectstatic them into STATIC_ROOT."""
    source, root = workdir / "static-source", workdir / "static-root"
    for static_file in FILES:
        path = source / static_file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(static_file.make(static_file.size))
    env = {**env, "BENCH_STATIC_SOURCE": str(source), "BENCH_STATIC_ROOT": str(root)}
    subprocess.run(
        [sys.executable, str(servers.PROJECT_DIR / "manage.py"), "collectstatic", "--noinput"],
        env=env,
        cwd=servers.PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    return env


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def check_file(port: int, static_file: StaticFile, expected: str) -> str | None:
    """One GET with the body kept: status 200, exactly the file's size, exactly its bytes."""
    try:
        response = await http11.request_once(port, "GET", static_file.url)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    if response.status != 200:
        return f"status {response.status}"
    if response.body_size != static_file.size:
        return f"body of {response.body_size} bytes, expected {static_file.size}"
    if digest(response.body) != expected:
        return "body differs from the file in STATIC_ROOT"
    return None


def measure_throughput(
    server: servers.RunningServer,
    contender: Contender,
    endpoint: throughput.Endpoint,
    load: throughput.LoadGenerator,
    digests: dict[str, str],
    args: argparse.Namespace,
    round_index: int,
) -> dict[str, Any]:
    static_file = ENDPOINT_FILES[endpoint.key]
    problem = asyncio.run(check_file(server.port, static_file, digests[static_file.name]))
    result = run.measure_safely(load, server, endpoint, args, contender.key, round_index)
    if problem and "error" not in result:
        # run.measure_endpoint checked status and size; this adds the bytes. Either marks the cell.
        result["check"] = "; ".join(filter(None, (result.get("check"), problem)))
        print(f"    pre-check: {problem}", flush=True)
    return result


def run_throughput(
    plan: Plan,
    env: dict[str, str],
    logs: Path,
    load: throughput.LoadGenerator,
    digests: dict[str, str],
    args: argparse.Namespace,
) -> None:
    """Every contender up at once (the idle ones cost nothing), taking turns per file, the order
    reversed every other round; fresh servers each round."""
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {c.key: {} for c in plan.contenders}
    for round_index in range(args.rounds):
        order = plan.contenders if round_index % 2 == 0 else plan.contenders[::-1]
        with ExitStack() as stack:
            running: list[tuple[Contender, servers.RunningServer]] = []
            for contender in order:
                try:
                    server = stack.enter_context(
                        servers.running_server(
                            contender.spec, contender.handler, contender.env(env), logs
                        )
                    )
                except servers.ServerFailed as error:
                    print(f"  [{contender.key}] server failed: {error}", flush=True)
                    for endpoint in ENDPOINTS:
                        failed = {"error": f"server failed to start: {first_line(error)}"}
                        samples[contender.key].setdefault(endpoint.key, []).append(failed)
                    continue
                running.append((contender, server))
            for endpoint in ENDPOINTS:
                for contender, server in running:
                    result = measure_throughput(
                        server, contender, endpoint, load, digests, args, round_index
                    )
                    samples[contender.key].setdefault(endpoint.key, []).append(result)
    for key, per_endpoint in samples.items():
        plan.results[key]["throughput"] = {
            endpoint: run.summarize_rounds(rounds) for endpoint, rounds in per_endpoint.items()
        }


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


async def warm_up(port: int) -> None:
    # The static path once per file size, so that its code and any buffers count in the baseline.
    for _ in range(5):
        await http11.request_once(port, "GET", SMALL.url)
    for _ in range(2):
        await http11.request_once(port, "GET", LARGE.url)
    await memory.download_file(port, HUGE.url, HUGE.size)


async def download_many(port: int) -> list[str]:
    outcomes = await asyncio.gather(
        *(memory.download_file(port, HUGE.url, HUGE.size) for _ in range(DOWNLOADS))
    )
    return [outcome for outcome in outcomes if outcome]


DOWNLOAD_SCENARIO = memory.MemoryScenario(
    "download", f"{DOWNLOADS} x 10 MiB downloads", MEMORY_TARGET_MIB, download_many
)


def run_memory(plan: Plan, env: dict[str, str], logs: Path, args: argparse.Namespace) -> None:
    """A fresh server per contender and round: VmHWM only rises, so each starts clean."""
    samples: dict[str, list[dict[str, Any]]] = {c.key: [] for c in plan.contenders}
    for round_index in range(args.rounds):
        order = plan.contenders if round_index % 2 == 0 else plan.contenders[::-1]
        for contender in order:
            try:
                with servers.running_server(
                    contender.spec, contender.handler, contender.env(env), logs
                ) as server:
                    outcome = memory.measure(server, DOWNLOAD_SCENARIO, warm_up).as_dict()
                    if outcome["errors"]:
                        print(f"    server log tail:\n{run.indent(server.log_tail(15))}")
            except (servers.ServerFailed, OSError, asyncio.IncompleteReadError) as error:
                outcome = {"error": f"{type(error).__name__}: {first_line(error)}"}
            label = DOWNLOAD_SCENARIO.label
            if args.rounds > 1:
                label += f" (round {round_index + 1})"
            run.print_progress(contender.spec.name, contender.key, label, outcome, "MiB")
            samples[contender.key].append(outcome)
    for key, rounds in samples.items():
        plan.results[key]["memory"] = {"download": summarize_memory(rounds)}


def summarize_memory(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median growth over rounds, every round kept, every round's errors listed."""
    measured = sorted(
        (outcome for outcome in rounds if "error" not in outcome),
        key=lambda outcome: outcome["growth_mib"],
    )
    if not measured:
        return {**rounds[0], "rounds": rounds}
    summary = dict(measured[(len(measured) - 1) // 2])
    summary["growth_mib"] = statistics.median(outcome["growth_mib"] for outcome in measured)
    summary["errors"] = [error for outcome in measured for error in outcome["errors"]]
    summary["errors"] += [outcome["error"] for outcome in rounds if "error" in outcome]
    summary["peak_was_reset"] = all(outcome["peak_was_reset"] for outcome in measured)
    summary["range_mib"] = [measured[0]["growth_mib"], measured[-1]["growth_mib"]]
    summary["rounds"] = rounds
    return summary


# -- the table -----------------------------------------------------------------------------------


def memory_ratio(ours: float | None, theirs: float | None) -> float | None:
    """theirs/ours, so that above 1.00x asgi_bridge grew less; growth under 1 MiB counts as 1."""
    if ours is None or theirs is None:
        return None
    return max(theirs, MEMORY_FLOOR_MIB) / max(ours, MEMORY_FLOOR_MIB)


def render_table(plan: Plan) -> str:
    keys = [contender.key for contender in plan.contenders]
    titles = {contender.key: contender.title for contender in plan.contenders}
    # The other asgi_bridge column (on granian) is shown beside, not compared with.
    others = [key for key in keys if not key.startswith(OURS)] if OURS in keys else []
    header = (
        "scenario",
        "measure",
        *(titles[key] for key in keys),
        *(f"vs {titles[key]}" for key in others),
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for endpoint in ENDPOINTS:
        outcomes = {key: plan.results[key].get("throughput", {}).get(endpoint.key) for key in keys}
        if all(outcome is None for outcome in outcomes.values()):
            continue
        rates, cpus = {}, {}
        for key in keys:
            who = f"{endpoint.label}, {titles[key]}"
            rates[key], cpus[key] = report.throughput_cells(outcomes[key], notes, who)
        for measure, cells, higher_is_better in (
            ("req/s", rates, True),
            ("µs CPU/req", cpus, False),
        ):
            ratios = [
                report.oriented_ratio(cells[OURS][1], cells[key][1], higher_is_better)
                for key in others
            ]
            rows.append(
                (
                    endpoint.label if measure == "req/s" else "",
                    measure,
                    *(cells[key][0] for key in keys),
                    *(report.format_ratio(ratio) for ratio in ratios),
                )
            )
    growth: dict[str, tuple[str, float | None]] = {}
    for key in keys:
        outcome = plan.results[key].get("memory", {}).get("download")
        who = f"{DOWNLOAD_SCENARIO.label} (peak RSS growth), {titles[key]}"
        cell, value = report.memory_cell(outcome, notes, who)
        if value is not None and outcome is not None and len(outcome["rounds"]) > 1:
            low, high = outcome["range_mib"]
            cell = f"{cell} ({low:,.0f}..{high:,.0f})"
        growth[key] = (cell, value)
    if any(outcome[1] is not None or outcome[0] != "-" for outcome in growth.values()):
        rows.append(
            (
                DOWNLOAD_SCENARIO.label,
                "peak RSS growth",
                *(growth[key][0] for key in keys),
                *(
                    report.format_ratio(memory_ratio(growth[OURS][1], growth[key][1]))
                    for key in others
                ),
            )
        )
    numbers = set(range(2, len(header)))
    return report.format_table(header, rows, numbers) + "".join(f"\n  {n}" for n in notes)


def render_targets(plan: Plan) -> str:
    """Issue 19's done-when, for information: faster than stock and ServeStatic on both files
    (by req/s and by CPU, with the ratio in each round), and flat memory."""
    lines = ["issue 19 (info; ratios above 1.00x favour asgi_bridge):"]
    keys = {contender.key for contender in plan.contenders}
    if OURS not in keys:
        return lines[0] + " not judged, no asgi_bridge column in this run."
    server = {"handlers": plan.results}
    for theirs in ("stock", "servestatic"):
        if theirs not in keys:
            continue
        for endpoint in ENDPOINTS:
            cells = []
            for metric, label in ((report.REQUESTS, "req/s"), (report.CPU, "CPU")):
                mine = report.throughput_of(server, OURS, endpoint.key)
                other = report.throughput_of(server, theirs, endpoint.key)
                ratio = None
                if mine and other and "error" not in mine and "error" not in other:
                    ratio = report.oriented_ratio(
                        mine.get(metric), other.get(metric), metric == report.REQUESTS
                    )
                per_round = report.paired_ratios(server, endpoint.key, OURS, theirs, metric)
                met = "" if ratio is None else ("met" if ratio > 1.0 else "not met")
                rounds = ""
                if per_round:
                    wins = sum(each > 1.0 for each in per_round)
                    listed = ", ".join(report.format_ratio(each) for each in per_round)
                    rounds = f" (rounds: {listed}; ahead in {wins} of {len(per_round)})"
                cells.append(f"{label} {report.format_ratio(ratio)} {met}{rounds}")
            title = CONTENDERS[theirs].title
            lines.append(f"  faster than {title}, {endpoint.label}: " + "; ".join(cells))
    outcome = plan.results[OURS].get("memory", {}).get("download")
    if outcome and "error" not in outcome:
        grown = outcome["growth_mib"]
        met = "met" if grown <= MEMORY_TARGET_MIB and not outcome["errors"] else "not met"
        lines.append(
            f"  memory flat, {DOWNLOAD_SCENARIO.label}: asgi_bridge +{grown:.1f} MiB, needs "
            f"<= {MEMORY_TARGET_MIB:g} MiB: {met}"
        )
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------


def estimated_minutes(args: argparse.Namespace) -> float:
    seconds = 0.0
    count = len(args.contenders)
    if args.only != "memory":
        per_measurement = args.duration + args.warmup + 1.0
        seconds += args.rounds * count * (len(ENDPOINTS) * per_measurement + 2)
    if args.only != "throughput":
        seconds += args.rounds * count * 5  # a fresh server, warm-up and the downloads
    return seconds / 60


def stop_on_sigterm(signum: int, frame: object) -> None:
    # Turning SIGTERM into SystemExit runs the finally blocks that stop the servers.
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    command = shlex.join([sys.executable, *sys.argv])
    usable_cores = run.check_cores()
    ensure_installed(args.contenders)
    load = throughput.find_load_generator("auto", allow_install=os.geteuid() == 0)
    os.sched_setaffinity(0, {throughput.LOAD_CORE})
    facts = machine.machine_facts(usable_cores, load.description)
    for package in ("servestatic", "whitenoise"):
        facts["packages"][package] = machine.installed_version(package)
    print(f"command: {command}")
    machine.print_facts(facts)
    print(
        f"settings: contenders={','.join(c.key for c in args.contenders)} rounds={args.rounds} "
        f"duration={args.duration:g}s warmup={args.warmup:g}s connections={args.connections}"
        f"{' only=' + args.only if args.only else ''}"
    )
    print(flush=True)
    busy_at_start = machine.warn_if_busy("at start")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    logs = RESULTS_DIR / f"static-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"expected runtime: about {estimated_minutes(args):.0f} min; server logs in {logs}\n")
    plan = Plan(args.contenders)
    for contender in args.contenders:
        plan.results[contender.key] = {
            "title": contender.title,
            "handler": contender.handler,
            "server": f"{contender.spec.name} {contender.spec.version}",
        }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_static_") as workdir:
        env = prepare_static(Path(workdir), run.prepare_project(Path(workdir)))
        root = Path(env["BENCH_STATIC_ROOT"])
        digests = {f.name: digest((root / f.name).read_bytes()) for f in FILES}
        if args.only != "memory":
            run_throughput(plan, env, logs, load, digests, args)
        if args.only != "throughput":
            run_memory(plan, env, logs, args)
    elapsed = round(time.monotonic() - started, 1)
    busy_at_end = machine.warn_if_busy("at end")
    results = {
        "command": command,
        "machine": facts,
        "settings": {
            "contenders": [contender.key for contender in args.contenders],
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "only": args.only,
        },
        "files": {f.name: {"url": f.url, "size": f.size} for f in FILES},
        "handlers": plan.results,
        "other_cpu_use_percent": {"start": busy_at_start, "end": busy_at_end},
        "elapsed_s": elapsed,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"static-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(
        f"== static files: requests/s (higher is better), CPU µs/request (lower is better), "
        f"peak RSS growth (lower is better); medians of {args.rounds} round(s); "
        f"load generator: {load.description} =="
    )
    print("   ratio columns: asgi_bridge vs each other column, above 1.00x favours asgi_bridge")
    print("   (req/s: ours/theirs; CPU and memory: theirs/ours, growth under 1 MiB counted as 1)")
    print(render_table(plan))
    print()
    print(render_targets(plan))
    print()
    print(f"elapsed: {elapsed:.0f}s; raw results: {path.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        # The servers' context managers have already stopped them while this unwound.
        print("\ninterrupted: every server started has been stopped.", file=sys.stderr)
        sys.exit(130)
