"""Profile one endpoint of the benchmark project under load: where the server's CPU time goes.

Prepares the project and starts one server the way bench/run.py does (one worker on the server
core, wrk on the load core), then samples the worker with py-spy while wrk loads one endpoint,
and prints the share of samples per thread kind, the top functions by self and by inclusive
time, and a coarse breakdown by component (asgi_bridge, asgiref, Django, the server, asyncio).

    .venv/bin/python bench/profile_endpoint.py [--handler bridge|stock] [--server uvicorn|granian]
                                      [--path /sync-hello/] [--duration 10] [--connections 64]
                                      [--top 25] [--warmup 2]

py-spy records only the thread holding the GIL (--gil), so the samples show where the server's
Python CPU time goes, not where its threads wait. The raw stacks are kept in bench/results/.
"""

import argparse
import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import machine
import report
import run
import servers
import throughput

REPO_DIR = Path(__file__).resolve().parent.parent
STDLIB_DIR = sysconfig.get_paths()["stdlib"]
PY_SPY_REQUIREMENT = "py-spy>=0.3.14"
SAMPLE_RATE = 250  # per second; py-spy's default of 100 gives too few samples in a 10 s run
POOL_THREAD_PREFIX = "asgi_bridge-"  # asgi_bridge/threads.py names its pooled threads so

SERVER = "uvicorn / granian / httptools"
ASYNCIO = "asyncio / uvloop"
STDLIB = "python stdlib, other"
OTHER = "other (incl. bench/project views)"
NATIVE = "no Python frame (native or torn)"
OTHER_THREADS = "other threads"
MIDDLEWARE = "django: middleware (django/middleware, django/contrib)"
NO_FRAME = ("(no Python frame)", NATIVE)
# The innermost frame's file decides; the first matching prefix wins, so the specific Django
# packages come before "django/".
PACKAGE_COMPONENTS = (
    ("asgi_bridge/", "asgi_bridge"),
    ("asgiref/", "asgiref"),
    ("django/core/handlers/", "django: core/handlers"),
    ("django/middleware/", MIDDLEWARE),
    ("django/contrib/", MIDDLEWARE),
    ("django/http/", "django: http"),
    ("django/db/", "django: db"),
    ("django/", "django: other"),
    ("uvicorn/", SERVER),
    ("granian/", SERVER),
    ("httptools/", SERVER),
    ("uvloop/", ASYNCIO),
)
# Process and thread start-up frames, down to the call that runs the event loop or the thread's
# work: they sit under every sample that reaches them, so the inclusive table leaves them out.
START_UP_FRAMES = (
    "<frozen runpy>:",
    "click/",
    "multiprocessing/",
    "threading.py:Thread.",
    "asyncio/runners.py:",
    "asyncio/base_events.py:BaseEventLoop.run_forever",
    "asyncio/base_events.py:BaseEventLoop.run_until_complete",
    "uvicorn/__main__.py:",
    "uvicorn/main.py:",
    "uvicorn/_compat.py:",
    "uvicorn/server.py:Server.run",
    "granian/__main__.py:",
    "granian/cli.py:",
    "granian/server/",
)
COMPONENT_ORDER = (
    *dict.fromkeys(label for _, label in PACKAGE_COMPONENTS if label != ASYNCIO),
    ASYNCIO,
    STDLIB,
    OTHER,
    NATIVE,
)

THREAD = re.compile(r"thread \((?P<id>\w+)\)(?:: (?P<name>.*))?$")
FRAME = re.compile(r"(?P<function>.*) \((?P<path>.*?)(?::\d+)?\)$")
FAILED_READS = re.compile(r"Samples: \d+ Errors: (\d+)")


Function = tuple[str, str]  # "short/path.py:Class.method" and its component


@dataclass(frozen=True)
class Frame:
    function: str
    path: str  # as py-spy reports it: absolute with --full-filenames, or "<frozen ...>"

    @property
    def key(self) -> str:
        return f"{short_path(self.path)}:{self.function}"

    @property
    def component(self) -> str:
        return component_of_path(self.path)


@dataclass(frozen=True)
class Stack:
    """One line of py-spy's raw output: a thread's call stack, outermost first, and its count."""

    thread: str
    frames: tuple[Frame, ...]
    count: int


@dataclass(frozen=True)
class Recording:
    stacks: list[Stack]
    failed_reads: int  # py-spy's "Errors": samples it could not read from the running process


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", choices=run.HANDLERS, default="bridge")
    parser.add_argument("--server", choices=sorted(servers.SERVERS), default="uvicorn")
    parser.add_argument("--path", default="/sync-hello/", help="endpoint to load and profile")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of profiled load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before it")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--top", type=int, default=25, help="rows in the function tables")
    args = parser.parse_args(argv)
    # wrk and py-spy both take whole seconds.
    args.duration = max(1, round(args.duration))
    if not args.path.startswith("/"):
        parser.error("--path must start with /")
    return args


def endpoint_for(path: str) -> throughput.Endpoint:
    """The benchmark's endpoint for the path (so /echo/ is POSTed like run.py does), else a GET."""
    for endpoint in throughput.ENDPOINTS:
        if endpoint.path == path:
            return endpoint
    return throughput.Endpoint(path.strip("/") or "root", path, "GET", path)


def py_spy_executable() -> str | None:
    beside_python = Path(sysconfig.get_path("scripts")) / "py-spy"
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


def ensure_py_spy() -> str:
    """py-spy's path, installing it with pip into the running interpreter if missing."""
    executable = py_spy_executable()
    if executable:
        return executable
    print(f"py-spy not found; installing {PY_SPY_REQUIREMENT!r} with pip ...", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", PY_SPY_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True)
    executable = py_spy_executable()
    if result.returncode != 0 or executable is None:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        sys.exit(
            f"py-spy is needed and `{shlex.join(command)}` failed:\n{tail}\n"
            f"Install it (`pip install py-spy`) into this interpreter or put it on PATH."
        )
    return executable


def worker_pid(server: servers.RunningServer) -> int:
    pids = server.measured_pids()
    if len(pids) > 1:
        print(f"note: {len(pids)} serving processes {pids}; profiling only {pids[0]}")
    return pids[0]


def start_py_spy(executable: str, pid: int, duration: int, output: Path) -> subprocess.Popen[str]:
    """Start sampling and return once py-spy has attached, so the load that follows is sampled."""
    command = [
        executable, "record", "--pid", str(pid), "--duration", str(duration),
        "--rate", str(SAMPLE_RATE), "--format", "raw", "--threads", "--gil", "--nonblocking",
        # Full paths tell the standard library from site-packages; short_path trims them.
        "--full-filenames", "--output", str(output),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first_line = process.stdout.readline()  # "py-spy> Sampling process ..." once attached
    if "Sampling" not in first_line:
        process.wait()
        assert process.stderr is not None
        raise RuntimeError(
            f"py-spy did not start sampling pid {pid}: {first_line.strip()} "
            f"{process.stderr.read().strip()}\n(py-spy reads another process's memory: "
            "run as root, or allow ptrace with kernel.yama.ptrace_scope=0)"
        )
    return process


def finish_py_spy(process: subprocess.Popen[str], output: Path) -> Recording:
    stdout, stderr = process.communicate(timeout=60)
    if process.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed ({process.returncode}): {stderr.strip()}")
    summary = FAILED_READS.search(stdout)
    return Recording(parse_raw(output.read_text()), int(summary.group(1)) if summary else 0)


def parse_raw(text: str) -> list[Stack]:
    """py-spy's raw (collapsed) format: "thread (TID): NAME;frame;frame;... COUNT" per line."""
    stacks = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entries, count = line.rsplit(" ", 1)
        thread, *calls = entries.split(";")
        match = THREAD.match(thread)
        if match is None:  # a line without the thread part
            thread, calls = "?", [thread, *calls]
        else:
            thread = match["name"] or "(unnamed)"  # py-spy could not read the name
        frames = []
        for call in calls:
            frame = FRAME.match(call)
            frames.append(Frame(frame["function"], frame["path"]) if frame else Frame(call, ""))
        stacks.append(Stack(thread, tuple(frames), int(count)))
    return stacks


def short_path(path: str) -> str:
    """The path from the package root: django/http/response.py, asyncio/events.py, threading.py."""
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    for root in (STDLIB_DIR, str(REPO_DIR)):
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
    return path


def is_stdlib(path: str) -> bool:
    return path.startswith((STDLIB_DIR + "/", "<frozen ")) and "-packages/" not in path


def component_of_path(path: str) -> str:
    relative = short_path(path)
    if is_stdlib(path):
        return ASYNCIO if relative.startswith("asyncio/") else STDLIB
    for prefix, label in PACKAGE_COMPONENTS:
        if relative.startswith(prefix):
            return label
    return OTHER


def component_of(stack: Stack) -> str:
    return stack.frames[-1].component if stack.frames else NATIVE


def thread_kind(name: str) -> str:
    if name == "MainThread":
        return "MainThread (event loop)"
    if name.startswith(POOL_THREAD_PREFIX):
        return f"{POOL_THREAD_PREFIX}* (pooled request threads)"
    return OTHER_THREADS


def count_threads(stacks: Iterable[Stack]) -> tuple[Counter[str], Counter[str]]:
    """Samples per thread kind, and per thread-name pattern for the "other" kind."""
    kinds: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for stack in stacks:
        kind = thread_kind(stack.thread)
        kinds[kind] += stack.count
        if kind == OTHER_THREADS:
            others[re.sub(r"\d+", "*", stack.thread)] += stack.count
    return kinds, others


def count_functions(stacks: Iterable[Stack]) -> tuple[Counter[Function], Counter[Function]]:
    """Samples per function: innermost (self) and anywhere on the stack (inclusive)."""
    own: Counter[Function] = Counter()
    inclusive: Counter[Function] = Counter()
    for stack in stacks:
        functions = [(frame.key, frame.component) for frame in stack.frames] or [NO_FRAME]
        own[functions[-1]] += stack.count
        # A recursive function counts once per sample.
        for function in set(functions):
            inclusive[function] += stack.count
    return own, inclusive


def is_start_up(function: Function) -> bool:
    key, _ = function
    return key.startswith(START_UP_FRAMES)


def percent(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "n/a"


def render_threads(stacks: list[Stack], total: int) -> str:
    kinds, others = count_threads(stacks)
    rows = [(kind, str(count), percent(count, total)) for kind, count in kinds.most_common()]
    rows += [
        (f"  {name}", str(count), percent(count, total)) for name, count in others.most_common()
    ]
    return report.format_table(("thread", "samples", "share"), rows, {1, 2})


def render_functions(counts: Counter[Function], total: int, top: int, measure: str) -> str:
    rows = [
        (key, component, str(count), percent(count, total))
        for (key, component), count in counts.most_common(top)
    ]
    return report.format_table(("function", "component", "samples", measure), rows, {2, 3})


def render_components(stacks: list[Stack], total: int) -> str:
    counts: Counter[str] = Counter()
    for stack in stacks:
        counts[component_of(stack)] += stack.count
    rows = [(label, str(counts[label]), percent(counts[label], total)) for label in COMPONENT_ORDER]
    return report.format_table(("component (innermost frame)", "samples", "share"), rows, {1, 2})


def print_report(recording: Recording, args: argparse.Namespace) -> None:
    stacks = recording.stacks
    total = sum(stack.count for stack in stacks)
    print(
        f"py-spy: {total} samples of the thread holding the GIL ({SAMPLE_RATE}/s for "
        f"{args.duration}s); {recording.failed_reads} samples failed (--nonblocking reads a "
        "running process, so some stacks are torn or unreadable)"
    )
    print(
        "note: py-spy's sampling slows the server, so req/s here is lower than in bench/run.py;\n"
        "the percentages are the point, not the absolute numbers.\n"
    )
    if not total:
        print("no samples: the server never held the GIL while sampled.")
        return
    print("== samples per thread (the thread holding the GIL) ==")
    print(render_threads(stacks, total), end="\n\n")
    own, inclusive = count_functions(stacks)
    print(f"== top {args.top} functions by self time (innermost frame, line numbers merged) ==")
    print(render_functions(own, total, args.top, "self"), end="\n\n")
    inclusive = Counter(
        {function: n for function, n in inclusive.items() if not is_start_up(function)}
    )
    print(f"== top {args.top} functions by inclusive time (anywhere on the stack) ==")
    print(
        "(process and thread start-up frames left out: runpy, click, multiprocessing, threading's\n"
        " bootstrap, the server's start-up code and asyncio's Runner; they sit under every sample)"
    )
    print(render_functions(inclusive, total, args.top, "inclusive"), end="\n\n")
    print("== by component (file of the innermost frame) ==")
    print(render_components(stacks, total))


def print_header(command: str, spec: servers.ServerSpec, py_spy: str, load: str) -> None:
    facts = machine.machine_facts(len(os.sched_getaffinity(0)), load)
    print(f"command: {command}")
    for key in ("cpu", "python", "git_revision", "pinning"):
        print(f"{key}: {facts[key]}")
    packages = {name: facts["packages"][name] for name in ("django", "asgiref", "asgi-bridge")}
    packages[spec.name] = spec.version
    version = subprocess.run([py_spy, "--version"], capture_output=True, text=True).stdout
    packages["py-spy"] = version.split()[-1] if version else "unknown"
    print("packages: " + ", ".join(f"{name} {version}" for name, version in packages.items()))
    print(f"load generator: {load}", flush=True)


def profile(
    server: servers.RunningServer,
    endpoint: throughput.Endpoint,
    load: throughput.LoadGenerator,
    py_spy: str,
    raw_path: Path,
    args: argparse.Namespace,
) -> Recording:
    check = asyncio.run(throughput.check_endpoint(server.port, endpoint))
    if check:
        raise RuntimeError(f"{endpoint.method} {endpoint.path} failed its check: {check}")
    if args.warmup > 0:
        warmup = load.run(server.port, endpoint, args.warmup, args.connections)
        print(f"warm-up, not sampled: {warmup.requests_per_second:,.0f} req/s")
    pid = worker_pid(server)
    sampler = start_py_spy(py_spy, pid, args.duration, raw_path)
    try:
        cpu_before = servers.cpu_seconds([pid])
        started = time.perf_counter()
        result = load.run(server.port, endpoint, args.duration, args.connections)
        elapsed = time.perf_counter() - started
        cpu = servers.cpu_seconds([pid]) - cpu_before
    except BaseException:
        sampler.kill()
        sampler.wait()
        raise
    recording = finish_py_spy(sampler, raw_path)
    per_request = f"{1e6 * cpu / result.requests:,.0f}" if result.requests else "n/a"
    print(
        f"profiled run: {result.requests_per_second:,.0f} req/s, {per_request} µs server CPU/req "
        f"(server {100 * cpu / elapsed:.0f}% busy), {result.errors} errors"
    )
    if result.errors:
        print(f"    server log tail:\n{run.indent(server.log_tail(15))}")
    return recording


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, run.stop_on_sigterm)
    command = shlex.join([sys.executable, *sys.argv])
    run.check_cores()
    spec = servers.SERVERS[args.server]
    servers.ensure_installed(spec)
    py_spy = ensure_py_spy()
    load = throughput.find_load_generator("wrk", allow_install=os.geteuid() == 0)
    # wrk and py-spy share the load core; the server keeps its own.
    os.sched_setaffinity(0, {throughput.LOAD_CORE})
    print_header(command, spec, py_spy, load.description)
    machine.warn_if_busy("at start")
    endpoint = endpoint_for(args.path)
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    run.RESULTS_DIR.mkdir(exist_ok=True)
    raw_path = run.RESULTS_DIR / f"profile-{stamp}-{spec.name}-{args.handler}.txt"
    print(
        f"profiling {endpoint.method} {endpoint.path} on {spec.name} {spec.version} with the "
        f"{args.handler} handler: {args.connections} connections, {args.warmup:g}s warm-up, "
        f"{args.duration}s sampled\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_profile_") as workdir:
        env = run.prepare_project(Path(workdir))
        try:
            with servers.running_server(spec, args.handler, env, Path(workdir)) as server:
                recording = profile(server, endpoint, load, py_spy, raw_path, args)
        except (servers.ServerFailed, RuntimeError) as error:
            sys.exit(f"profiling failed: {error}")
    print(f"raw stacks: {raw_path.relative_to(REPO_DIR)} (py-spy's collapsed format)\n")
    print_report(recording, args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        # The server's context manager has already stopped it while this unwound.
        print("\ninterrupted: the server has been stopped.", file=sys.stderr)
        sys.exit(130)
