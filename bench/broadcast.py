"""Broadcast fan-out over two uvicorn processes: asgi_bridge's Redis backend against Channels.

One group of RECIPIENTS WebSockets (1,000 by default), half on each of two uvicorn processes,
both on one throwaway redis-server; a sync view on process A sends the broadcasts. Three
contenders, each the way its users write it, in one run:

- asgi_bridge: ``@websocket`` view ``benchsite.views.websocket_room`` (``ws.join(name)``), the
  sender ``broadcast_sync(group, text)`` in a loop, ``ASGI_BRIDGE["BROADCAST"]`` on Redis;
- Channels with ``channels_redis.core.RedisChannelLayer`` and with
  ``channels_redis.pubsub.RedisPubSubChannelLayer``: ``RoomConsumer`` in
  ``project/channels_asgi.py`` (``group_add`` on connect, each ``room.message`` forwarded), the
  sender ``async_to_sync(channel_layer.group_send)(group, event)`` in a loop.

Measured for each: a burst of BURST broadcasts sent as fast as the sender goes (deliveries per
second from the first send to the last receipt, deliveries lost, p50/p99 latency) and a paced
run at RATE broadcasts a second (latency without the queueing of a burst). Each broadcast
carries its send time from time.monotonic(), one clock for every process on a Linux machine.
It prints; nothing asserts.

    .venv/bin/python bench/broadcast.py [--rounds 3] [--quick] [--burst 200] [--rate 5]

The recipients are two client processes of this module, one per core, each reading one
server's sockets over raw asyncio sockets (the handshake, then only the headers of the server's
small unmasked frames), so that they cost far less than the servers; their CPU is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import http11
import machine
import run
import servers
import websockets
from servers import RunningServer

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
# Server A (which also runs the sender) and client 0 on core 0; server B and client 1 on core 1;
# redis-server and this process wherever the kernel puts them.
CORES = (0, 1)
ROOM_PATH = "/ws/room/{group}/"
CLOSE_FRAME = websockets.CLOSE_FRAME
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
JOIN_TIMEOUT = 30.0
# Deliveries stop coming for this long after the sender is done: the rest are lost.
QUIET_SECONDS = 3.0
GIVE_UP_SECONDS = 120.0
POLL_SECONDS = 0.02
WARMUP_TRIES = 5
# A client process this busy may be what limits the rate, not the servers.
CLIENT_SATURATED_PERCENT = 90.0
DELIVERY_RATIO_TARGET = 3.0


@dataclass(frozen=True)
class Contender:
    """One column: the ASGI module uvicorn serves, its settings and the sender's path."""

    label: str
    module: str
    env: dict[str, str]
    sender: str


CONTENDERS = {
    "bridge": Contender(
        "asgi_bridge",
        "asgi",
        {"BENCH_HANDLER": "bridge", "BENCH_BROADCAST": "redis"},
        "/broadcast/bridge/",
    ),
    "channels_core": Contender(
        "RedisChannelLayer",
        "channels_asgi",
        {"BENCH_CHANNEL_LAYER": "RedisChannelLayer"},
        "/broadcast/channels/",
    ),
    "channels_pubsub": Contender(
        "RedisPubSubChannelLayer",
        "channels_asgi",
        {"BENCH_CHANNEL_LAYER": "RedisPubSubChannelLayer"},
        "/broadcast/channels/",
    ),
}
MEMORY_BRIDGE = Contender(
    "asgi_bridge (memory)", "asgi", {"BENCH_HANDLER": "bridge"}, "/broadcast/bridge/"
)


# -- the receiving clients: one process per core ------------------------------------------------


@dataclass
class Listening:
    """What a client process counts as it receives: the frames of the broadcasts tagged ``tag``."""

    tag: bytes = b"-"
    count: int = 0
    last: float = 0.0


class Recipient(asyncio.Protocol):
    """One socket: the opening handshake, then the server's frames, split by their headers.

    Server frames are unmasked and, here, small and unfragmented: no payload is copied but the
    broadcast's own text, kept with its time of receipt to be read after the run.
    """

    def __init__(self, request: bytes, listening: Listening) -> None:
        self.request = request
        self.listening = listening
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buffer = b""
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received: list[tuple[float, bytes]] = []
        self.close_code: int | None = None
        self.gone = False

    @property
    def is_open(self) -> bool:
        return self.joined.done() and not self.gone and self.close_code is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(f"lost before joining: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101 "):
                self.fail(buffer.split(b"\r\n", 1)[0].decode("latin-1"))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        start, size = 0, len(buffer)
        while size - start >= 2:
            length = buffer[start + 1] & 0x7F
            header = 2
            if length >= 126:
                header = 4 if length == 126 else 10
                if size - start < header:
                    break
                length = int.from_bytes(buffer[start + 2 : start + header], "big")
            end = start + header + length
            if end > size:
                break
            opcode = buffer[start] & 0x0F
            if opcode == TEXT:
                self.text_received(buffer[start + header : end], now)
            elif opcode == PING:
                self.write(websockets.masked_frame(PONG, buffer[start + header : end]))
            elif opcode == CLOSE:
                self.close_received(buffer[start + header : end])
            start = end
        self.buffer = buffer[start:]

    def text_received(self, payload: bytes, now: float) -> None:
        if not self.joined.done():
            if payload == b"joined":
                self.joined.set_result(None)
            return
        self.received.append((now, payload))
        listening = self.listening
        if payload.startswith(listening.tag):
            listening.count += 1
            listening.last = now

    def close_received(self, payload: bytes) -> None:
        self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self.write(CLOSE_FRAME)
        if self.transport is not None:
            self.transport.close()

    def fail(self, status_line: str) -> None:
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"handshake answered {status_line!r}"))
        if self.transport is not None:
            self.transport.abort()

    def write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


class ClientProcess:
    """A receiving process: opens sockets and reports what they received, as its parent asks."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.listening = Listening()
        self.sockets: dict[str, list[Recipient]] = {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop.add_reader(
            self.connection.fileno(), lambda: commands.put_nowait(self.connection.recv())
        )
        # add_reader made the pipe non-blocking; an answer of a few MiB (the latencies) must wait
        # for the parent to read it rather than fail.
        os.set_blocking(self.connection.fileno(), True)
        while True:
            name, *arguments = await commands.get()
            if name == "stop":
                for sockets in self.sockets.values():
                    for socket in sockets:
                        if socket.transport is not None:
                            socket.transport.abort()
                self.connection.send(("ok", None))
                return
            try:
                answer = await getattr(self, name)(*arguments)
            except Exception as error:
                self.connection.send(("error", repr(error)))
            else:
                self.connection.send(("ok", answer))

    async def open(self, contender: str, port: int, path: str, count: int) -> dict[str, Any]:
        """Open sockets to ``port`` until ``count`` are open and joined (again after a close)."""
        loop = asyncio.get_running_loop()
        alive = [socket for socket in self.sockets.get(contender, []) if socket.is_open]
        opening = asyncio.Semaphore(websockets.OPENING_AT_ONCE)

        async def open_one() -> Recipient:
            async with opening:
                request = websockets.handshake_request(port, path)
                _, recipient = await loop.create_connection(
                    lambda: Recipient(request, self.listening), http11.HOST, port
                )
                await asyncio.wait_for(asyncio.shield(recipient.joined), JOIN_TIMEOUT)
                return recipient

        missing = count - len(alive)
        results = await asyncio.gather(
            *(open_one() for _ in range(missing)), return_exceptions=True
        )
        alive += [each for each in results if isinstance(each, Recipient)]
        self.sockets[contender] = alive
        errors = [repr(each) for each in results if isinstance(each, BaseException)]
        return {"open": len(alive), "opened": missing - len(errors), "errors": errors[:3]}

    async def expect(self, tag: str) -> None:
        """Count from now on the broadcasts tagged ``tag``; forget what came before."""
        self.listening = Listening(tag.encode("ascii") + b" ")
        for sockets in self.sockets.values():
            for socket in sockets:
                socket.listening = self.listening
                socket.received.clear()

    async def progress(self) -> tuple[int, float]:
        return self.listening.count, self.listening.last

    async def collect(self, contender: str) -> dict[str, Any]:
        """What the contender's sockets received of the tagged broadcasts, read from payloads."""
        tag = self.listening.tag
        latencies = array("d")
        duplicates = out_of_order = 0
        for socket in self.sockets.get(contender, []):
            previous = -1
            for received_at, payload in socket.received:
                if not payload.startswith(tag):
                    continue
                _, sequence_text, sent_text = payload.split(b" ")
                sequence = int(sequence_text)
                if sequence == previous:
                    duplicates += 1
                    continue
                if sequence < previous:
                    out_of_order += 1
                previous = sequence
                latencies.append(received_at - float(sent_text))
        closed = Counter(
            1006 if socket.close_code is None else socket.close_code
            for socket in self.sockets.get(contender, [])
            if not socket.is_open
        )
        return {
            "received": len(latencies),
            "latencies": latencies.tobytes(),
            "duplicates": duplicates,
            "out_of_order": out_of_order,
            "closed": dict(closed),
            "last": self.listening.last,
        }


def client_main(connection: Connection, core: int) -> None:
    os.sched_setaffinity(0, {core})
    websockets.run_client(ClientProcess(connection).serve())


class Clients:
    """The client processes (one per core, forked from this one) and the pipes that drive them."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        for core in CORES:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=client_main, args=(child_end, core), daemon=True)
            process.start()
            child_end.close()
            self.connections.append(parent_end)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def ask(self, commands: list[tuple[Any, ...]], timeout: float = GIVE_UP_SECONDS) -> list[Any]:
        """Send one command to each client (in order), then wait for both answers."""
        for connection, command in zip(self.connections, commands, strict=True):
            connection.send(command)
        answers = []
        for connection in self.connections:
            if not connection.poll(timeout):
                raise RuntimeError(f"a client process did not answer in {timeout:.0f}s")
            status, answer = connection.recv()
            if status != "ok":
                raise RuntimeError(f"a client process failed: {answer}")
            answers.append(answer)
        return answers

    def ask_each(self, *command: Any, timeout: float = GIVE_UP_SECONDS) -> list[Any]:
        return self.ask([command] * len(self.connections), timeout)

    def stop(self) -> None:
        with suppress(OSError, RuntimeError):
            self.ask_each("stop", timeout=10)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


# -- redis-server --------------------------------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{http11.HOST}:{self.port}/0"


def redis_answers(port: int) -> bool:
    async def ping() -> bool:
        reader, writer = await asyncio.open_connection(http11.HOST, port)
        try:
            writer.write(b"PING\r\n")
            return await asyncio.wait_for(reader.readline(), 2) == b"+PONG\r\n"
        finally:
            writer.close()

    try:
        return asyncio.run(ping())
    except (OSError, asyncio.TimeoutError):
        return False


@contextmanager
def running_redis(log_dir: Path) -> Iterator[RedisServer]:
    """A throwaway redis-server on a free port, nothing saved, stopped by its pid at the end."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("Needs redis-server (apt-get install redis-server).")
    port = servers.free_port()
    command = [
        executable, "--port", str(port), "--bind", http11.HOST,
        "--save", "", "--appendonly", "no", "--logfile", str(log_dir / f"redis-{port}.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    redis = RedisServer(port, process)
    try:
        deadline = time.monotonic() + servers.READY_TIMEOUT
        while not redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {log_dir}")
            time.sleep(0.1)
        yield redis
    finally:
        process.terminate()
        try:
            process.wait(timeout=servers.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- one contender's deployment and its measured runs --------------------------------------------


@dataclass
class Deployment:
    """A contender's servers (A, then B) and how many recipients each client opens on which."""

    key: str
    contender: Contender
    servers: list[RunningServer]
    recipients: int

    @property
    def group(self) -> str:
        return f"room-{self.key}"

    def client_targets(self) -> list[RunningServer]:
        """The server each client reads: its own core's, or A for a one-process deployment."""
        return [self.servers[index % len(self.servers)] for index in range(len(CORES))]

    def open_sockets(self, clients: Clients) -> list[dict[str, Any]]:
        path = ROOM_PATH.format(group=self.group)
        each = self.recipients // len(CORES)
        counts = [
            each + (1 if index < self.recipients % len(CORES) else 0) for index in range(len(CORES))
        ]
        commands = [
            ("open", self.key, server.port, path, count)
            for server, count in zip(self.client_targets(), counts, strict=True)
        ]
        return cast(list[dict[str, Any]], clients.ask(commands))


@dataclass
class Fanout:
    """One sender request's broadcasts and what the recipients made of them."""

    kind: str
    broadcasts: int
    recipients: int
    received: int
    seconds: float  # from the first send to the last receipt
    send_seconds: float  # the sender's loop
    window_seconds: float  # from the request to the last receipt: the CPU percentages' base
    latency_ms: dict[str, float]
    duplicates: int
    out_of_order: int
    closed: dict[str, int]
    cpu_seconds: dict[str, float]
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return self.broadcasts * self.recipients

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def delivered_per_second(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else float("nan")

    @property
    def sent_per_second(self) -> float:
        return self.broadcasts / self.send_seconds if self.send_seconds > 0 else float("nan")

    @property
    def server_cpu_us(self) -> float:
        server_cpu = sum(
            seconds for name, seconds in self.cpu_seconds.items() if name.startswith("server")
        )
        return 1e6 * server_cpu / self.received if self.received else float("nan")

    def busy_percent(self, name: str) -> float:
        return 100 * self.cpu_seconds.get(name, 0.0) / self.window_seconds

    def describe(self) -> str:
        busy = ", ".join(f"{name} {self.busy_percent(name):.0f}%" for name in self.cpu_seconds)
        return (
            f"{self.received:,} of {self.expected:,} delivered in {self.seconds:.2f} s "
            f"({self.delivered_per_second:,.0f}/s; sent {self.sent_per_second:,.0f}/s), "
            f"latency p50 {self.latency_ms['p50']:.1f} ms p99 {self.latency_ms['p99']:.1f} ms; "
            f"busy: {busy}"
            f"{'; closed ' + str(self.closed) if self.closed else ''}"
            f"{'; errors: ' + '; '.join(self.errors[:3]) if self.errors else ''}"
        )


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measured_pids(
    deployment: Deployment, clients: Clients, redis: RedisServer
) -> dict[str, list[int]]:
    pids = {
        f"server {'AB'[index]}": server.measured_pids()
        for index, server in enumerate(deployment.servers)
    }
    pids["redis"] = [redis.process.pid]
    pids.update({f"client {index}": [pid] for index, pid in enumerate(clients.pids)})
    return pids


def wait_for_deliveries(clients: Clients, expected: int, give_up_at: float) -> None:
    """Until every delivery came, or none came for QUIET_SECONDS, or it is time to give up."""
    seen, changed = -1, time.monotonic()
    while time.monotonic() < give_up_at:
        received = sum(count for count, _ in clients.ask_each("progress"))
        if received >= expected:
            return
        if received != seen:
            seen, changed = received, time.monotonic()
        elif time.monotonic() - changed > QUIET_SECONDS:
            return
        time.sleep(POLL_SECONDS)


def send_and_receive(
    deployment: Deployment,
    clients: Clients,
    redis: RedisServer,
    kind: str,
    tag: str,
    broadcasts: int,
    rate: float = 0.0,
) -> Fanout:
    """Reopen closed sockets, ask server A's sender for the broadcasts, count the deliveries."""
    errors = [error for each in deployment.open_sockets(clients) for error in each["errors"]]
    clients.ask_each("expect", tag)
    pids = measured_pids(deployment, clients, redis)
    cpu_before = {name: servers.cpu_seconds(each) for name, each in pids.items()}
    machine_before = machine.busy_cpu_seconds()
    requested = time.monotonic()
    query = urlencode({"group": deployment.group, "tag": tag, "count": broadcasts, "rate": rate})
    sender = deployment.servers[0]
    response = asyncio.run(
        http11.request_once(
            sender.port, "GET", f"{deployment.contender.sender}?{query}", timeout=GIVE_UP_SECONDS
        )
    )
    if response.status != 200:
        raise RuntimeError(
            f"the sender answered {response.status}: {response.body[:300]!r}\n{sender.log_tail()}"
        )
    sent = json.loads(response.body)
    expected = broadcasts * deployment.recipients
    wait_for_deliveries(clients, expected, requested + GIVE_UP_SECONDS)
    cpu = {name: servers.cpu_seconds(each) - cpu_before[name] for name, each in pids.items()}
    # What the rest of the machine used meanwhile (the runner, other people's work).
    cpu["others"] = machine.busy_cpu_seconds() - machine_before - sum(cpu.values())
    collected = clients.ask_each("collect", deployment.key)
    latencies = array("d")
    for each in collected:
        latencies.frombytes(each["latencies"])
    ordered = sorted(latencies)
    last = max((each["last"] for each in collected), default=0.0)
    closed: Counter[str] = Counter()
    for each in collected:
        closed.update({str(code): count for code, count in each["closed"].items()})
    return Fanout(
        kind=kind,
        broadcasts=broadcasts,
        recipients=deployment.recipients,
        received=len(ordered),
        seconds=last - sent["started"] if ordered else float("nan"),
        send_seconds=sent["finished"] - sent["started"],
        window_seconds=max(last, sent["finished"]) - requested,
        latency_ms={
            "p50": 1e3 * percentile(ordered, 0.50),
            "p99": 1e3 * percentile(ordered, 0.99),
            "max": 1e3 * ordered[-1] if ordered else float("nan"),
        },
        duplicates=sum(each["duplicates"] for each in collected),
        out_of_order=sum(each["out_of_order"] for each in collected),
        closed=dict(closed),
        cpu_seconds={name: round(seconds, 3) for name, seconds in cpu.items()},
        errors=errors,
    )


def warm_up(deployment: Deployment, clients: Clients, redis: RedisServer) -> int:
    """Open every socket, then broadcast once until every socket got it; how many tries."""
    for each in deployment.open_sockets(clients):
        if each["errors"]:
            raise RuntimeError(f"{deployment.contender.label}: sockets failed: {each['errors']}")
    for tries in range(1, WARMUP_TRIES + 1):
        warm = send_and_receive(deployment, clients, redis, "warm-up", f"w{tries}", 1)
        if warm.received == deployment.recipients:
            return tries
    raise RuntimeError(
        f"{deployment.contender.label}: after {WARMUP_TRIES} warm-up broadcasts, "
        f"{warm.received} of {deployment.recipients} sockets got the last one"
    )


def contender_for(key: str, args: argparse.Namespace) -> tuple[Contender, int]:
    """The contender and its number of server processes: the memory backend reaches one only."""
    if key == "bridge" and args.bridge_backend == "memory":
        return MEMORY_BRIDGE, 1
    return CONTENDERS[key], len(CORES)


@contextmanager
def deployed(
    key: str, env: dict[str, str], args: argparse.Namespace, logs: Path
) -> Iterator[Deployment]:
    """The contender's uvicorn processes: server A on core 0, server B on core 1."""
    contender, processes = contender_for(key, args)
    spec = servers.uvicorn_project_spec(contender.module)
    with ExitStack() as stack:
        running = [
            stack.enter_context(
                servers.running_server(spec, key, {**env, **contender.env}, logs, core)
            )
            for core in CORES[:processes]
        ]
        yield Deployment(key, contender, running, args.recipients)


Rounds = dict[str, list[dict[str, Fanout]]]


def measure(env: dict[str, str], args: argparse.Namespace, logs: Path) -> Rounds:
    """Every contender up at once (an idle one costs nothing), taking turns round by round."""
    rounds: Rounds = {key: [] for key in args.contenders}
    with ExitStack() as stack:
        # Forked first, so that they inherit no server's or redis-server's descriptors.
        clients = Clients()
        stack.callback(clients.stop)
        redis = stack.enter_context(running_redis(logs))
        env = {**env, "BENCH_REDIS_URL": redis.url}
        print(f"  redis-server {redis.url} (pid {redis.process.pid})", flush=True)
        deployments = {key: stack.enter_context(deployed(key, env, args, logs)) for key in rounds}
        for deployment in deployments.values():
            tries = warm_up(deployment, clients, redis)
            print(
                f"  {deployment.contender.label}: {deployment.recipients:,} sockets joined "
                f"{deployment.group} on {len(deployment.servers)} process(es) (ports "
                f"{', '.join(str(server.port) for server in deployment.servers)}); the warm-up "
                f"broadcast reached all of them (try {tries})",
                flush=True,
            )
        tags = iter(range(1, 1_000_000))
        for round_number in range(args.rounds):
            order = list(rounds) if round_number % 2 == 0 else list(rounds)[::-1]
            for key in order:
                deployment = deployments[key]
                burst = send_and_receive(
                    deployment, clients, redis, "burst", f"t{next(tags)}", args.burst
                )
                paced = send_and_receive(
                    deployment,
                    clients,
                    redis,
                    "paced",
                    f"t{next(tags)}",
                    round(args.rate * args.paced_seconds),
                    args.rate,
                )
                rounds[key].append({"burst": burst, "paced": paced})
                for fanout in (burst, paced):
                    print(
                        f"  round {round_number + 1}, {deployment.contender.label}, "
                        f"{fanout.kind}: {fanout.describe()}",
                        flush=True,
                    )
    return rounds


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    kind: str
    label: str
    value: Callable[[Fanout], float]
    better: str  # "higher", "lower", or "" for no ratio


def rows(args: argparse.Namespace) -> list[Row]:
    burst_expected = args.burst * args.recipients
    paced = round(args.rate * args.paced_seconds)
    burst_label = f"burst of {args.burst}: deliveries/s"
    paced_label = f"{args.rate:g}/s for {args.paced_seconds:g} s"
    return [
        Row("burst", burst_label, lambda r: r.delivered_per_second, "higher"),
        Row("burst", f"  lost (of {burst_expected:,})", lambda r: r.lost, ""),
        Row("burst", "  latency p50 ms", lambda r: r.latency_ms["p50"], "lower"),
        Row("burst", "  latency p99 ms", lambda r: r.latency_ms["p99"], "lower"),
        Row("burst", "  sender: broadcasts/s", lambda r: r.sent_per_second, "higher"),
        Row("burst", "  µs server CPU per delivery", lambda r: r.server_cpu_us, "lower"),
        Row("paced", f"{paced_label}: latency p50 ms", lambda r: r.latency_ms["p50"], "lower"),
        Row("paced", "  latency p99 ms", lambda r: r.latency_ms["p99"], "lower"),
        Row("paced", f"  lost (of {paced * args.recipients:,})", lambda r: r.lost, ""),
    ]  # fmt: skip


def busy_rows() -> list[Row]:
    clients = [f"client {index}" for index in range(len(CORES))]
    names = ["server A", "server B", "redis", *clients, "others"]
    return [Row("burst", f"  {name} %", busy_percent_of(name), "") for name in names]


def busy_percent_of(name: str) -> Callable[[Fanout], float]:
    return lambda fanout: fanout.busy_percent(name)


def median_of(runs: list[dict[str, Fanout]], row: Row) -> tuple[float, list[float]]:
    values = [row.value(each[row.kind]) for each in runs]
    return statistics.median(values), values


def faster_channels(rounds: Rounds) -> str | None:
    layers = [key for key in rounds if key.startswith("channels")]
    if not layers:
        return None
    return max(
        layers,
        key=lambda key: statistics.median(
            runs["burst"].delivered_per_second for runs in rounds[key]
        ),
    )


def print_table(rounds: Rounds, args: argparse.Namespace) -> None:
    keys = list(rounds)
    labels = [contender_for(key, args)[0].label for key in keys]
    faster = faster_channels(rounds)
    with_ratio = "bridge" in rounds and faster is not None
    widths = [max(16, len(label)) for label in labels]
    print(
        f"{args.recipients:,} recipients in one group on uvicorn, server A on core 0 (it also "
        f"sends), B on core 1; median of {args.rounds} rounds (±: half the min-max range)"
    )
    if with_ratio:
        print(
            f"ratio: asgi_bridge against the faster Channels layer by deliveries/s "
            f"({contender_for(cast(str, faster), args)[0].label}); above 1.00x favours asgi_bridge"
        )
    header = f"{'measure':<44} " + " ".join(
        f"{label:>{width}}" for label, width in zip(labels, widths, strict=True)
    )
    print(header + (f" {'ratio':>8}" if with_ratio else ""))
    for row in rows(args):
        print(table_line(rounds, row, widths, faster if with_ratio else None))
    print(
        "busy in the burst (CPU time over wall time, from the request to the last receipt; "
        "others: the rest of the machine, the runner included):"
    )
    for row in busy_rows():
        print(table_line(rounds, row, widths, None))
    print_notes(rounds, args)
    if with_ratio:
        by_round = [
            bridge["burst"].delivered_per_second / other["burst"].delivered_per_second
            for bridge, other in zip(rounds["bridge"], rounds[cast(str, faster)], strict=True)
        ]
        print(
            f"issue 18's target, for information: asgi_bridge deliveries/s >= "
            f"{DELIVERY_RATIO_TARGET:.0f}x the faster Channels layer; by round: "
            f"{', '.join(f'{each:.2f}x' for each in by_round)}"
        )


def table_line(rounds: Rounds, row: Row, widths: list[int], faster: str | None) -> str:
    """The row's median for each contender, and asgi_bridge's ratio to ``faster`` if given."""
    cells, medians = [], {}
    for key, width in zip(rounds, widths, strict=True):
        middle, values = median_of(rounds[key], row)
        medians[key] = middle
        text = f"{middle:,.0f}" if abs(middle) >= 100 or not row.better else f"{middle:,.1f}"
        cells.append(f"{' '.join(filter(None, (text, spread(values)))):>{width}}")
    line = f"{row.label:<44} " + " ".join(cells)
    if faster is not None and row.better:
        bridge, other = medians["bridge"], medians[faster]
        ratio = bridge / other if row.better == "higher" else other / bridge
        line += f" {ratio:>7.2f}x"
    return line


def spread(values: list[float]) -> str:
    return websockets.spread(values) if len(values) > 1 else ""


def print_notes(rounds: Rounds, args: argparse.Namespace) -> None:
    for key, runs in rounds.items():
        label = contender_for(key, args)[0].label
        for number, each in enumerate(runs, start=1):
            for fanout in each.values():
                where = f"  {label}, round {number}, {fanout.kind}"
                if fanout.closed:
                    print(f"{where}: sockets closed by the server (code: count) {fanout.closed}")
                if fanout.duplicates or fanout.out_of_order:
                    print(
                        f"{where}: {fanout.duplicates} duplicate and {fanout.out_of_order} "
                        "out-of-order deliveries"
                    )
                if fanout.errors:
                    print(f"{where}: errors {fanout.errors[:3]}")
                busiest = max(fanout.busy_percent(f"client {index}") for index in range(len(CORES)))
                if busiest > CLIENT_SATURATED_PERCENT:
                    print(
                        f"{where}: a client process was {busiest:.0f}% busy: it may be what "
                        "limited the rate"
                    )


# -- the command line ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma list from {','.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument("--rounds", type=int, help="rounds per contender (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, short runs")
    parser.add_argument(
        "--recipients", type=int, default=1000, help="sockets, half on each process"
    )
    parser.add_argument("--burst", type=int, help="broadcasts in the burst (default 200, quick 50)")
    parser.add_argument("--rate", type=float, default=5.0, help="broadcasts/s of the paced run")
    parser.add_argument(
        "--paced-seconds", type=float, help="length of the paced run (default 4, quick 2)"
    )
    parser.add_argument(
        "--bridge-backend",
        choices=("redis", "memory"),
        default="redis",
        help="memory: asgi_bridge's in-process groups, every recipient on server A (for debugging)",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.burst = args.burst or (50 if args.quick else 200)
    args.paced_seconds = args.paced_seconds or (2.0 if args.quick else 4.0)
    args.contenders = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(args.contenders) - set(CONTENDERS))
    if unknown or not args.contenders:
        parser.error(f"unknown contender(s) {unknown}; choose from {','.join(CONTENDERS)}")
    if args.rounds < 1 or args.burst < 1 or args.recipients < len(CORES) or args.rate <= 0:
        parser.error("--rounds, --burst and --rate must be positive, --recipients at least 2")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    usable_cores = run.check_cores()
    servers.ensure_installed(servers.SERVERS["uvicorn"])
    limit = websockets.raise_file_limit(2 * args.recipients * len(args.contenders) + 1000)
    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    facts = machine.machine_facts(
        usable_cores,
        "python asyncio (uvloop) raw sockets, frame headers only, 2 processes (bench/broadcast.py)",
    )
    for package in ("channels", "channels-redis", "redis", "websockets"):
        facts["packages"][package] = machine.installed_version(package)
    facts["redis_server"] = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.strip()
    facts["pinning"] = (
        "server A and client 0 on core 0, server B and client 1 on core 1; redis-server and the "
        "runner unpinned"
    )
    facts["open_file_limit"] = limit
    machine.print_facts(facts)
    print(
        f"settings: contenders={','.join(args.contenders)} rounds={args.rounds} "
        f"recipients={args.recipients} burst={args.burst} rate={args.rate:g}/s "
        f"paced_seconds={args.paced_seconds:g} bridge_backend={args.bridge_backend}"
    )
    print(flush=True)
    machine.warn_if_busy("at start")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    logs = RESULTS_DIR / f"broadcast-{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "machine": facts,
        "settings": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="asgi_bridge_broadcast_") as workdir:
        env = run.prepare_project(Path(workdir))
        rounds = measure(env, args, logs)
    results["rounds"] = {
        key: [{kind: asdict(each) for kind, each in runs.items()} for runs in by_round]
        for key, by_round in rounds.items()
    }
    machine.warn_if_busy("at end")
    print()
    print_table(rounds, args)
    print()
    path = RESULTS_DIR / f"broadcast-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {path.relative_to(BENCH_DIR.parent)}; server logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
