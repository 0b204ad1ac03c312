"""asgi_bridge's static files (ASGI_BRIDGE["STATIC_FILES"]) on uvicorn, granian, hypercorn and
daphne: validators, conditional requests, ranges, precompressed variants, a 10 MiB file, a
crowd of downloads, and the hostile-path corpus sent byte for byte.

Each server runs example_project with THREADS threads, once for all of the module's tests, and
serves the session's STATIC_ROOT, which collectstatic filled; static_corpus.write_static_tree
adds files of known content and modification time under STATIC_ROOT/e2e (asgi_bridge checks
each file with stat on each request, so files written after collectstatic are served), a secret
just outside STATIC_ROOT, and links pointing out of it. The client is httpx, with raw sockets
only for the hostile paths, which httpx would normalise or refuse to send. One more uvicorn runs
with ManifestStaticFilesStorage, for the Cache-Control of hashed names.

A server may answer a hostile request itself, or hand the application another path than the
one sent: SERVER_BEHAVIOUR pins what each server does, where it is the server and not
asgi_bridge that decides. Whatever the server, no response may carry a byte of a file outside
STATIC_ROOT or of a dotfile.

The bounds on waits only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import brotli
import httpx
import pytest
from django.utils.http import http_date

from .conftest import (
    EXAMPLE_PROJECT,
    SUMMARY_PROPERTY,
    RunningServer,
    ServerEnvironment,
    start_server,
)
from .crowds import all_without_stall, open_files_raised_to
from .static_corpus import (
    ABSOLUTE_FORM,
    ABSOLUTE_FORM_CLIMB,
    CROWD_SIZE,
    HOSTILE_TARGETS,
    LONG_TARGET,
    MEDIUM_SIZE,
    MTIME,
    NFD_NAME,
    PAGE_CSS,
    RAW_DEL,
    RAW_FRAGMENT,
    RAW_NUL,
    RAW_SPACE,
    RAW_UTF8,
    HostileTarget,
    MiB,
    Outcome,
    RawResponse,
    StaticTree,
    leaked,
    multipart_parts,
    raw_request,
    write_static_tree,
)

SERVERS = ["uvicorn", "daphne", "granian", "hypercorn"]
THREADS = 4
# Servers that offer http.response.pathsend: asgi_bridge hands them a large file by path.
PATHSEND_SERVERS = {"granian"}
# Servers whose send() waits while the client does not read. daphne's does not: each body
# message goes into Twisted's buffer as it comes, so asgi_bridge may be done with a file long
# before the client is, and daphne holds what the client has not read yet.
BACKPRESSURE_SERVERS = {"uvicorn", "granian", "hypercorn"}
# How long a descriptor may take to show in /proc: a bound on a hang.
DESCRIPTOR_WAIT = 5.0
CROWD = 200
# Connections opened at once: below the smallest listen backlog (daphne's 50), so that no SYN
# is dropped and retried a second later.
CONNECTING_AT_ONCE = 32
# A crowd of downloads that makes no progress for this long has hung.
STALL_TIMEOUT = 30.0
FILE_DESCRIPTORS = 4096

T = TypeVar("T")

ETAG_MEDIUM = f'"{MTIME:x}-{MEDIUM_SIZE:x}"'
LAST_MODIFIED = http_date(MTIME)
EARLIER = http_date(MTIME - 1)
LATER = http_date(MTIME + 1)
IMMUTABLE = "public, max-age=31536000, immutable"
MAX_AGE = "public, max-age=60"
# O_NOFOLLOW as /proc/<pid>/fdinfo shows it (octal): asgi_bridge opens every file with it, so
# a descriptor of the file without it was opened by someone else: the server, sending by path.
O_NOFOLLOW = os.O_NOFOLLOW


@pytest.fixture(scope="module")
def static_tree(server_environment: ServerEnvironment) -> StaticTree:
    return write_static_tree(Path(server_environment.env["EXAMPLE_STATIC_ROOT"]))


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, server_environment: ServerEnvironment, static_tree: StaticTree
) -> Iterator[RunningServer]:
    """The server named by the parameter, with THREADS threads, for all of the module's tests.

    Named ``server`` so that conftest attaches its log to the report of a failing test.
    """
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_THREADS": str(THREADS)}
    )
    with open_files_raised_to(FILE_DESCRIPTORS, needed=4 * CROWD):
        running = start_server(request.param, "127.0.0.1", environment)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """A client that sends no Accept-Encoding unless a test gives one, and decodes nothing."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http_client:
        del http_client.headers["accept-encoding"]
        yield http_client


def fetch(
    client: httpx.Client, path: str, method: str = "GET", **headers: str
) -> tuple[httpx.Response, bytes]:
    """The response and its body as it came over the wire (not decoded); ``if_none_match=``
    is If-None-Match."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    with client.stream(method, path, headers=named) as response:
        return response, b"".join(response.iter_raw())


# ---------------------------------------------------------------------------------------------
# 200, HEAD and the headers of a file


def test_a_collected_file_with_its_validators(
    client: httpx.Client, server_environment: ServerEnvironment
) -> None:
    collected = Path(server_environment.env["EXAMPLE_STATIC_ROOT"]) / "demo" / "style.css"
    status = collected.stat()
    response, body = fetch(client, "/static/demo/style.css")
    assert response.status_code == 200, body[:300]
    assert body == (EXAMPLE_PROJECT / "demo" / "static" / "demo" / "style.css").read_bytes()
    assert response.headers["etag"] == f'"{int(status.st_mtime):x}-{status.st_size:x}"'
    assert response.headers["last-modified"] == http_date(int(status.st_mtime))
    assert response.headers["content-length"] == str(status.st_size)
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == MAX_AGE
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "vary" not in response.headers
    assert "content-encoding" not in response.headers


FILE_HEADERS = (
    "etag",
    "last-modified",
    "content-length",
    "content-type",
    "accept-ranges",
    "cache-control",
    "vary",
    "content-encoding",
    "x-content-type-options",
)


def file_headers(response: httpx.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in FILE_HEADERS}


@pytest.mark.parametrize("name", ["page.css", "medium.bin", "big.bin"])
def test_head_has_the_headers_of_get_and_no_body(
    client: httpx.Client, static_tree: StaticTree, name: str
) -> None:
    got, body = fetch(client, static_tree.url(name))
    head, head_body = fetch(client, static_tree.url(name), "HEAD")
    assert (got.status_code, head.status_code) == (200, 200)
    assert body == static_tree.content(name)
    assert head_body == b""
    assert file_headers(head) == file_headers(got)
    assert head.headers["etag"] == f'"{MTIME:x}-{len(body):x}"'
    assert head.headers["last-modified"] == LAST_MODIFIED


def test_a_name_with_no_file_is_djangos_404(client: httpx.Client, static_tree: StaticTree) -> None:
    response, body = fetch(client, static_tree.url("missing.css"))
    assert response.status_code == 404
    # The project's own 404 page, through Django's middleware.
    assert response.headers["x-frame-options"] == "DENY"
    assert b"<h1>Not found</h1>" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_a_file_are_not_allowed(
    client: httpx.Client, static_tree: StaticTree, method: str
) -> None:
    response, _ = fetch(client, static_tree.url("page.css"), method)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# ---------------------------------------------------------------------------------------------
# Conditional requests


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"if_none_match": ETAG_MEDIUM}, 304),
        ({"if_none_match": f'"other", W/{ETAG_MEDIUM}'}, 304),
        ({"if_none_match": "*"}, 304),
        ({"if_none_match": '"other"'}, 200),
        ({"if_modified_since": LAST_MODIFIED}, 304),
        ({"if_modified_since": LATER}, 304),
        ({"if_modified_since": EARLIER}, 200),
        ({"if_modified_since": "not a date"}, 200),
        # If-None-Match decides alone when present (RFC 9110, section 13.2.2).
        ({"if_none_match": '"other"', "if_modified_since": LATER}, 200),
        ({"if_none_match": ETAG_MEDIUM, "if_modified_since": EARLIER}, 304),
    ],
)
def test_not_modified(
    client: httpx.Client, static_tree: StaticTree, headers: dict[str, str], status: int
) -> None:
    for method in ("GET", "HEAD"):
        response, body = fetch(client, static_tree.url("medium.bin"), method, **headers)
        assert response.status_code == status, (method, headers)
        assert response.headers["etag"] == ETAG_MEDIUM
        if status == 304:
            assert body == b""
            assert response.headers["last-modified"] == LAST_MODIFIED
            assert response.headers["cache-control"] == MAX_AGE
            assert "content-length" not in response.headers
        elif method == "GET":
            assert body == static_tree.content("medium.bin")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"if_match": ETAG_MEDIUM}, 200),
        ({"if_match": "*"}, 200),
        ({"if_match": '"other"'}, 412),
        # If-Match compares strongly: a weak tag never matches.
        ({"if_match": f"W/{ETAG_MEDIUM}"}, 412),
        ({"if_unmodified_since": LAST_MODIFIED}, 200),
        ({"if_unmodified_since": EARLIER}, 412),
        # If-Match decides alone when present.
        ({"if_match": ETAG_MEDIUM, "if_unmodified_since": EARLIER}, 200),
        # A precondition fails before a range is looked at.
        ({"if_match": '"other"', "range": "bytes=0-9"}, 412),
    ],
)
def test_precondition_failed(
    client: httpx.Client, static_tree: StaticTree, headers: dict[str, str], status: int
) -> None:
    response, body = fetch(client, static_tree.url("medium.bin"), **headers)
    assert response.status_code == status, headers
    if status == 200:
        assert body == static_tree.content("medium.bin")
    else:
        assert body == b"Precondition Failed"


# ---------------------------------------------------------------------------------------------
# Ranges (medium.bin is MEDIUM_SIZE, 204,800 bytes)


@pytest.mark.parametrize(
    ("name", "value", "start", "end"),
    [
        ("medium.bin", "bytes=0-99", 0, 99),
        ("medium.bin", "bytes=100000-", 100000, 204799),
        ("medium.bin", "bytes=-100", 204700, 204799),
        ("medium.bin", "bytes=70000-99999999", 70000, 204799),
        ("medium.bin", "bytes=-99999999", 0, 204799),
        # A small file, answered from memory.
        ("page.css", "bytes=5-9", 5, 9),
        ("big.bin", "bytes=5000000-5100000", 5000000, 5100000),
    ],
)
def test_one_range(
    client: httpx.Client, static_tree: StaticTree, name: str, value: str, start: int, end: int
) -> None:
    content = static_tree.content(name)
    response, body = fetch(client, static_tree.url(name), range=value)
    assert response.status_code == 206, value
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(content)}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["accept-ranges"] == "bytes"
    assert body == content[start : end + 1]


def test_several_ranges_as_multipart_byteranges(
    client: httpx.Client, static_tree: StaticTree
) -> None:
    content = static_tree.content("medium.bin")
    size = len(content)
    response, body = fetch(
        client, static_tree.url("medium.bin"), range="bytes=0-9, 100000-100099, -10"
    )
    assert response.status_code == 206
    assert "content-range" not in response.headers
    assert response.headers["content-length"] == str(len(body))
    assert multipart_parts(response.headers["content-type"], body) == [
        ("application/octet-stream", f"bytes 0-9/{size}", content[:10]),
        ("application/octet-stream", f"bytes 100000-100099/{size}", content[100000:100100]),
        ("application/octet-stream", f"bytes {size - 10}-{size - 1}/{size}", content[-10:]),
    ]


def test_sixteen_ranges_are_sent_and_seventeen_get_the_whole_file(
    client: httpx.Client, static_tree: StaticTree
) -> None:
    content = static_tree.content("medium.bin")
    sixteen = ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(16))
    response, body = fetch(client, static_tree.url("medium.bin"), range=f"bytes={sixteen}")
    assert response.status_code == 206
    parts = multipart_parts(response.headers["content-type"], body)
    assert [part[2] for part in parts] == [content[n * 1000 : n * 1000 + 2] for n in range(16)]
    seventeen = ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(17))
    response, body = fetch(client, static_tree.url("medium.bin"), range=f"bytes={seventeen}")
    assert response.status_code == 200
    assert body == content


def test_overlapping_and_nearby_ranges_are_merged(
    client: httpx.Client, static_tree: StaticTree
) -> None:
    content = static_tree.content("medium.bin")
    response, body = fetch(
        client, static_tree.url("medium.bin"), range="bytes=0-99, 50-149, 160-170"
    )
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-170/{len(content)}"
    assert body == content[:171]


@pytest.mark.parametrize("value", ["bytes=204800-", "bytes=-0", "bytes=300000-300010"])
def test_unsatisfiable_range(client: httpx.Client, static_tree: StaticTree, value: str) -> None:
    response, body = fetch(client, static_tree.url("medium.bin"), range=value)
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */204800"
    assert body == b"Range Not Satisfiable"


@pytest.mark.parametrize("value", ["bytes=9-5", "items=0-5", "bytes=a-b", "0-5"])
def test_invalid_range_is_ignored(
    client: httpx.Client, static_tree: StaticTree, value: str
) -> None:
    response, body = fetch(client, static_tree.url("medium.bin"), range=value)
    assert response.status_code == 200
    assert body == static_tree.content("medium.bin")


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        (ETAG_MEDIUM, 206),
        (LAST_MODIFIED, 206),
        ('"other"', 200),
        (f"W/{ETAG_MEDIUM}", 200),
        (EARLIER, 200),
        (LATER, 200),
    ],
)
def test_if_range(
    client: httpx.Client, static_tree: StaticTree, if_range: str, status: int
) -> None:
    content = static_tree.content("medium.bin")
    response, body = fetch(
        client, static_tree.url("medium.bin"), range="bytes=10-19", if_range=if_range
    )
    assert response.status_code == status, if_range
    assert body == (content[10:20] if status == 206 else content)


def test_head_ignores_range(client: httpx.Client, static_tree: StaticTree) -> None:
    response, body = fetch(client, static_tree.url("medium.bin"), "HEAD", range="bytes=0-9")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(MEDIUM_SIZE)
    assert body == b""


# ---------------------------------------------------------------------------------------------
# Precompressed variants


@pytest.mark.parametrize(
    ("accept_encoding", "coding"),
    [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br, zstd", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("*", "br"),
        ("deflate", None),
        ("identity", None),
        ("gzip;q=0, br;q=0", None),
        ("identity;q=1, gzip;q=0.5", None),
        (None, None),
    ],
)
def test_the_variant_the_client_accepts(
    client: httpx.Client, static_tree: StaticTree, accept_encoding: str | None, coding: str | None
) -> None:
    headers = {} if accept_encoding is None else {"accept_encoding": accept_encoding}
    response, body = fetch(client, static_tree.url("page.css"), **headers)
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    expected = {None: "page.css", "gzip": "page.css.gz", "br": "page.css.br"}[coding]
    assert body == static_tree.content(expected)
    assert response.headers["etag"] == f'"{MTIME:x}-{len(body):x}"'
    decompress = {None: bytes, "gzip": gzip.decompress, "br": brotli.decompress}[coding]
    assert decompress(body) == PAGE_CSS


def test_each_variant_is_revalidated_by_its_own_etag(
    client: httpx.Client, static_tree: StaticTree
) -> None:
    zipped, _ = fetch(client, static_tree.url("page.css"), accept_encoding="gzip")
    again, body = fetch(
        client,
        static_tree.url("page.css"),
        accept_encoding="gzip",
        if_none_match=zipped.headers["etag"],
    )
    assert again.status_code == 304
    assert again.headers["vary"] == "Accept-Encoding"
    plain, body = fetch(client, static_tree.url("page.css"), if_none_match=zipped.headers["etag"])
    assert plain.status_code == 200
    assert body == PAGE_CSS


def test_a_range_of_a_variant(client: httpx.Client, static_tree: StaticTree) -> None:
    response, body = fetch(
        client, static_tree.url("page.css"), accept_encoding="gzip", range="bytes=0-9"
    )
    assert response.status_code == 206
    assert response.headers["content-encoding"] == "gzip"
    assert body == static_tree.content("page.css.gz")[:10]


def test_a_file_without_variants_has_no_vary(client: httpx.Client, static_tree: StaticTree) -> None:
    response, body = fetch(client, static_tree.url("plain.txt"), accept_encoding="gzip, br")
    assert response.status_code == 200
    assert "vary" not in response.headers
    assert "content-encoding" not in response.headers
    assert body == static_tree.content("plain.txt")


# ---------------------------------------------------------------------------------------------
# A large file, by path where the server offers it


def descriptor_flags(server: RunningServer, path: Path) -> list[int]:
    """The open flags of every descriptor of ``path`` in the server's process group."""
    target = os.path.realpath(path)
    flags = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry)) != server.pid:
                continue
            for descriptor in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{descriptor}") != target:
                        continue
                    info = Path(f"/proc/{entry}/fdinfo/{descriptor}").read_text()
                    flags.append(int(info.split("flags:")[1].split()[0], 8))
    return flags


def test_a_10_mib_file_whole(
    client: httpx.Client, server: RunningServer, static_tree: StaticTree
) -> None:
    """The whole file, its bytes intact. After its first MiB, with the client not reading, the
    file's open descriptors in the server tell who is sending it: the server itself where it
    offers pathsend (it opened the file without O_NOFOLLOW, which asgi_bridge always uses, and
    asgi_bridge has closed its own), asgi_bridge elsewhere."""
    expected = static_tree.content("big.bin")
    digest = hashlib.sha256()
    received = 0
    with client.stream("GET", static_tree.url("big.bin")) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(expected))
        chunks = response.iter_raw()
        for chunk in chunks:
            digest.update(chunk)
            received += len(chunk)
            if received >= MiB:
                break
        flags = open_descriptors(server, static_tree, "big.bin")
        for chunk in chunks:
            digest.update(chunk)
            received += len(chunk)
    assert received == len(expected)
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()
    by_asgi_bridge = [each for each in flags if each & O_NOFOLLOW]
    by_server = [each for each in flags if not each & O_NOFOLLOW]
    if server.name in PATHSEND_SERVERS:
        assert (len(by_server), by_asgi_bridge) == (1, []), f"flags {flags}"
    elif server.name in BACKPRESSURE_SERVERS:
        assert (len(by_asgi_bridge), by_server) == (1, []), f"flags {flags}"
    else:
        assert by_server == [], f"flags {flags}"


def open_descriptors(server: RunningServer, static_tree: StaticTree, name: str) -> list[int]:
    """The open flags of the server's descriptors of a file of STATIC_ROOT/e2e, once the server
    holds any (a server that buffers whole bodies may hold none: daphne)."""
    path = static_tree.root / "e2e" / name
    deadline = time.monotonic() + DESCRIPTOR_WAIT
    while True:
        flags = descriptor_flags(server, path)
        if flags or server.name not in BACKPRESSURE_SERVERS or time.monotonic() > deadline:
            return flags
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# A crowd of downloads, and a sync view meanwhile


def test_a_crowd_of_downloads_while_a_sync_view_answers(
    server: RunningServer, static_tree: StaticTree, record_property: pytest.RecordProperty
) -> None:
    """CROWD downloads of a CROWD_SIZE file start and read their first piece; with every one of
    them still being sent (by asgi_bridge, or by the server through pathsend), sync views answer
    on THREADS threads; then each download completes with the file's bytes.

    CROWD_SIZE is more than the kernel lets a connection buffer (the largest send buffer and the
    client's first receive buffer), so a server that waits for its client holds every download
    open meanwhile, its descriptor of the file with it.
    """
    buffered = largest_send_buffer() + first_receive_buffer()
    assert buffered < CROWD_SIZE, f"the kernel buffers {buffered} bytes a connection"
    expected = hashlib.sha256(static_tree.content("crowd.bin")).hexdigest()
    outcome = asyncio.run(crowd(server, static_tree, "crowd.bin"))
    assert outcome.sync_answers == [(200, b"Hello from a sync view")] * (2 * THREADS)
    assert Counter(outcome.digests) == Counter({(CROWD_SIZE, expected): CROWD})
    if server.name in BACKPRESSURE_SERVERS:
        assert outcome.in_flight == CROWD
    record_property(
        SUMMARY_PROPERTY,
        f"{CROWD} downloads of {CROWD_SIZE // MiB} MiB open ({outcome.in_flight} still being "
        f"sent), then {2 * THREADS} sync views answered on {server.name} in "
        f"{outcome.sync_seconds:.2f} s",
    )


def largest_send_buffer() -> int:
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def first_receive_buffer() -> int:
    return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])


@dataclass
class CrowdOutcome:
    digests: list[tuple[int, str]]
    sync_answers: list[tuple[int, bytes]]
    sync_seconds: float
    # Descriptors of the file the server held open when the sync views were asked for.
    in_flight: int


async def crowd(server: RunningServer, static_tree: StaticTree, name: str) -> CrowdOutcome:
    path = static_tree.url(name)
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    release = asyncio.Event()
    started = 0
    all_started = asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)

    async def download(client: httpx.AsyncClient) -> tuple[int, str]:
        nonlocal started
        async with gate:
            response = await client.send(client.build_request("GET", path), stream=True)
        try:
            assert response.status_code == 200
            digest = hashlib.sha256()
            size = 0
            chunks = response.aiter_raw()
            first = await anext(chunks)
            digest.update(first)
            size += len(first)
            started += 1
            if started == CROWD:
                all_started.set()
            await release.wait()
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
            return size, digest.hexdigest()
        finally:
            await response.aclose()

    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=STALL_TIMEOUT, limits=limits
    ) as client:
        del client.headers["accept-encoding"]
        tasks = [asyncio.ensure_future(download(client)) for _ in range(CROWD)]
        try:
            await until_set(all_started, tasks, lambda: f"{started} of {CROWD} downloads started")
            in_flight = len(open_descriptors(server, static_tree, name))
            began = time.monotonic()
            answers = await asyncio.wait_for(
                asyncio.gather(*(client.get("/hello/sync/") for _ in range(2 * THREADS))),
                STALL_TIMEOUT,
            )
            sync_seconds = time.monotonic() - began
            release.set()
            digests = await all_without_stall(tasks, "downloads completed", STALL_TIMEOUT)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return CrowdOutcome(
        digests,
        [(answer.status_code, answer.content) for answer in answers],
        sync_seconds,
        in_flight,
    )


async def until_set(
    event: asyncio.Event, tasks: list[asyncio.Task[T]], progress: Callable[[], str]
) -> None:
    """Wait for ``event``; raise the failure of a task that ends first, or fail after
    STALL_TIMEOUT saying how far ``progress`` got."""
    waiting = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait(
            [waiting, *tasks], timeout=STALL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiting.cancel()
    if waiting in done:
        return
    for task in done:
        task.result()
    raise AssertionError(f"{progress()} after {STALL_TIMEOUT:g} s")


# ---------------------------------------------------------------------------------------------
# Hostile paths

ASGI_BRIDGE = "asgi_bridge"
DJANGO = "django"
SERVER = "server"


@dataclass(frozen=True)
class Pinned:
    """What a server itself does with a target: the status the client gets (None: the
    connection closed without an answer), the layer that answered, and why."""

    status: int | None
    layer: str
    why: str


# Where the server, not asgi_bridge, decides: pinned per server, so that a server that starts
# passing these targets on (or stops) is noticed. Every other target of the corpus reaches
# asgi_bridge on every server as sent, decoded once.
SERVER_BEHAVIOUR: dict[str, dict[str, Pinned]] = {
    RAW_UTF8: {
        "uvicorn": Pinned(400, SERVER, "httptools refuses raw non-ASCII bytes in the target"),
        "hypercorn": Pinned(400, SERVER, "h11 refuses raw non-ASCII bytes in the target"),
        "daphne": Pinned(400, SERVER, "Twisted refuses raw non-ASCII bytes in the target"),
        # granian hands the UTF-8 name over: asgi_bridge serves the NFD file.
    },
    RAW_FRAGMENT: {
        # uvicorn and granian drop the fragment; these two keep it in the path, where
        # asgi_bridge finds the dot segments after the "#".
        "hypercorn": Pinned(400, ASGI_BRIDGE, "h11 keeps '#...' in the path"),
        "daphne": Pinned(400, ASGI_BRIDGE, "Twisted keeps '#...' in the path"),
    },
    RAW_NUL: {
        name: Pinned(400, SERVER, "a raw NUL in the request line is malformed") for name in SERVERS
    },
    RAW_DEL: {
        "uvicorn": Pinned(400, SERVER, "httptools refuses a raw DEL"),
        "granian": Pinned(400, SERVER, "granian refuses a raw DEL"),
        "hypercorn": Pinned(400, SERVER, "h11 refuses a raw DEL"),
        # daphne hands it over: a name no file has, Django's 404.
    },
    RAW_SPACE: {
        name: Pinned(400, SERVER, "a raw space splits the request line") for name in SERVERS
    },
    ABSOLUTE_FORM_CLIMB: {
        "hypercorn": Pinned(404, DJANGO, "hypercorn's path is the whole URL, outside /static/"),
        "daphne": Pinned(404, DJANGO, "daphne's path is the whole URL, outside /static/"),
    },
    ABSOLUTE_FORM: {
        "hypercorn": Pinned(404, DJANGO, "hypercorn's path is the whole URL, outside /static/"),
        "daphne": Pinned(404, DJANGO, "daphne's path is the whole URL, outside /static/"),
    },
    LONG_TARGET: {
        "daphne": Pinned(None, SERVER, "Twisted drops a request line longer than 16 KiB"),
    },
}

EXPECTED_STATUS = {Outcome.REFUSED: 400, Outcome.NOT_SERVED: 404, Outcome.SERVED: 200}
EXPECTED_LAYER = {
    Outcome.REFUSED: ASGI_BRIDGE,
    Outcome.NOT_SERVED: DJANGO,
    Outcome.SERVED: ASGI_BRIDGE,
}


def answered_by(response: RawResponse | None) -> str:
    """Which layer answered: Django's responses pass its middleware (X-Frame-Options);
    asgi_bridge's carry a file's ETag or are its plain "Bad Request"; anything else is the
    server's own."""
    if response is None:
        return SERVER
    if response.header("x-frame-options") is not None:
        return DJANGO
    if response.header("etag") is not None or (
        response.status == 400
        and response.body == b"Bad Request"
        and response.header("content-type") == "text/plain; charset=utf-8"
    ):
        return ASGI_BRIDGE
    return SERVER


def test_hostile_paths(
    server: RunningServer, static_tree: StaticTree, record_property: pytest.RecordProperty
) -> None:
    """Each target of the corpus, sent as it is: never a byte from outside STATIC_ROOT or of a
    dotfile; the answer asgi_bridge (or Django) gives, or what SERVER_BEHAVIOUR pins."""
    leaks: list[str] = []
    wrong: list[str] = []
    layers: Counter[str] = Counter()
    for hostile in HOSTILE_TARGETS:
        response = raw_request("127.0.0.1", server.port, hostile.wire)
        layer = answered_by(response)
        layers[layer] += 1
        status = None if response is None else response.status
        body = b"" if response is None else response.body
        if leaked(body):
            leaks.append(f"{hostile.target[:80]!r}: {status} leaked {leaked(body)}")
        expected = expectation(server.name, hostile)
        if (status, layer) != (expected.status, expected.layer):
            wrong.append(
                f"{hostile.target[:80]!r} ({expected.why}): expected {expected.status} from "
                f"{expected.layer}, got {status} from {layer}: {body[:80]!r}"
            )
        elif (
            hostile.served is not None
            and status == 200
            and (body != static_tree.content(hostile.served))
        ):
            wrong.append(f"{hostile.target[:80]!r}: 200 with other bytes than {hostile.served}")
        if response is not None and response.header("x-injected") is not None:
            wrong.append(f"{hostile.target[:80]!r}: a header was injected")
    assert not leaks, "\n".join(leaks)
    assert not wrong, "\n".join(wrong)
    record_property(
        SUMMARY_PROPERTY,
        f"{len(HOSTILE_TARGETS)} hostile targets on {server.name} answered by "
        + ", ".join(f"{layer} {count}" for layer, count in sorted(layers.items())),
    )


def expectation(server_name: str, hostile: HostileTarget) -> Pinned:
    pinned = SERVER_BEHAVIOUR.get(hostile.target, {}).get(server_name)
    if pinned is not None:
        return pinned
    return Pinned(EXPECTED_STATUS[hostile.outcome], EXPECTED_LAYER[hostile.outcome], hostile.why)


def test_the_corpus_is_large_and_its_pins_are_its_own() -> None:
    assert len(HOSTILE_TARGETS) >= 40
    targets = [hostile.target for hostile in HOSTILE_TARGETS]
    assert len(set(targets)) == len(targets)
    assert set(SERVER_BEHAVIOUR) <= set(targets)
    assert all(set(pins) <= set(SERVERS) for pins in SERVER_BEHAVIOUR.values())
    assert NFD_NAME in {hostile.served for hostile in HOSTILE_TARGETS}


# ---------------------------------------------------------------------------------------------
# Hashed names of ManifestStaticFilesStorage

HASHED_NAME = "e2e/page.0123456789ab.css"
MANIFEST_SETTINGS = """\
from example_project.settings import *  # noqa: F403

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    },
}
"""


@pytest.fixture(scope="module")
def manifest_server(
    server_environment: ServerEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """uvicorn with ManifestStaticFilesStorage over a STATIC_ROOT of its own, whose manifest
    names one hashed file."""
    directory = tmp_path_factory.mktemp("manifest")
    root = directory / "static"
    (root / "e2e").mkdir(parents=True)
    (root / "e2e" / "page.css").write_bytes(PAGE_CSS)
    (root / HASHED_NAME).write_bytes(PAGE_CSS)
    manifest = {"paths": {"e2e/page.css": HASHED_NAME}, "version": "1.1"}
    (root / "staticfiles.json").write_text(json.dumps(manifest))
    (directory / "manifest_settings.py").write_text(MANIFEST_SETTINGS)
    path = os.pathsep.join(filter(None, [str(directory), server_environment.env.get("PYTHONPATH")]))
    environment = dataclasses.replace(
        server_environment,
        env={
            **server_environment.env,
            "DJANGO_SETTINGS_MODULE": "manifest_settings",
            "EXAMPLE_STATIC_ROOT": str(root),
            "PYTHONPATH": path,
        },
    )
    running = start_server("uvicorn", "127.0.0.1", environment)
    try:
        yield running
    finally:
        running.stop()


def test_hashed_names_are_cached_for_a_year_as_immutable(manifest_server: RunningServer) -> None:
    with httpx.Client(base_url=manifest_server.base_url, timeout=30.0) as client:
        hashed = client.get(f"/static/{HASHED_NAME}")
        plain = client.get("/static/e2e/page.css")
    assert (hashed.status_code, hashed.content) == (200, PAGE_CSS)
    assert hashed.headers["cache-control"] == IMMUTABLE
    assert (plain.status_code, plain.content) == (200, PAGE_CSS)
    assert plain.headers["cache-control"] == MAX_AGE
