"""What a client of an open WebSocket sees when the server is stopped with SIGTERM.

The servers close open WebSockets themselves before the application's lifespan shutdown, so
asgi_bridge has no earlier moment to close them with 1001. This pins what each server does, as
the README states it: uvicorn closes with 1012 (service restart), hypercorn cancels the view and
closes with 1011, granian and daphne drop the connection without a close frame.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import RunningServer, ServerEnvironment, start_server

# The close code each server sends; None: the connection ends without a close frame.
CLOSE_AT_SHUTDOWN = {"uvicorn": 1012, "hypercorn": 1011, "granian": None, "daphne": None}
TIMEOUT = 15.0


@pytest.mark.parametrize("name", sorted(CLOSE_AT_SHUTDOWN))
def test_what_an_open_socket_sees_at_shutdown(
    name: str, server_environment: ServerEnvironment
) -> None:
    server = start_server(name, "127.0.0.1", server_environment)
    try:
        assert asyncio.run(close_seen_at_shutdown(server)) == CLOSE_AT_SHUTDOWN[name], (
            server.describe()
        )
    finally:
        server.stop()


async def close_seen_at_shutdown(server: RunningServer) -> int | None:
    url = f"ws://{server.host}:{server.port}/ws/echo/"
    async with connect(url, proxy=None, open_timeout=TIMEOUT) as socket:
        await socket.send("before")
        assert await asyncio.wait_for(socket.recv(), TIMEOUT) == "before"
        os.kill(server.pid, signal.SIGTERM)
        try:
            unexpected = await asyncio.wait_for(socket.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"received {unexpected!r} instead of a close")
