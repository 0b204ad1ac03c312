"""The HTTP scenarios every server must pass with example_project on asgi_bridge.

``HTTPScenarios`` holds the tests; each ``test_<server>.py`` module subclasses it and sets
``server_name``. The example project's ``/probe/events/`` view reports how often Django's
request_started / request_finished signals fired in the server process and which cleanup
events (stream closed, file closed) happened, so the tests can check that every request is
finished exactly once and every resource released exactly once, including when the client
goes away mid-response.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
import re
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from asgi_bridge.conf import DEFAULT_THREADS

from .conftest import BODY_RECEIVE_TIMEOUT, MAX_REQUEST_BODY_SIZE
from .crowds import ProcessFootprint, deleted_files_of_tree

if TYPE_CHECKING:
    from .conftest import Payload, RunningServer


MiB = 1024 * 1024
DOWNLOAD_SIZE = 10 * MiB
DOWNLOAD_SEED = 20251123
PROBE_TIMEOUT = 10.0
# How much of the download the disconnecting client reads before it hangs up.
PARTIAL_READ = 256 * 1024
SOCKET_TIMEOUT = 15.0
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@functools.cache
def expected_download_sha256() -> str:
    """The digest of the bytes example_project serves at /download/."""
    return hashlib.sha256(random.Random(DOWNLOAD_SEED).randbytes(DOWNLOAD_SIZE)).hexdigest()


def new_token() -> str:
    return uuid.uuid4().hex


# Sequential /probe/thread/ requests: enough to show threads being reused.
THREAD_PROBES = 10

# -- the probe --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSnapshot:
    """One answer of /probe/events/."""

    started: int
    finished: int
    events: list[list[Any]]

    def matching(self, kind: str, token: str) -> list[list[Any]]:
        return [event for event in self.events if event[:2] == [kind, token]]


def take_probe(client: httpx.Client) -> ProbeSnapshot:
    response = client.get("/probe/events/")
    assert response.status_code == 200, response.text
    data = response.json()
    return ProbeSnapshot(data["started"], data["finished"], data["events"])


def wait_for_cleanup(
    client: httpx.Client, baseline: ProbeSnapshot, kind: str | None, token: str | None
) -> tuple[ProbeSnapshot, int]:
    """Poll the probe until ``kind`` for ``token`` shows up (if given) and the counters add up.

    Returns the last snapshot and how many probe requests were made. Counting from the
    baseline probe A, after one request B and k polls, Django must have started B and the k
    polls (k + 1) and finished A, B and the first k - 1 polls (k + 1): each poll is still in
    flight when it reads the counters. A request_finished that fires a moment after the
    client got its response shows up on a later poll, hence the polling on counters too.
    """
    deadline = time.monotonic() + PROBE_TIMEOUT
    polls = 0
    while True:
        polls += 1
        snapshot = take_probe(client)
        expected = polls + 1
        settled = (
            snapshot.started - baseline.started == expected
            and snapshot.finished - baseline.finished == expected
        )
        seen = kind is None or token is None or snapshot.matching(kind, token)
        if (settled and seen) or time.monotonic() > deadline:
            return snapshot, polls
        time.sleep(0.05)


def assert_cleaned_up_once(
    client: httpx.Client, baseline: ProbeSnapshot, kind: str, token: str
) -> list[Any]:
    """Assert one request since ``baseline`` ran its cycle once and released ``token`` once."""
    snapshot, polls = wait_for_cleanup(client, baseline, kind, token)
    events = snapshot.matching(kind, token)
    assert len(events) == 1, f"expected one {kind} event for {token}, got {events}"
    assert_counters_grew_once(snapshot, baseline, polls)
    return events[0]


def assert_finished_once(client: httpx.Client, baseline: ProbeSnapshot) -> None:
    """Assert one request since ``baseline`` was started and finished exactly once."""
    snapshot, polls = wait_for_cleanup(client, baseline, None, None)
    assert_counters_grew_once(snapshot, baseline, polls)


def assert_counters_grew_once(snapshot: ProbeSnapshot, baseline: ProbeSnapshot, polls: int) -> None:
    expected = polls + 1
    assert (snapshot.started - baseline.started, snapshot.finished - baseline.finished) == (
        expected,
        expected,
    ), (
        f"request_started/request_finished grew by "
        f"{snapshot.started - baseline.started}/{snapshot.finished - baseline.finished}, "
        f"expected {expected}/{expected} after {polls} probe poll(s)"
    )


# -- raw sockets ------------------------------------------------------------------------------


def open_raw_request(
    server: RunningServer, target: str, receive_buffer: int | None = None
) -> socket.socket:
    """Connect and send a bare GET; a small ``receive_buffer`` keeps the server from
    pushing the whole response into kernel buffers before we hang up."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(SOCKET_TIMEOUT)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((server.host, server.port))
    request = f"GET {target} HTTP/1.1\r\nHost: {server.host_header}\r\n\r\n"
    sock.sendall(request.encode("ascii"))
    return sock


def read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    """Read from ``sock`` until ``done(received)``, the peer closes or the socket times out.

    Returns what arrived either way, so the caller's assertion can show it.
    """
    received = b""
    while not done(received):
        try:
            piece = sock.recv(64 * 1024)
        except TimeoutError:
            break
        if not piece:
            break
        received += piece
    return received


def abort_connection(sock: socket.socket) -> None:
    """Close with a TCP reset, the way a client that vanishes mid-response does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def leave_while_the_view_runs(server: RunningServer, target: str) -> None:
    """Request ``target`` (a view that sleeps) and hang up before it can answer."""
    sock = open_raw_request(server, target)
    time.sleep(0.3)  # The view is sleeping by now.
    abort_connection(sock)


def exchange_raw(server: RunningServer, request: bytes) -> bytes:
    """Send raw request bytes and return everything the server answers until it closes."""
    with socket.create_connection((server.host, server.port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        return read_until(sock, lambda _received: False)


def status_after_partial_body(server: RunningServer, declared: int, wait: float) -> bytes:
    """Declare ``declared`` body bytes, send ten, and return the status line (b"" if none)."""
    with socket.create_connection((server.host, server.port), timeout=wait) as sock:
        sock.sendall(
            f"POST /echo/digest/ HTTP/1.1\r\nHost: {server.host_header}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
            "0123456789".encode("ascii")
        )
        return read_until(sock, lambda data: b"\r\n" in data).split(b"\r\n", 1)[0]


def status_after_trickled_body(server: RunningServer, every: float, wait: float) -> bytes:
    """Declare a 100,000-byte body and send it a byte at a time, ``every`` seconds apart (never
    long enough to trip a gap timeout) for up to ``wait`` seconds; the status line the server
    answers meanwhile (b"" if none)."""
    with socket.create_connection((server.host, server.port), timeout=wait) as sock:
        sock.sendall(
            f"POST /echo/digest/ HTTP/1.1\r\nHost: {server.host_header}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        deadline = time.monotonic() + wait
        received = b""
        while time.monotonic() < deadline and b"\r\n" not in received:
            # If the server answered and closed, read what it said.
            with contextlib.suppress(OSError):
                sock.sendall(b"x")
            sock.settimeout(every)
            try:
                piece = sock.recv(4096)
            except TimeoutError:
                continue
            if not piece:
                break
            received += piece
        return received.split(b"\r\n", 1)[0]


def wait_for_files(
    server: RunningServer, condition: Callable[[list[str]], bool], what: str
) -> None:
    """Wait (bounded) until ``condition`` holds of the server's deleted open files."""
    deadline = time.monotonic() + SOCKET_TIMEOUT
    files = deleted_files_of_tree(server.pid)
    while not condition(files):
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}; open deleted files: {files}")
        time.sleep(0.05)
        files = deleted_files_of_tree(server.pid)


def body_after_headers(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


# -- HTTP helpers -----------------------------------------------------------------------------


def csrf_form_token(client: httpx.Client) -> str:
    response = client.get("/form/")
    assert response.status_code == 200, response.text
    match = CSRF_INPUT.search(response.text)
    assert match, f"no csrfmiddlewaretoken input in:\n{response.text}"
    return match.group(1)


def sha256_of_stream(response: httpx.Response) -> tuple[int, str]:
    """Hash a streamed body without keeping it."""
    digest = hashlib.sha256()
    size = 0
    for piece in response.iter_bytes():
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


def stream_lines(prefix: str, count: int) -> str:
    return "".join(f"{prefix} {index}\n" for index in range(count))


def read_event_ids(response: httpx.Response, count: int) -> list[str]:
    """Read an event stream until ``count`` events with an id have arrived; their ids."""
    ids: list[str] = []
    for line in response.iter_lines():
        if line.startswith("id: "):
            ids.append(line.removeprefix("id: "))
            if len(ids) == count:
                break
    return ids


class HTTPScenarios:
    """Every HTTP scenario, run against the server named by ``server_name``."""

    server_name: str
    server_host: str = "127.0.0.1"
    # On servers that advertise the http.response.pathsend extension the handler hands the
    # file's path to the server, so the application itself reads none of it.
    sends_files_by_path: bool = False
    # Whether the server passes the request body on as it arrives (daphne buffers it whole
    # before calling the application, so body limits can only act once it is all there).
    streams_request_body: bool = True
    # Whether the server's send() waits while the client does not read (daphne's does not:
    # it hands the whole body to Twisted's buffers).
    applies_backpressure: bool = True

    def test_hello_async_and_sync(self, client: httpx.Client) -> None:
        greetings = {"async": "Hello from an async view", "sync": "Hello from a sync view"}
        for flavour, text in greetings.items():
            response = client.get(f"/hello/{flavour}/")
            assert response.status_code == 200, response.text[:2000]
            assert response.headers["content-type"].startswith("text/plain")
            assert response.text == text

    def test_items_json_from_the_orm(self, client: httpx.Client) -> None:
        response = client.get("/items/json/")
        assert response.status_code == 200, response.text[:2000]
        items = response.json()["items"]
        assert items, "the seeded items are missing"
        assert all({"id", "name"} <= item.keys() for item in items), items

    def test_form_post_with_csrf_token(self, client: httpx.Client) -> None:
        token = csrf_form_token(client)
        assert "csrftoken" in client.cookies
        response = client.post("/form/", data={"name": "Ada", "csrfmiddlewaretoken": token})
        assert response.status_code == 200, response.text
        assert "Thanks, Ada!" in response.text

    def test_form_post_without_csrf_token_is_forbidden(self, client: httpx.Client) -> None:
        csrf_form_token(client)  # the cookie alone must not be enough
        response = client.post("/form/", data={"name": "Ada"})
        assert response.status_code == 403, response.text[:2000]

    def test_large_multipart_upload(self, client: httpx.Client, upload_payload: Payload) -> None:
        assert client.get("/upload/").status_code == 200
        csrf_token = client.cookies["csrftoken"]
        with upload_payload.path.open("rb") as upload:
            # httpx reads a file object piece by piece while sending it.
            response = client.post(
                "/upload/",
                files={"file": ("upload.bin", upload, "application/octet-stream")},
                headers={"X-CSRFToken": csrf_token},
                timeout=120.0,
            )
        assert response.status_code == 200, response.text[:2000]
        assert response.json() == {
            "name": "upload.bin",
            "size": upload_payload.size,
            "sha256": upload_payload.sha256,
        }

    def test_chunked_request_body(self, server: RunningServer, chunked_payload: Payload) -> None:
        curl = shutil.which("curl")
        assert curl, "curl is required for the chunked request body scenario"
        result = subprocess.run(
            [
                curl,
                "--silent",
                "--show-error",
                "--max-time",
                "60",
                "--write-out",
                "\n%{http_code}",
                "-H",
                "Transfer-Encoding: chunked",
                "-H",
                "Content-Type: application/octet-stream",
                # Without this curl waits for "100 Continue"; that handshake is not under test.
                "-H",
                "Expect:",
                "--data-binary",
                f"@{chunked_payload.path}",
                f"{server.base_url}/echo/digest/",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        body, _, status = result.stdout.rpartition("\n")
        assert status == "200", body
        assert json.loads(body) == {
            "size": chunked_payload.size,
            "sha256": chunked_payload.sha256,
        }

    def test_hundred_requests_on_one_keep_alive_connection(self, client: httpx.Client) -> None:
        ports = set()
        for _ in range(100):
            response = client.get("/meta/")
            assert response.status_code == 200, response.text[:2000]
            ports.add(response.json()["remote_port"])
        assert len(ports) == 1, f"the client reconnected: remote ports {sorted(ports)}"

    @pytest.mark.parametrize("flavour", ["sync", "async"])
    def test_streaming_body(self, client: httpx.Client, flavour: str) -> None:
        response = client.get(f"/stream/{flavour}/", params={"n": 5, "delay": 0})
        assert response.status_code == 200, response.text[:2000]
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == stream_lines("chunk", 5)

    def test_streaming_body_arrives_in_pieces(self, client: httpx.Client) -> None:
        with client.stream("GET", "/stream/async/", params={"n": 5, "delay": 0.05}) as response:
            assert response.status_code == 200, response.text[:2000]
            pieces = list(response.iter_raw())
        assert b"".join(pieces) == stream_lines("chunk", 5).encode()
        assert len(pieces) > 1, "the stream was buffered into a single piece"

    def test_file_download(self, client: httpx.Client) -> None:
        token = new_token()
        baseline = take_probe(client)
        with client.stream("GET", "/download/", params={"token": token}) as response:
            assert response.status_code == 200, response.text[:2000]
            assert response.headers["content-length"] == str(DOWNLOAD_SIZE)
            assert "attachment" in response.headers["content-disposition"]
            assert "big.bin" in response.headers["content-disposition"]
            size, sha256 = sha256_of_stream(response)
        assert (size, sha256) == (DOWNLOAD_SIZE, expected_download_sha256())
        event = assert_cleaned_up_once(client, baseline, "file_closed", token)
        expected_read = 0 if self.sends_files_by_path else DOWNLOAD_SIZE
        assert event[2] == expected_read, f"file_closed event {event}"

    def test_head_download(self, client: httpx.Client) -> None:
        token = new_token()
        baseline = take_probe(client)
        response = client.head("/download/", params={"token": token})
        assert response.status_code == 200, response.text[:2000]
        assert response.headers["content-length"] == str(DOWNLOAD_SIZE)
        assert response.content == b""
        event = assert_cleaned_up_once(client, baseline, "file_closed", token)
        assert event[2] == 0, f"HEAD read from the file: {event}"

    def test_not_found(self, client: httpx.Client) -> None:
        assert client.get(f"/no-such-page-{new_token()}/").status_code == 404

    def test_server_error_hides_the_traceback(self, client: httpx.Client) -> None:
        response = client.get("/boom/")
        assert response.status_code == 500, response.text[:2000]
        assert "Traceback" not in response.text

    def test_invalid_utf8_query_string_is_rejected(self, server: RunningServer) -> None:
        # Who answers, checked by whether the probe counters moved: on uvicorn (httptools),
        # daphne (twisted), granian (hyper) and hypercorn (h11) the server rejects the raw
        # 0xFF in the request line itself, before the application sees a scope. The
        # assertion holds either way: whichever layer answers must answer 400.
        raw = exchange_raw(
            server, b"GET /meta/?\xff HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        status_line = raw.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 400"), raw[:500]

    def test_declared_oversize_body_is_refused_unread(
        self, server: RunningServer, client: httpx.Client
    ) -> None:
        baseline = take_probe(client)
        declared = MAX_REQUEST_BODY_SIZE + 1
        if self.streams_request_body:
            # Ten bytes of a body declared over the limit: 413 at once, the rest never sent.
            status = status_after_partial_body(server, declared, SOCKET_TIMEOUT)
            assert status.startswith(b"HTTP/1.1 413"), status
        else:
            response = client.post("/echo/digest/", content=b"x" * declared, timeout=120.0)
            assert response.status_code == 413, response.text[:2000]
        assert_finished_once(client, baseline)

    def test_stalled_body_times_out(self, server: RunningServer, client: httpx.Client) -> None:
        baseline = take_probe(client)
        wait = BODY_RECEIVE_TIMEOUT + 3
        status = status_after_partial_body(server, 1000, wait)
        if self.streams_request_body:
            assert status.startswith(b"HTTP/1.1 408"), status
            assert_finished_once(client, baseline)
        else:
            # The application never sees a body the server is still buffering: only the
            # server's own timeout can end it, as the README says.
            assert status == b"", status
            after = take_probe(client)
            assert (after.started - baseline.started, after.finished - baseline.finished) == (1, 1)

    def test_trickled_body_times_out(self, server: RunningServer, client: httpx.Client) -> None:
        """A byte every 0.5 s never trips BODY_RECEIVE_TIMEOUT's gap, but falls below
        BODY_MIN_RATE (500 bytes/s by default) once the gap's length has passed as grace."""
        baseline = take_probe(client)
        status = status_after_trickled_body(server, 0.5, BODY_RECEIVE_TIMEOUT + 6)
        if self.streams_request_body:
            assert status.startswith(b"HTTP/1.1 408"), status
            assert_finished_once(client, baseline)
        else:
            # The server buffers the whole body before the application sees any of it.
            assert status == b"", status

    def test_an_upload_abandoned_midway_leaves_no_temporary_file(
        self, server: RunningServer
    ) -> None:
        """4 MB of a declared 8 MB body, past FILE_UPLOAD_MAX_MEMORY_SIZE so that it is spooled
        to a temporary file, then the client vanishes: the file goes with it."""
        before = deleted_files_of_tree(server.pid)
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect((server.host, server.port))
        try:
            sock.sendall(
                f"POST /echo/digest/ HTTP/1.1\r\nHost: {server.host_header}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 8000000\r\n\r\n".encode()
            )
            sock.sendall(b"x" * 4_000_000)
            if self.streams_request_body:
                # asgi_bridge has spooled the body past the in-memory limit to a file.
                wait_for_files(server, lambda files: len(files) > len(before), "a spooled body")
        finally:
            abort_connection(sock)
        wait_for_files(server, lambda files: files == before, "the spool gone")

    def test_a_client_that_never_reads_a_download_keeps_memory_bounded(
        self, server: RunningServer, client: httpx.Client
    ) -> None:
        """A 10 MiB download whose client reads nothing for a while: the server stops at what
        the socket buffers hold, so the view's file stays open, part read.

        daphne writes bodies without waiting, so there the whole file is read and handed over
        while the client reads nothing: pinned by the view's own record, not by RSS, which
        moves with the allocator.
        """
        token = new_token()
        baseline = take_probe(client)
        rss_before = ProcessFootprint.of_tree(server.pid).rss_kib
        sock = open_raw_request(server, f"/download/?token={token}", receive_buffer=64 * 1024)
        try:
            if self.applies_backpressure:
                time.sleep(2.0)  # Long enough for a server that ignores back-pressure to fill up.
                grown_kib = ProcessFootprint.of_tree(server.pid).rss_kib - rss_before
                assert grown_kib < 4 * 1024, f"the server grew by {grown_kib} KiB"
                if not self.sends_files_by_path:
                    closed = take_probe(client).matching("file_closed", token)
                    assert closed == [], f"the file went to a client reading nothing: {closed}"
            else:
                event = assert_cleaned_up_once(client, baseline, "file_closed", token)
                assert event[2] == DOWNLOAD_SIZE, f"daphne now waits for the client? {event}"
        finally:
            abort_connection(sock)

    def test_sync_code_of_a_request_runs_on_one_reused_pooled_thread(
        self, client: httpx.Client
    ) -> None:
        threads = []
        for _ in range(THREAD_PROBES):
            token = new_token()
            baseline = take_probe(client)
            response = client.get("/probe/thread/", params={"token": token})
            assert response.status_code == 200, response.text
            report = response.json()
            # The view ran on a pooled thread, where its request_started had run before it...
            assert report["thread"].startswith("asgi_bridge-"), report
            assert report["started_here"] is True, report
            # ...and where its request_finished ran after it, exactly once.
            finished_on = assert_cleaned_up_once(client, baseline, "finished_on", token)
            assert finished_on[2] == report["thread"], (finished_on, report)
            threads.append(report["thread"])
        # One after another, requests reuse threads instead of getting one each.
        assert len(set(threads)) < len(threads), threads

    def test_sync_views_waiting_on_io_get_threads_past_the_busy_limit(
        self, server: RunningServer
    ) -> None:
        # The pool lends at most the cores plus four threads while lent ones come back; these
        # views sleep, so none comes back, and every waiting request must get a thread too, up
        # to THREADS (the servers run with the default): as many requests as that, whatever
        # the machine's core count.
        count = DEFAULT_THREADS
        url = f"{server.base_url}/probe/slow/"

        def slow_request(index: int) -> str:
            params = {"token": new_token(), "seconds": "2"}
            response = httpx.get(url, params=params, timeout=30.0)
            assert response.status_code == 200, response.text
            return str(response.json()["thread"])

        with ThreadPoolExecutor(max_workers=count) as clients:
            threads = list(clients.map(slow_request, range(count)))
        assert all(name.startswith("asgi_bridge-") for name in threads), threads
        # All ran at once, each on a thread of its own, rather than in turns on the first ones.
        assert len(set(threads)) == count, threads

    def test_sync_view_outlives_a_client_who_leaves(
        self, server: RunningServer, client: httpx.Client
    ) -> None:
        token = new_token()
        baseline = take_probe(client)
        leave_while_the_view_runs(server, f"/probe/slow/?token={token}&seconds=1")
        # The view ran to its end and its request finished once, on the view's own thread.
        returned = assert_cleaned_up_once(client, baseline, "slow_view_returned", token)
        [finished_on] = take_probe(client).matching("finished_on", token)
        assert finished_on[2] == returned[2], (finished_on, returned)
        # The thread went back to the pool: requests keep being served.
        assert client.get("/probe/thread/").status_code == 200

    def test_async_view_is_cancelled_when_its_client_leaves(
        self, server: RunningServer, client: httpx.Client
    ) -> None:
        token = new_token()
        baseline = take_probe(client)
        leave_while_the_view_runs(server, f"/probe/slow-async/?token={token}&seconds=5")
        assert_cleaned_up_once(client, baseline, "slow_view_cancelled", token)
        assert not take_probe(client).matching("slow_view_returned", token)

    @pytest.mark.parametrize("flavour", ["forever", "forever-sync"])
    def test_client_disconnect_mid_stream(
        self, server: RunningServer, client: httpx.Client, flavour: str
    ) -> None:
        token = new_token()
        baseline = take_probe(client)
        sock = open_raw_request(server, f"/stream/{flavour}/?token={token}&delay=0.05")
        try:
            received = read_until(sock, lambda data: body_after_headers(data).count(b"tick ") >= 3)
        finally:
            abort_connection(sock)
        assert received.startswith(b"HTTP/1.1 200"), received[:500]
        assert body_after_headers(received).count(b"tick ") >= 3, received[:500]
        assert_cleaned_up_once(client, baseline, "stream_cleanup", token)

    @pytest.mark.parametrize("flavour", ["clock", "clock-sync"])
    def test_server_sent_events_until_the_client_leaves(
        self, client: httpx.Client, flavour: str
    ) -> None:
        token = new_token()
        baseline = take_probe(client)
        params = {"token": token, "interval": 0.05}
        # A reconnecting EventSource sends the last id it saw; the clock numbers on from it.
        headers = {"Last-Event-ID": "41"}
        with client.stream("GET", f"/sse/{flavour}/", params=params, headers=headers) as response:
            assert response.status_code == 200, response.read()[:2000]
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["content-encoding"] == "identity"
            ids = read_event_ids(response, 3)
        # Leaving the block mid-stream closes the connection: the server must notice.
        assert ids == ["42", "43", "44"]
        assert_cleaned_up_once(client, baseline, "sse_closed", token)

    def test_client_disconnect_mid_download(
        self, server: RunningServer, client: httpx.Client
    ) -> None:
        token = new_token()
        baseline = take_probe(client)
        sock = open_raw_request(server, f"/download/?token={token}", receive_buffer=64 * 1024)
        try:
            received = read_until(sock, lambda data: len(body_after_headers(data)) >= PARTIAL_READ)
        finally:
            abort_connection(sock)
        assert received.startswith(b"HTTP/1.1 200"), received[:500]
        assert len(body_after_headers(received)) >= PARTIAL_READ, received[:500]
        # How much the server read before noticing depends on buffering; only once matters.
        assert_cleaned_up_once(client, baseline, "file_closed", token)


class IPv6Scenarios:
    """The server bound to the IPv6 loopback address."""

    server_name: str
    server_host: str = "::1"

    def test_remote_addr_is_ipv6_loopback(self, client: httpx.Client) -> None:
        response = client.get("/meta/")
        assert response.status_code == 200, response.text[:2000]
        assert response.json()["remote_addr"] == "::1"
