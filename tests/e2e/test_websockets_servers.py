"""WebSocket views on every server: echo, denied handshakes, origins, errors, and a crowd.

Each server serves example_project's WebSocket views (``/ws/...``, demo/views.py) with a pool of
THREADS threads, started once for the module's tests and stopped by process group. The client
is the ``websockets`` library's asyncio client; a user of the module's own, logged in through
the admin, proves that a handshake carries its session through the middleware. A handshake the
view (or asgi_bridge) denies reaches the client as the view's own response where the server
offers the ``websocket.http.response`` extension, and as the server's own 403 where it does not.

The bounds on waits only turn a hang into a failure; the times measured are shown in the run's
summary, for information.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from .conftest import (
    LOG_TAIL_CHARS,
    SUMMARY_PROPERTY,
    RunningServer,
    ServerEnvironment,
    start_server,
)
from .crowds import ProcessFootprint, all_without_stall, open_files_raised_to

SERVERS = ["uvicorn", "daphne", "granian", "hypercorn"]
THREADS = 4
OPEN_SOCKETS = 300
# The crowd of the uvicorn test that counts the server's threads, memory and files.
THOUSAND_SOCKETS = 1000
# Memory one idle open socket may cost the server (issue 17's bound).
IDLE_SOCKET_KIB = 100
# Threads a server may start while sockets open, whatever their number (the event loop's own
# helpers, a second pooled thread): anything near one per socket is a thread per connection.
THREADS_NOT_PER_SOCKET = 8
# Handshakes in flight at once: below the smallest listen backlog (daphne's 50), so that no SYN
# is dropped and retried a second later.
CONNECTING_AT_ONCE = 32
# A step taking longer than this has hung.
STEP_TIMEOUT = 10.0
# A plain request answering later than this has hung behind the open sockets.
ANSWER_TIMEOUT = 5.0
# Sockets of the test process, and of the server it starts, which inherits the limit.
FILE_DESCRIPTORS = 4096
EVIL_ORIGIN = "https://evil.example"

# Servers that offer the websocket.http.response extension: a denied handshake gets the view's
# own response there (its status and body). Daphne offers none: it can only reject a handshake
# the application closes before accepting, with its own 403 whatever the application meant.
DENIAL_EXTENSION_SERVERS = {"uvicorn", "granian", "hypercorn"}
# What ws/denied/'s view and asgi_bridge's refusal of an HTTP page send as their bodies.
DENIED_BODY = b"WebSockets are not for you here."
NOT_A_WEBSOCKET_BODY = b"404 Not Found: no WebSocket view here."

T = TypeVar("T")


@pytest.fixture(scope="module")
def enough_file_descriptors() -> Iterator[None]:
    """Raise the soft limit on open files to FILE_DESCRIPTORS (within the hard limit)."""
    with open_files_raised_to(FILE_DESCRIPTORS, needed=3 * THOUSAND_SOCKETS):
        yield


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest,
    server_environment: ServerEnvironment,
    enough_file_descriptors: None,
) -> Iterator[RunningServer]:
    """The server named by the parameter, with THREADS threads, for all of the module's tests.

    Named ``server`` so that conftest attaches its log to the report of a failing test.
    """
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_THREADS": str(THREADS)}
    )
    running = start_server(request.param, "127.0.0.1", environment)
    try:
        yield running
    finally:
        running.stop()


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    password: str


@pytest.fixture(scope="module")
def user(server_environment: ServerEnvironment) -> User:
    """A user of its own in the servers' database, made with createsuperuser."""
    made = User(f"ws-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex)
    result = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=server_environment.cwd,
        env={
            **server_environment.env,
            "DJANGO_SUPERUSER_USERNAME": made.username,
            "DJANGO_SUPERUSER_PASSWORD": made.password,
            "DJANGO_SUPERUSER_EMAIL": f"{made.username}@example.com",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"createsuperuser failed:\n{(result.stdout + result.stderr)[-LOG_TAIL_CHARS:]}")
    return made


def log_in(server: RunningServer, user: User) -> str:
    """Log ``user`` in through the admin's login form; returns the session's Cookie header."""
    with httpx.Client(base_url=server.base_url, timeout=STEP_TIMEOUT) as client:
        form = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None, form.text[:2000]
        answer = client.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": user.username,
                "password": user.password,
            },
        )
        assert answer.status_code == 302, answer.text[:2000]
        return f"sessionid={client.cookies['sessionid']}"


def ws_url(server: RunningServer, path: str) -> str:
    return f"ws://{server.host_header}{path}"


def own_origin(server: RunningServer) -> str:
    return server.base_url


@asynccontextmanager
async def open_socket(
    server: RunningServer, path: str, origin: str | None = None, cookie: str | None = None
) -> AsyncIterator[ClientConnection]:
    """A client WebSocket to ``path``; no proxy from the environment, no pings, no compression."""
    async with connect(
        ws_url(server, path),
        origin=Origin(origin) if origin is not None else None,
        additional_headers={"Cookie": cookie} if cookie is not None else None,
        proxy=None,
        compression=None,
        ping_interval=None,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
    ) as socket:
        yield socket


def run(step: Awaitable[T]) -> T:
    """Run ``step`` in a fresh event loop; fail if it takes longer than STEP_TIMEOUT."""
    return asyncio.run(asyncio.wait_for(step, STEP_TIMEOUT))


async def echo_round_trip(
    server: RunningServer, messages: list[str | bytes]
) -> tuple[list[str | bytes], int | None]:
    """Send each message on one socket and collect what comes back, then close; returns the
    answers and the close code the server sent back."""
    async with open_socket(server, "/ws/echo/") as socket:
        answers = []
        for message in messages:
            await socket.send(message)
            answers.append(await socket.recv())
    return answers, socket.close_code


async def denied_handshake(
    server: RunningServer, path: str, origin: str | None = None
) -> tuple[int, bytes]:
    """The status and body of a handshake the server must refuse."""
    try:
        async with open_socket(server, path, origin):
            pass
    except InvalidStatus as refusal:
        return refusal.response.status_code, bytes(refusal.response.body or b"")
    raise AssertionError(f"the handshake to {path} (Origin: {origin}) was accepted")


def test_echo_of_text_and_binary_then_a_clean_close(server: RunningServer) -> None:
    binary = bytes(range(256)) * 4
    # No empty frame: daphne drops a websocket.send whose text or bytes is empty.
    answers, close_code = run(echo_round_trip(server, ["hello", binary]))
    assert answers == ["hello", binary]
    assert close_code == 1000


def test_handshake_runs_the_session_and_auth_middleware(server: RunningServer, user: User) -> None:
    async def whoami(cookie: str | None) -> tuple[Any, int | None]:
        async with open_socket(server, "/ws/whoami/", cookie=cookie) as socket:
            answer = json.loads(await socket.recv())
            await socket.wait_closed()
        return answer, socket.close_code

    assert run(whoami(None)) == ({"username": "anonymous"}, 1000)
    assert run(whoami(log_in(server, user))) == ({"username": user.username}, 1000)


def test_a_denied_handshake_gets_its_status(server: RunningServer) -> None:
    denied = run(denied_handshake(server, "/ws/denied/"))
    not_a_websocket = run(denied_handshake(server, "/hello/sync/"))
    if server.name in DENIAL_EXTENSION_SERVERS:
        assert denied == (403, DENIED_BODY)
        assert not_a_websocket == (404, NOT_A_WEBSOCKET_BODY)
    else:
        # The server's own 403: asgi_bridge could only close the handshake.
        assert denied[0] == 403 and DENIED_BODY not in denied[1]
        assert not_a_websocket[0] == 403 and NOT_A_WEBSOCKET_BODY not in not_a_websocket[1]


def test_a_cross_origin_handshake_is_refused_and_a_same_origin_one_accepted(
    server: RunningServer,
) -> None:
    status, _ = run(denied_handshake(server, "/ws/echo/", EVIL_ORIGIN))
    assert status == 403

    async def same_origin_echo() -> str | bytes:
        async with open_socket(server, "/ws/echo/", own_origin(server)) as socket:
            await socket.send("same origin")
            return await socket.recv()

    assert run(same_origin_echo()) == "same origin"


def test_an_error_after_accept_closes_with_1011_and_the_server_serves_on(
    server: RunningServer,
) -> None:
    async def fail_the_view() -> tuple[int | None, str | None]:
        async with open_socket(server, "/ws/fails/") as socket:
            await socket.send("fail now")
            try:
                unexpected = await socket.recv()
            except ConnectionClosed as closed:
                return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)
        raise AssertionError(f"the failing view sent {unexpected!r} instead of closing")

    closing = run(fail_the_view())
    # autobahn, under daphne, lets an application close only with 1000 or 3000-4999: there
    # asgi_bridge closes with 1000 (the reason it gives, daphne does not pass on).
    expected = (1000, "") if server.name == "daphne" else (1011, "Internal Server Error")
    assert closing == expected, closing
    answers, close_code = run(echo_round_trip(server, ["still serving"]))
    assert (answers, close_code) == (["still serving"], 1000)


def test_a_plain_get_to_a_websocket_view_is_426(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/ws/echo/", timeout=STEP_TIMEOUT)
    assert response.status_code == 426, response.text
    assert response.headers["upgrade"].lower() == "websocket"


async def run_crowd(
    server: RunningServer,
    count: int = OPEN_SOCKETS,
    while_open: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Open ``count`` echo sockets, echo one message on each, GET a page, call ``while_open``
    (if given), then close them all."""
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)
    sockets: list[ClientConnection] = []

    async def open_one() -> ClientConnection:
        async with connecting:
            socket = await connect(
                ws_url(server, "/ws/echo/"),
                proxy=None,
                compression=None,
                ping_interval=None,
                open_timeout=STEP_TIMEOUT,
                close_timeout=STEP_TIMEOUT,
            )
        sockets.append(socket)
        return socket

    async def echo_one(socket: ClientConnection, number: int) -> str | bytes:
        await socket.send(f"socket {number}")
        return await socket.recv()

    started = time.monotonic()
    try:
        opened = await all_without_stall(
            [asyncio.create_task(open_one()) for _ in range(count)],
            "sockets opened",
            stall=STEP_TIMEOUT,
        )
        opening = time.monotonic() - started

        echoed = time.monotonic()
        answers = await all_without_stall(
            [asyncio.create_task(echo_one(socket, n)) for n, socket in enumerate(opened)],
            "sockets echoed",
            stall=STEP_TIMEOUT,
        )
        echoing = time.monotonic() - echoed
        assert answers == [f"socket {n}" for n in range(count)]

        asked = time.monotonic()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=ANSWER_TIMEOUT) as client:
            try:
                response = await client.get("/hello/sync/")
            except httpx.TimeoutException:
                raise AssertionError(
                    f"GET /hello/sync/ got no answer within {ANSWER_TIMEOUT:g} s "
                    f"while {count} sockets were open"
                ) from None
        answering = time.monotonic() - asked
        assert (response.status_code, response.text) == (200, "Hello from a sync view")
        if while_open is not None:
            while_open()

        closed = time.monotonic()
        await all_without_stall(
            [asyncio.create_task(socket.close()) for socket in opened],
            "sockets closed",
            stall=STEP_TIMEOUT,
        )
        closing = time.monotonic() - closed
        codes = {socket.close_code for socket in opened}
        assert codes == {1000}, codes
    finally:
        for socket in sockets:
            socket.transport.abort()
    return {"open": opening, "echo": echoing, "get": answering, "close": closing}


def test_many_open_sockets_hold_no_thread(
    server: RunningServer, record_property: pytest.RecordProperty
) -> None:
    measured = asyncio.run(run_crowd(server))
    denial = "view's own" if server.name in DENIAL_EXTENSION_SERVERS else "server's 403"
    record_property(
        SUMMARY_PROPERTY,
        f"{OPEN_SOCKETS} echo sockets, {THREADS} threads: opened in {measured['open']:.2f} s, "
        f"echoed in {measured['echo']:.2f} s, a sync GET meanwhile in {measured['get']:.3f} s, "
        f"closed in {measured['close']:.2f} s; denied handshakes get the {denial} response",
    )


def test_a_thousand_sockets_on_uvicorn_add_no_thread_and_give_back_their_files(
    server_environment: ServerEnvironment,
    enough_file_descriptors: None,
    record_property: pytest.RecordProperty,
) -> None:
    """1,000 echo sockets open at once on a fresh uvicorn: the server gains no thread per
    socket and under IDLE_SOCKET_KIB of memory per socket, and once they have closed its file
    descriptors and threads are back where they started."""
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_THREADS": str(THREADS)}
    )
    server = start_server("uvicorn", "127.0.0.1", environment)
    try:
        # Warm up at the crowd's concurrency, so that lazy imports, caches and the pool's
        # threads are in the baseline rather than charged to the sockets.
        asyncio.run(run_crowd(server, count=CONNECTING_AT_ONCE))
        before = ProcessFootprint.of(server.pid)
        during: list[ProcessFootprint] = []
        asyncio.run(
            run_crowd(
                server,
                count=THOUSAND_SOCKETS,
                while_open=lambda: during.append(ProcessFootprint.of(server.pid)),
            )
        )
        with_open = during[0]
        # The server sees each close after the client: wait (bounded) for it to let go.
        deadline = time.monotonic() + STEP_TIMEOUT
        after = ProcessFootprint.of(server.pid)
        while (after.files, after.threads) != (before.files, before.threads):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            after = ProcessFootprint.of(server.pid)
    finally:
        server.stop()
    per_socket_kib = (with_open.rss_kib - before.rss_kib) / THOUSAND_SOCKETS
    record_property(
        SUMMARY_PROPERTY,
        f"{THOUSAND_SOCKETS} sockets on uvicorn: threads {before.threads} -> {with_open.threads} "
        f"-> {after.threads}, files {before.files} -> {with_open.files} -> {after.files}, "
        f"{per_socket_kib:.1f} KiB of memory per open socket",
    )
    assert with_open.files >= before.files + THOUSAND_SOCKETS, (before, with_open)
    assert with_open.threads - before.threads < THREADS_NOT_PER_SOCKET, (before, with_open)
    assert per_socket_kib < IDLE_SOCKET_KIB, (before, with_open)
    assert (after.files, after.threads) == (before.files, before.threads), (before, after)
