"""Requests that await hold no thread, on every server: 500 long polls and 100 event streams.

Each server serves example_project with a fixed pool of 32 threads (``ASGI_BRIDGE["THREADS"]``,
not derived from the machine's cores). 500 async long polls wait in their view and 100
server-sent event streams stay open, all at once; meanwhile a plain async view and a plain sync
view each answer and every stream gets its first event. Then the long polls are released and
every one of them answers. A fresh server per test keeps a failure (today: a pool exhausted by
waiting requests) from reaching the other end-to-end tests; it is stopped by process group.

The bounds on waits only turn a hang into a failure. They measure nothing; the times measured
are shown in the run's summary, for information.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from .conftest import SUMMARY_PROPERTY, RunningServer, ServerEnvironment, start_server
from .crowds import all_without_stall, open_files_raised_to

SERVERS = ["uvicorn", "daphne", "granian", "hypercorn"]
THREADS = 32
LONG_POLLS = 500
EVENT_STREAMS = 100
# A long poll that is never released answers after this long: the server drains by itself.
LONG_POLL_SECONDS = 60
# A plain request answering later than this has hung behind the waiting ones.
ANSWER_TIMEOUT = 5.0
# A crowd that makes no progress for this long (no connection opened, no first event, no long
# poll answered) has hung.
STALL_TIMEOUT = 10.0
# Connections opened at once: below the smallest listen backlog (daphne's 50), so that no SYN is
# dropped and retried a second later.
CONNECTING_AT_ONCE = 32
GREETINGS = {"async": b"Hello from an async view", "sync": b"Hello from a sync view"}
# Sockets of the test process, and of the server it starts, which inherits the limit.
FILE_DESCRIPTORS = 4096

T = TypeVar("T")


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """Raise the soft limit on open files to FILE_DESCRIPTORS (within the hard limit)."""
    with open_files_raised_to(FILE_DESCRIPTORS, needed=2 * (LONG_POLLS + EVENT_STREAMS)):
        yield


@pytest.fixture
def crowded_server(
    request: pytest.FixtureRequest,
    server_environment: ServerEnvironment,
    enough_file_descriptors: None,
) -> Iterator[RunningServer]:
    """A fresh server, named by the test's parameter, whose pool has THREADS threads."""
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_THREADS": str(THREADS)}
    )
    running = start_server(request.param, "127.0.0.1", environment)
    try:
        yield running
    finally:
        running.stop()


# -- a bare HTTP/1.1 client: hundreds of connections cost it little -----------------------------


@dataclasses.dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


async def send_request(
    server: RunningServer, method: str, target: str, connecting: asyncio.Semaphore
) -> Connection:
    """Connect (at most CONNECTING_AT_ONCE at a time) and send a request without a body."""
    async with connecting:
        reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: {server.host_header}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("ascii")
    )
    await writer.drain()
    return Connection(reader, writer)


async def read_head(connection: Connection) -> tuple[int, dict[str, str]]:
    head = await connection.reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


def dechunk(body: bytes) -> bytes:
    parts = []
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(parts)
        parts.append(rest[:size])
        body = rest[size + 2 :]


async def read_response(connection: Connection) -> tuple[int, bytes]:
    """The status and body of a response sent with ``Connection: close``; closes the socket."""
    try:
        status, headers = await read_head(connection)
        body = await connection.reader.read()
    finally:
        connection.writer.close()
    if "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    return status, body


async def request(server: RunningServer, method: str, target: str) -> tuple[int, bytes]:
    connection = await send_request(server, method, target, asyncio.Semaphore())
    return await read_response(connection)


async def answer_in_time(
    server: RunningServer, method: str, target: str, what: str
) -> tuple[int, bytes, float]:
    """Status, body and seconds taken; fail if no answer within ANSWER_TIMEOUT."""
    started = time.monotonic()
    try:
        status, body = await asyncio.wait_for(request(server, method, target), ANSWER_TIMEOUT)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"{method} {target} got no answer within {ANSWER_TIMEOUT:g} s {what}"
        ) from None
    return status, body, time.monotonic() - started


async def open_event_stream(
    server: RunningServer, target: str, connecting: asyncio.Semaphore
) -> Connection:
    """Open an event stream and read until its first event has arrived; the stream stays open."""
    connection = await send_request(server, "GET", target, connecting)
    status, headers = await read_head(connection)
    assert status == 200, (status, headers)
    assert headers["content-type"].startswith("text/event-stream"), headers
    received = b""
    # The first event's fields, then the blank line that ends it (chunk framing may sit between).
    while not (b"event: tick" in received and b"\n\n" in received.partition(b"event: tick")[2]):
        piece = await connection.reader.read(4096)
        assert piece, f"the stream ended before its first event: {received!r}"
        received += piece
    return connection


async def wait_until_waiting(server: RunningServer, token: str, expected: int) -> None:
    """Poll /long-poll/status/ until ``expected`` long polls wait in their view."""
    target = f"/long-poll/status/?token={token}"
    last, last_change = -1, time.monotonic()
    while True:
        status, body, _ = await answer_in_time(
            server,
            "GET",
            target,
            f"with {expected} long polls sent"
            + (f", {last} of them last seen waiting in their view" if last >= 0 else ""),
        )
        assert status == 200, body[:2000]
        waiting = json.loads(body)["waiting"]
        if waiting == expected:
            return
        if waiting != last:
            last, last_change = waiting, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT:
            raise AssertionError(f"long polls waiting in their view: stuck at {waiting}")
        await asyncio.sleep(0.05)


def abort(connections: list[Connection]) -> None:
    for connection in connections:
        connection.writer.transport.abort()


async def run_crowd(server: RunningServer) -> dict[str, Any]:
    """The scenario; returns what it measured, for the summary."""
    token = uuid.uuid4().hex
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)
    long_poll_target = f"/long-poll/?token={token}&seconds={LONG_POLL_SECONDS}"
    # The clock's first tick at once, the next one long after the test has hung up.
    stream_target = f"/sse/clock/?token={token}&interval={LONG_POLL_SECONDS}"
    long_polls: list[Connection] = []
    streams: list[Connection] = []

    async def tracked(opening: Awaitable[Connection], into: list[Connection]) -> Connection:
        connection = await opening
        into.append(connection)
        return connection

    try:
        await all_without_stall(
            [
                asyncio.create_task(
                    tracked(send_request(server, "GET", long_poll_target, connecting), long_polls)
                )
                for _ in range(LONG_POLLS)
            ],
            "long polls sent",
            stall=STALL_TIMEOUT,
        )
        await wait_until_waiting(server, token, LONG_POLLS)

        streams_opened = time.monotonic()
        await all_without_stall(
            [
                asyncio.create_task(
                    tracked(open_event_stream(server, stream_target, connecting), streams)
                )
                for _ in range(EVENT_STREAMS)
            ],
            f"event streams given their first event while {LONG_POLLS} long polls waited",
            stall=STALL_TIMEOUT,
        )
        first_events = time.monotonic() - streams_opened

        crowd = f"while {LONG_POLLS} long polls and {EVENT_STREAMS} event streams were open"
        answers = {}
        for flavour, greeting in GREETINGS.items():
            status, body, seconds = await answer_in_time(server, "GET", f"/hello/{flavour}/", crowd)
            assert (status, body) == (200, greeting), body[:2000]
            answers[flavour] = seconds

        # None of them ended early: all still wait, until released.
        await wait_until_waiting(server, token, LONG_POLLS)
        status, body, _ = await answer_in_time(
            server, "POST", f"/long-poll/release/?token={token}", crowd
        )
        assert (status, json.loads(body)) == (200, {"released": LONG_POLLS}), body[:2000]
        outcomes = await all_without_stall(
            [asyncio.create_task(read_response(connection)) for connection in long_polls],
            "released long polls answered",
            stall=STALL_TIMEOUT,
        )
    finally:
        abort(long_polls + streams)
    expected = (200, json.dumps({"token": token, "released": True}).encode())
    wrong = [(status, body[:200]) for status, body in outcomes if (status, body) != expected]
    assert not wrong, f"{len(wrong)} of {LONG_POLLS} long polls answered wrongly: {wrong[:5]}"
    return {"first_events": first_events, **answers}


@pytest.mark.parametrize("crowded_server", SERVERS, indirect=True)
def test_long_polls_and_event_streams_wait_without_holding_threads(
    crowded_server: RunningServer, record_property: Any
) -> None:
    try:
        measured = asyncio.run(run_crowd(crowded_server))
    except AssertionError as error:
        raise AssertionError(f"{error}\n{crowded_server.describe()}") from error
    record_property(
        SUMMARY_PROPERTY,
        f"{LONG_POLLS} long polls + {EVENT_STREAMS} event streams open, {THREADS} threads: "
        f"every stream's first event in {measured['first_events']:.2f} s, then an async GET in "
        f"{measured['async']:.3f} s and a sync GET in {measured['sync']:.3f} s",
    )
