"""What a client of an open WebSocket sees when the server is stopped with SIGTERM.

asgi_bridge closes a socket whose view the server cancels with 1001 (going away), but only
some servers cancel the view while the connection is still open. This pins what each does, as
the docs state it:
- uvicorn closes open WebSockets itself, with 1012 (service restart), before it cancels
  anything;
- hypercorn cancels the view at the end of its graceful timeout: the client gets 1001;
- daphne cancels the view before closing connections, but refuses any close code from an
  application other than 1000 and 3000-4999: the client gets 1000. Its cancelling fails with a
  KeyError (and it drops every connection) when SIGTERM comes within about a second of a
  WebSocket handshake, before its once-a-second check has forgotten the upgraded HTTP request;
- granian drops the connection without a close frame.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import RunningServer, ServerEnvironment, start_server

# The close code the client gets; None: the connection ends without a close frame.
CLOSE_AT_SHUTDOWN = {"uvicorn": 1012, "hypercorn": 1001, "granian": None, "daphne": 1000}
TIMEOUT = 15.0
# Longer than daphne's once-a-second check (its application_checker) takes to forget the HTTP
# request a handshake upgraded.
SETTLE = 2.5


@pytest.mark.parametrize("name", sorted(CLOSE_AT_SHUTDOWN))
def test_what_an_open_socket_sees_at_shutdown(
    name: str, server_environment: ServerEnvironment
) -> None:
    server = start_server(name, "127.0.0.1", server_environment)
    try:
        assert asyncio.run(close_seen_at_shutdown(server, SETTLE)) == CLOSE_AT_SHUTDOWN[name], (
            server.describe()
        )
    finally:
        server.stop()


def test_daphne_drops_sockets_when_stopped_just_after_a_handshake(
    server_environment: ServerEnvironment,
) -> None:
    """daphne's shutdown raises KeyError('application_instance') and cancels no view, so
    nothing closes the socket before the connections are dropped. If this fails, daphne has
    fixed it: the client gets 1000 as above, and the docs can say so.

    SIGTERM follows the handshake by milliseconds, but daphne's check runs once a second and
    may fall in between (then daphne cancels the view and the client gets 1000): a few
    attempts make that race, not the server, decide nothing."""
    seen = []
    for _ in range(3):
        # Verbosity 2 logs the KeyError that Twisted reports.
        server = start_server(
            "daphne", "127.0.0.1", server_environment, extra_arguments=["-v", "2"]
        )
        try:
            code = asyncio.run(close_seen_at_shutdown(server, 0.0))
        finally:
            server.stop()
        log = server.log_path.read_text(errors="replace")
        seen.append((code, "KeyError: 'application_instance'" in log))
        if code is None:
            break
    assert seen[-1] == (None, True), (seen, server.describe())


async def close_seen_at_shutdown(server: RunningServer, settle: float) -> int | None:
    url = f"ws://{server.host}:{server.port}/ws/echo/"
    async with connect(url, proxy=None, open_timeout=TIMEOUT) as socket:
        await socket.send("before")
        assert await asyncio.wait_for(socket.recv(), TIMEOUT) == "before"
        await asyncio.sleep(settle)
        os.kill(server.pid, signal.SIGTERM)
        try:
            unexpected = await asyncio.wait_for(socket.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"received {unexpected!r} instead of a close")
