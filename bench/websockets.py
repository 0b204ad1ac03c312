"""WebSockets on uvicorn: asgi_bridge's ``@websocket`` view against a Channels consumer.

Both serve the same echo, each the way its users deploy it, on uvicorn with one worker pinned to
core 0 (the client on core 1):

- asgi_bridge: ``benchsite.views.websocket_echo`` in the project's URLconf, its handshake through
  the project's default middleware (``project/asgi.py`` with ``BENCH_HANDLER=bridge``);
- Channels: an ``AsyncWebsocketConsumer`` behind
  ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))`` in a
  ``ProtocolTypeRouter`` (``project/channels_asgi.py``).

Measured: echo round trips per second over CONNECTIONS open sockets, handshakes per second
(connect, one echo, close), and the server's memory and threads with 1,000 and 10,000 idle
sockets open. Targets (issue): round trips >= 2x Channels, < 100 KiB per idle connection,
threads that do not grow with connections. It prints; nothing asserts.

    .venv/bin/python bench/websockets.py [--rounds 3] [--duration 5] [--idle 1000,10000]

The client speaks the protocol over raw asyncio sockets with prebuilt frames (no compression
offered), so that it stays far lighter than the server. Run as a script, ``bench/`` is first on
``sys.path`` and this module shadows the ``websockets`` library: nothing here imports it, and the
servers start with ``python -P`` from ``project/``, where uvicorn finds the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR / "project"
RESULTS_DIR = BENCH_DIR / "results"
# Contender -> (the ASGI module uvicorn serves from project/, its label).
CONTENDERS = {
    "bridge": ("asgi", "asgi_bridge"),
    "channels": ("channels_asgi", "Channels"),
}
WS_PATH = "/ws/echo/"
MESSAGE = b"hello, echo"
# A fixed mask key: the server must unmask, and nothing checks that keys vary.
MASK = b"\x12\x34\x56\x78"
# Handshakes in flight at once while opening idle connections, below uvicorn's listen backlog.
OPENING_AT_ONCE = 64
IDLE_SETTLE_SECONDS = 1.0
ROUND_TRIP_RATIO_TARGET = 2.0
IDLE_KIB_TARGET = 100.0
# Threads a server may start lazily (a pool, a loop's executor): growth above this, with
# thousands of sockets open, means threads grow with connections.
THREAD_GROWTH_ALLOWED = 8
# A client process this busy may be what limits the rate, not the server.
CLIENT_SATURATED_PERCENT = 90.0

T = TypeVar("T")


# -- the client: the protocol over raw sockets ---------------------------------------------------


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked) for a payload under 126 bytes."""
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


TEXT_FRAME = masked_frame(0x1, MESSAGE)
ECHOED_FRAME = bytes([0x81, len(MESSAGE)]) + MESSAGE  # the server's frame: unmasked
CLOSE_FRAME = masked_frame(0x8, (1000).to_bytes(2, "big"))


def handshake_request(port: int, path: str = WS_PATH) -> bytes:
    import http11

    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {http11.HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        # Both stacks check the origin; this one is the server's own host, allowed by both.
        f"Origin: http://{http11.HOST}:{port}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_socket(port: int) -> Socket:
    import http11

    reader, writer = await asyncio.open_connection(http11.HOST, port)
    writer.write(handshake_request(port))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        writer.transport.abort()
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        raise RuntimeError(f"handshake answered {status_line!r}")
    return reader, writer


async def echo_once(socket: Socket) -> None:
    reader, writer = socket
    writer.write(TEXT_FRAME)
    received = await reader.readexactly(len(ECHOED_FRAME))
    if received != ECHOED_FRAME:
        raise RuntimeError(f"expected the echo, received {received!r}")


async def close_socket(socket: Socket) -> None:
    """The closing handshake: our close frame, the server's, then the server hangs up."""
    reader, writer = socket
    writer.write(CLOSE_FRAME)
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(), timeout=5)  # the close frame, then EOF
    writer.transport.abort()


async def open_many(port: int, count: int) -> list[Socket]:
    opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def open_one() -> Socket:
        async with opening:
            return await open_socket(port)

    return list(await asyncio.gather(*(open_one() for _ in range(count))))


# -- what is measured ---------------------------------------------------------------------------


@dataclass
class Rate:
    """Completed operations over a timed window, with the CPU both sides used in it."""

    operations: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds

    @property
    def server_cpu_us(self) -> float:
        return 1e6 * self.server_cpu_s / self.operations if self.operations else float("nan")

    @property
    def server_busy_percent(self) -> float:
        return 100 * self.server_cpu_s / self.seconds

    @property
    def client_busy_percent(self) -> float:
        return 100 * self.client_cpu_s / self.seconds

    def describe(self, unit: str) -> str:
        return (
            f"{self.per_second:,.0f} {unit}/s, {self.server_cpu_us:.1f} µs server CPU each; "
            f"server {self.server_busy_percent:.0f}% busy, client {self.client_busy_percent:.0f}%"
            f"{'; errors: ' + '; '.join(self.errors[:3]) if self.errors else ''}"
        )


async def timed(
    pids: list[int], duration: float, workers: list[Coroutine[Any, Any, int]], running: list[bool]
) -> Rate:
    """Run the workers (each returns its count once ``running[0]`` turns False) for ``duration``."""
    import servers

    cpu_before, client_before = servers.cpu_seconds(pids), time.process_time()
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(worker) for worker in workers]
    await asyncio.sleep(duration)
    running[0] = False
    results = await asyncio.gather(*tasks, return_exceptions=True)
    seconds = time.perf_counter() - started
    server_cpu = servers.cpu_seconds(pids) - cpu_before
    client_cpu = time.process_time() - client_before
    counts = [result for result in results if isinstance(result, int)]
    errors = [repr(result) for result in results if isinstance(result, BaseException)]
    return Rate(sum(counts), seconds, server_cpu, client_cpu, errors)


async def echo_rate(port: int, pids: list[int], args: argparse.Namespace) -> Rate:
    """Round trips per second: every socket sends a message and awaits its echo, again and again."""
    sockets = await open_many(port, args.connections)
    running = [True]

    async def echo_loop(socket: Socket) -> int:
        count = 0
        while running[0]:
            await echo_once(socket)
            count += 1
        return count

    try:
        await timed(pids, args.warmup, [echo_loop(socket) for socket in sockets], running)
        running[0] = True
        return await timed(pids, args.duration, [echo_loop(socket) for socket in sockets], running)
    finally:
        await asyncio.gather(*(close_socket(socket) for socket in sockets))


async def handshake_rate(port: int, pids: list[int], args: argparse.Namespace) -> Rate:
    """Connections per second, each: the handshake, one echo, the closing handshake."""
    running = [True]

    async def connect_loop() -> int:
        count = 0
        while running[0]:
            socket = await open_socket(port)
            await echo_once(socket)
            await close_socket(socket)
            count += 1
        return count

    workers = [connect_loop() for _ in range(args.handshake_concurrency)]
    return await timed(pids, args.handshake_duration, workers, running)


@dataclass
class IdleFootprint:
    """The server's memory and threads before and with idle sockets open."""

    baseline_rss_kib: int
    baseline_threads: int
    open_sockets: list[int] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    opening_s: list[float] = field(default_factory=list)

    def kib_per_socket(self, index: int) -> float:
        return (self.rss_kib[index] - self.baseline_rss_kib) / self.open_sockets[index]


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def rss_and_threads(pid: int) -> tuple[int, int]:
    status = proc_status(pid)
    return int(status["VmRSS"].split()[0]), int(status["Threads"])


async def idle_footprint(port: int, pid: int, counts: list[int]) -> IdleFootprint:
    # Warm up first, at the same concurrency as the opening below, so that lazy imports, caches
    # and any pool's threads are in the baseline rather than charged to the sockets.
    for _ in range(3):
        warm = await open_many(port, OPENING_AT_ONCE)
        await asyncio.gather(*(echo_once(socket) for socket in warm))
        await asyncio.gather(*(close_socket(socket) for socket in warm))
    await asyncio.sleep(IDLE_SETTLE_SECONDS)
    footprint = IdleFootprint(*rss_and_threads(pid))
    sockets: list[Socket] = []
    try:
        for count in counts:
            started = time.perf_counter()
            sockets += await open_many(port, count - len(sockets))
            footprint.opening_s.append(time.perf_counter() - started)
            await asyncio.sleep(IDLE_SETTLE_SECONDS)
            rss, threads = rss_and_threads(pid)
            footprint.open_sockets.append(len(sockets))
            footprint.rss_kib.append(rss)
            footprint.threads.append(threads)
            print(
                f"    {len(sockets):,} idle sockets open (in {footprint.opening_s[-1]:.1f} s): "
                f"RSS {rss / 1024:.1f} MiB (baseline {footprint.baseline_rss_kib / 1024:.1f}), "
                f"{threads} threads (baseline {footprint.baseline_threads})",
                flush=True,
            )
    finally:
        for _, writer in sockets:
            writer.transport.abort()
    return footprint


# -- running it ----------------------------------------------------------------------------------


def run_client(coroutine: Coroutine[Any, Any, T]) -> T:
    import uvloop

    return uvloop.run(coroutine)


def server_spec(contender: str) -> Any:
    import servers

    return servers.uvicorn_project_spec(CONTENDERS[contender][0])


def measure_rates(
    env: dict[str, str], args: argparse.Namespace, logs: Path
) -> dict[str, dict[str, list[Rate]]]:
    """Both servers up at once (idle, one costs nothing), taking turns round by round."""
    import servers

    rates: dict[str, dict[str, list[Rate]]] = {"echo": {}, "handshake": {}}
    with (
        servers.running_server(server_spec("bridge"), "bridge", env, logs) as bridge,
        servers.running_server(server_spec("channels"), "channels", env, logs) as channels,
    ):
        running = {"bridge": bridge, "channels": channels}
        for server in running.values():
            run_client(check_echo(server.port))
        for kind, measure, unit in (
            ("echo", echo_rate, "round trips"),
            ("handshake", handshake_rate, "handshakes"),
        ):
            for contender in CONTENDERS:
                rates[kind][contender] = []
            for round_number in range(args.rounds):
                order = list(CONTENDERS) if round_number % 2 == 0 else list(CONTENDERS)[::-1]
                for contender in order:
                    server = running[contender]
                    rate = run_client(measure(server.port, server.measured_pids(), args))
                    rates[kind][contender].append(rate)
                    print(
                        f"  {kind} round {round_number + 1}, {CONTENDERS[contender][1]}: "
                        f"{rate.describe(unit)}",
                        flush=True,
                    )
    return rates


async def check_echo(port: int) -> None:
    socket = await open_socket(port)
    await echo_once(socket)
    await close_socket(socket)


def measure_idle(
    env: dict[str, str], args: argparse.Namespace, logs: Path
) -> dict[str, IdleFootprint]:
    """A fresh server per contender, so the baseline is not what the load phase left behind."""
    import servers

    footprints = {}
    for contender in CONTENDERS:
        print(f"  idle sockets, {CONTENDERS[contender][1]} (fresh server):", flush=True)
        with servers.running_server(server_spec(contender), contender, env, logs) as server:
            pid = server.measured_pids()[0]
            footprints[contender] = run_client(idle_footprint(server.port, pid, args.idle))
    return footprints


def raise_file_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by the servers) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the report ---------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def spread(values: list[float]) -> str:
    middle = statistics.median(values)
    return f"±{50 * (max(values) - min(values)) / middle:.0f}%" if middle else ""


def print_rates(rates: dict[str, dict[str, list[Rate]]], args: argparse.Namespace) -> None:
    print(
        f"uvicorn, one worker on core 0, client on core 1; median of {args.rounds} rounds "
        f"(±: half the min-max range); ratio asgi_bridge/Channels, above 1.00x favours asgi_bridge"
    )
    print(f"{'measure':<40} {'asgi_bridge':>16} {'Channels':>16} {'ratio':>8}")
    rows = [
        ("echo", f"echo round trips/s ({args.connections} sockets)", "per_second", False),
        ("echo", "  µs server CPU per round trip", "server_cpu_us", True),
        ("handshake", f"handshakes/s ({args.handshake_concurrency} at once)", "per_second", False),
        ("handshake", "  µs server CPU per handshake", "server_cpu_us", True),
    ]
    for kind, label, attribute, lower_is_better in rows:
        cells = []
        medians = []
        for contender in CONTENDERS:
            values = [getattr(rate, attribute) for rate in rates[kind][contender]]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:,.1f} {spread(values):>5}")
        bridge, channels = medians
        ratio = channels / bridge if lower_is_better else bridge / channels
        print(f"{label:<40} {cells[0]:>16} {cells[1]:>16} {ratio:>7.2f}x")
    for kind in rates:
        for contender in CONTENDERS:
            for rate in rates[kind][contender]:
                if rate.errors:
                    print(f"  {kind}, {CONTENDERS[contender][1]}: errors {rate.errors[:3]}")
                if (
                    rate.client_busy_percent > CLIENT_SATURATED_PERCENT
                    and rate.server_busy_percent < CLIENT_SATURATED_PERCENT
                ):
                    print(
                        f"  {kind}, {CONTENDERS[contender][1]}: the client was "
                        f"{rate.client_busy_percent:.0f}% busy and the server "
                        f"{rate.server_busy_percent:.0f}%: the client may be the limit"
                    )


def print_idle(footprints: dict[str, IdleFootprint]) -> None:
    print("idle sockets (fresh server each): server VmRSS growth per socket, and its threads")
    print(f"{'measure':<40} {'asgi_bridge':>16} {'Channels':>16} {'ratio':>8}")
    bridge, channels = footprints["bridge"], footprints["channels"]
    for index, count in enumerate(bridge.open_sockets):
        per_socket = [each.kib_per_socket(index) for each in (bridge, channels)]
        ratio = per_socket[0] / per_socket[1] if per_socket[1] > 0 else float("nan")
        print(
            f"{f'KiB per idle socket, {count:,} open':<40} {per_socket[0]:>16.1f} "
            f"{per_socket[1]:>16.1f} {ratio:>7.2f}x"
        )
    threads = [f"{each.baseline_threads} -> {max(each.threads)}" for each in (bridge, channels)]
    label = f"threads, before -> {max(bridge.open_sockets):,} open"
    print(f"{label:<40} {threads[0]:>16} {threads[1]:>16}")
    print("  (memory ratio: asgi_bridge/Channels, below 1.00x means asgi_bridge uses less)")


def print_targets(
    rates: dict[str, dict[str, list[Rate]]] | None, footprints: dict[str, IdleFootprint] | None
) -> None:
    print("targets (issue), asgi_bridge on uvicorn:")
    if rates:
        medians = {
            contender: statistics.median(rate.per_second for rate in rates["echo"][contender])
            for contender in CONTENDERS
        }
        echoes = rates["echo"]
        by_round = [
            bridge.per_second / channels.per_second
            for bridge, channels in zip(echoes["bridge"], echoes["channels"], strict=True)
        ]
        ratio = medians["bridge"] / medians["channels"]
        met_rounds = sum(each >= ROUND_TRIP_RATIO_TARGET for each in by_round)
        print(
            f"  echo round trips >= {ROUND_TRIP_RATIO_TARGET:.0f}x Channels: {ratio:.2f}x  "
            f"{verdict(ratio >= ROUND_TRIP_RATIO_TARGET)} (by round: "
            f"{', '.join(f'{each:.2f}x' for each in by_round)}; met in {met_rounds} of "
            f"{len(by_round)})"
        )
    if footprints:
        bridge = footprints["bridge"]
        last = len(bridge.open_sockets) - 1
        per_socket = bridge.kib_per_socket(last)
        print(
            f"  memory per idle connection < {IDLE_KIB_TARGET:.0f} KiB: {per_socket:.1f} KiB with "
            f"{bridge.open_sockets[last]:,} open  {verdict(per_socket < IDLE_KIB_TARGET)}"
        )
        growth = max(bridge.threads) - bridge.baseline_threads
        print(
            f"  threads do not grow per connection: {bridge.baseline_threads} before, "
            f"{', '.join(str(each) for each in bridge.threads)} with "
            f"{', '.join(f'{each:,}' for each in bridge.open_sockets)} open  "
            f"{verdict(growth <= THREAD_GROWTH_ALLOWED)} (allowed: +{THREAD_GROWTH_ALLOWED})"
        )


# -- the command line ---------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    values = sorted(int(each) for each in text.split(",") if each)
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("rates", "idle"), help="run one half")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of echoes a round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of echoes before")
    parser.add_argument("--connections", type=int, default=64, help="sockets echoing at once")
    parser.add_argument(
        "--handshake-duration", type=float, default=3.0, help="seconds of handshakes a round"
    )
    parser.add_argument(
        "--handshake-concurrency", type=int, default=8, help="handshakes in flight at once"
    )
    parser.add_argument(
        "--idle", type=counts, default=[1000, 10000], help="idle sockets to open, cumulative"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH_DIR))
    import machine
    import run
    import servers
    import throughput

    usable_cores = run.check_cores()
    servers.ensure_installed(servers.SERVERS["uvicorn"])
    os.sched_setaffinity(0, {throughput.LOAD_CORE})
    # The client holds one descriptor per socket, the server one more each: keep a margin.
    limit = raise_file_limit(max(args.idle) + 1000)
    if max(args.idle) + 500 > limit:
        print(f"open-file limit {limit}: idle counts above {limit - 500} left out")
        args.idle = [count for count in args.idle if count + 500 <= limit] or [limit - 500]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    facts = machine.machine_facts(
        usable_cores, "python asyncio (uvloop) raw sockets, prebuilt frames (bench/websockets.py)"
    )
    for package in ("channels", "websockets", "wsproto"):
        facts["packages"][package] = machine.installed_version(package)
    facts["uvicorn_ws"] = "--ws auto (websockets-sansio when websockets is installed)"
    facts["open_file_limit"] = limit
    machine.print_facts(facts)
    print(
        f"settings: rounds={args.rounds} duration={args.duration:g}s warmup={args.warmup:g}s "
        f"connections={args.connections} handshake_duration={args.handshake_duration:g}s "
        f"handshake_concurrency={args.handshake_concurrency} "
        f"idle={','.join(str(each) for each in args.idle)}"
    )
    print(flush=True)
    machine.warn_if_busy("at start")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    logs = RESULTS_DIR / f"websockets-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": shlex.join(sys.argv), "machine": facts}
    rates = footprints = None
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_websockets_") as workdir:
        env = run.prepare_project(Path(workdir))
        if args.only != "idle":
            rates = measure_rates(env, args, logs)
            results["rates"] = {
                kind: {name: [asdict(rate) for rate in each] for name, each in by_name.items()}
                for kind, by_name in rates.items()
            }
        if args.only != "rates":
            footprints = measure_idle(env, args, logs)
            results["idle"] = {name: asdict(each) for name, each in footprints.items()}
    machine.warn_if_busy("at end")
    print()
    if rates:
        print_rates(rates, args)
        print()
    if footprints:
        print_idle(footprints)
        print()
    print_targets(rates, footprints)
    print()
    path = RESULTS_DIR / f"websockets-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {path.relative_to(BENCH_DIR.parent)}; server logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
