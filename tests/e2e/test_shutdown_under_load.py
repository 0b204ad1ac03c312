"""SIGTERM under load (issue 21): 100 requests in flight, 50 server-sent event streams and 50
WebSockets open, and after_response() work queued, on uvicorn and hypercorn with a graceful
shutdown timeout.

What must hold:
- every request in flight is answered 200;
- every event stream got its events and then ended properly: both servers cancel it at their
  graceful timeout, and asgi_bridge ends the response as a stream that ran out (the lifespan
  shutdown waits for that), so the client sees a complete chunked body, not a cut one
  (httpx's RemoteProtocolError, nginx's "upstream prematurely closed"); a browser's
  EventSource reconnects after either;
- every WebSocket is closed: on hypercorn with 1001 (going away), which asgi_bridge sends when
  the server cancels the view at its graceful timeout; on uvicorn with 1012 (service restart),
  which uvicorn sends itself before cancelling anything
  (tests/e2e/test_websocket_shutdown_servers.py pins what each server does);
- the after_response() work is done before the lifespan shutdown;
- the process exits within the graceful timeout (a bounded wait), and no traceback in its log
  passes through asgi_bridge or the project.

The bounds on waits only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import STOP_TIMEOUT, RunningServer, ServerEnvironment, start_server
from .crowds import all_without_stall, open_files_raised_to

REQUESTS = 100
STREAMS = 50
SOCKETS = 50
SLOW_SECONDS = 3.0
GRACEFUL = 8
# Each server's graceful shutdown timeout, and the code it closes WebSockets with.
SERVERS = {
    "uvicorn": (["--timeout-graceful-shutdown", str(GRACEFUL)], 1012),
    "hypercorn": (["--graceful-timeout", str(GRACEFUL)], 1001),
}
STEP_TIMEOUT = 30.0


@dataclasses.dataclass
class Outcomes:
    requests: Counter[str]
    streams: Counter[str]
    events_per_stream: list[int]
    socket_codes: Counter[int | None]


async def slow_request(client: httpx.AsyncClient, token: str) -> str:
    try:
        response = await client.get(
            "/probe/slow-async/", params={"token": token, "seconds": SLOW_SECONDS}
        )
    except httpx.TransportError as error:
        return type(error).__name__
    return str(response.status_code)


async def stream_events(client: httpx.AsyncClient, started: asyncio.Event) -> tuple[str, int]:
    """Read an endless clock until the server ends it: how it ended, and how many events."""
    events = 0
    try:
        async with client.stream("GET", "/sse/clock/", params={"interval": 0.2}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events += 1
                    started.set()
    except httpx.TransportError as error:
        return type(error).__name__, events
    return "ended", events


async def hold_socket(url: str, opened: list[ClientConnection]) -> int | None:
    async with connect(url, open_timeout=STEP_TIMEOUT, ping_interval=None) as socket:
        opened.append(socket)
        with contextlib.suppress(ConnectionClosed):
            await socket.recv()
        return socket.close_code


async def scenario(server: RunningServer, release: Path) -> Outcomes:
    async with httpx.AsyncClient(
        base_url=server.base_url,
        timeout=STEP_TIMEOUT,
        limits=httpx.Limits(max_connections=REQUESTS + STREAMS + 10),
    ) as client:
        token = uuid.uuid4().hex
        queued = await client.get("/background/", params={"token": token, "release_file": release})
        assert queued.status_code == 200, queued.text
        stream_started = [asyncio.Event() for _ in range(STREAMS)]
        streams = [asyncio.create_task(stream_events(client, each)) for each in stream_started]
        opened: list[ClientConnection] = []
        sockets = [
            asyncio.create_task(hold_socket(f"ws://{server.host_header}/ws/echo/", opened))
            for _ in range(SOCKETS)
        ]
        requests = [
            asyncio.create_task(slow_request(client, uuid.uuid4().hex)) for _ in range(REQUESTS)
        ]
        deadline = time.monotonic() + STEP_TIMEOUT
        while len(opened) < SOCKETS or not all(each.is_set() for each in stream_started):
            assert time.monotonic() < deadline, (
                len(opened),
                sum(e.is_set() for e in stream_started),
            )
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # The slow requests are in their views by now.
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        release.touch()  # The queued work may now finish, during the graceful shutdown.
        request_outcomes = await all_without_stall(requests, "requests", STEP_TIMEOUT)
        stream_outcomes = await all_without_stall(streams, "streams", STEP_TIMEOUT)
        codes = await all_without_stall(sockets, "sockets", STEP_TIMEOUT)
    return Outcomes(
        requests=Counter(request_outcomes),
        streams=Counter(outcome for outcome, _ in stream_outcomes),
        events_per_stream=[events for _, events in stream_outcomes],
        socket_codes=Counter(codes),
    )


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_sigterm_under_load(
    name: str,
    server_environment: ServerEnvironment,
    tmp_path: Path,
    record_property: pytest.RecordProperty,
) -> None:
    arguments, close_code = SERVERS[name]
    lifespan_log = tmp_path / "lifespan.log"
    environment = dataclasses.replace(
        server_environment,
        env={**server_environment.env, "EXAMPLE_LIFESPAN_LOG": str(lifespan_log)},
    )
    with open_files_raised_to(4096, needed=3 * (REQUESTS + STREAMS + SOCKETS)):
        server = start_server(name, "127.0.0.1", environment, extra_arguments=arguments)
        try:
            outcomes = asyncio.run(scenario(server, tmp_path / "release"))
            try:
                server.process.wait(timeout=GRACEFUL + STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not exit after SIGTERM\n{server.describe()}")
        finally:
            server.stop()
    log = server.log_path.read_text(errors="replace")
    lines = lifespan_log.read_text().splitlines()
    record_property(
        "summary",
        f"{name}: requests {dict(outcomes.requests)}, streams {dict(outcomes.streams)} "
        f"(events each: {min(outcomes.events_per_stream)}..{max(outcomes.events_per_stream)}), "
        f"WebSocket close codes {dict(outcomes.socket_codes)}, exit code "
        f"{server.process.returncode}; lifespan log {lines}",
    )
    assert outcomes.requests == Counter({"200": REQUESTS}), (outcomes, server.describe())
    assert outcomes.streams == Counter({"ended": STREAMS}), outcomes.streams
    assert min(outcomes.events_per_stream) > 0, outcomes.events_per_stream
    assert outcomes.socket_codes == Counter({close_code: SOCKETS}), outcomes.socket_codes
    job_done = [index for index, line in enumerate(lines) if line.startswith("job done ")]
    shutdown = [index for index, line in enumerate(lines) if line.startswith("shutdown ")]
    assert job_done and shutdown and job_done[0] < shutdown[0], lines
    # hypercorn logs CancelledError tracebacks of its own TCP server when its graceful timeout
    # cancels connections; none may pass through asgi_bridge or the project.
    assert "Exception in ASGI application" not in log, log[-4000:]
    for traceback in log.split("Traceback (most recent call last):")[1:]:
        assert "asgi_bridge" not in traceback and "example_project" not in traceback, traceback
