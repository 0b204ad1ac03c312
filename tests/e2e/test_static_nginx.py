"""asgi_bridge's static files beside nginx's: the same files, the same requests, the same answers,
except where asgi_bridge differs on purpose.

nginx (nginx_server.py: ``etag on``, ``gzip_static on``, ``brotli_static on``, ``gzip_vary on``,
``max_ranges 16``, nothing else changed from its defaults) and asgi_bridge on uvicorn serve the
session's STATIC_ROOT with the files of static_corpus.write_static_tree. Each case of CASES goes
to both with httpx, each target of the hostile-path corpus with a raw socket, and the answers
are compared: status, body bytes (multipart/byteranges parsed into its parts), and the headers
that matter to a cache or a client resuming a download (ETag, Last-Modified, Content-Range,
Content-Length, Content-Encoding, Vary, Accept-Ranges, the media type).

Where the two differ, the difference is listed, with its reason, in GENERAL_DIFFERENCES (a rule
for a kind of response), CASE_DIFFERENCES or PATH_DIFFERENCES (one request each), and asserted
as it is: a difference that goes away, or a new one, fails the test. Nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from django.utils.http import http_date

from .conftest import RunningServer, ServerEnvironment, start_server
from .nginx_server import NginxServer, running_nginx
from .static_corpus import (
    ABSOLUTE_FORM_CLIMB,
    E2E,
    HOSTILE_TARGETS,
    LONG_TARGET,
    MEDIUM_SIZE,
    MTIME,
    RAW_UTF8,
    StaticTree,
    leaked,
    multipart_parts,
    raw_request,
    write_static_tree,
)

LAST_MODIFIED = http_date(MTIME)
EARLIER = http_date(MTIME - 1)
LATER = http_date(MTIME + 1)
ETAG_MEDIUM = f'"{MTIME:x}-{MEDIUM_SIZE:x}"'
SIXTEEN_RANGES = "bytes=" + ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(16))
SEVENTEEN_RANGES = "bytes=" + ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(17))
ENCODED_NAMES = {None: "page.css", "gzip": "page.css.gz", "br": "page.css.br"}

# Rules for kinds of responses, each with its reason; compare() applies them and asserts each.
GENERAL_DIFFERENCES = {
    "charset": "asgi_bridge adds '; charset=utf-8' to text types, as Django's responses do; "
    "nginx adds a charset only where 'charset' is configured",
    "accept-ranges": "asgi_bridge sends Accept-Ranges on every 200 and 206 of a file; nginx "
    "only on a 200 it could have ranged (not on a 206, not on a precompressed variant)",
    "error pages": "on 4xx each sends its own body (nginx an HTML page, asgi_bridge a line of "
    "text), and asgi_bridge repeats the file's validators on 412 and 416: only the status and "
    "Content-Range are compared",
    "multipart framing": "multipart/byteranges boundaries differ, and so the Content-Length of "
    "the whole: the parts are compared",
    "caching and sniffing": "asgi_bridge sends Cache-Control (STATIC_MAX_AGE) and "
    "X-Content-Type-Options: nosniff (SECURE_CONTENT_TYPE_NOSNIFF) with a file; nginx sends "
    "them only where 'expires' and 'add_header' say so",
}


@dataclass(frozen=True)
class Case:
    """A request for a file of STATIC_ROOT/e2e."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"


@dataclass(frozen=True)
class Difference:
    """What asgi_bridge and nginx answer to one request, and why they differ: their statuses,
    and header values each must (a string) or must not (None) send."""

    why: str
    asgi_bridge: int
    nginx: int
    asgi_bridge_headers: dict[str, str | None] = field(default_factory=dict)
    nginx_headers: dict[str, str | None] = field(default_factory=dict)


CASES: dict[str, Case] = {
    # Whole files and HEAD.
    "get text": Case("page.css"),
    "head text": Case("page.css", method="HEAD"),
    "get binary": Case("medium.bin"),
    "head binary": Case("medium.bin", method="HEAD"),
    "get 10 MiB": Case("big.bin"),
    "get link within the root": Case("inside.css"),
    "get NFD name": Case("cafe\u0301.txt"),
    # If-None-Match and If-Modified-Since.
    "if-none-match current": Case("medium.bin", {"if-none-match": ETAG_MEDIUM}),
    "if-none-match weak": Case("medium.bin", {"if-none-match": f"W/{ETAG_MEDIUM}"}),
    "if-none-match list": Case("medium.bin", {"if-none-match": f'"a", {ETAG_MEDIUM}'}),
    "if-none-match star": Case("medium.bin", {"if-none-match": "*"}),
    "if-none-match other": Case("medium.bin", {"if-none-match": '"other"'}),
    "if-none-match head": Case("medium.bin", {"if-none-match": ETAG_MEDIUM}, "HEAD"),
    "if-modified-since equal": Case("medium.bin", {"if-modified-since": LAST_MODIFIED}),
    "if-modified-since earlier": Case("medium.bin", {"if-modified-since": EARLIER}),
    "if-modified-since later": Case("medium.bin", {"if-modified-since": LATER}),
    "if-modified-since invalid": Case("medium.bin", {"if-modified-since": "yesterday"}),
    "if-none-match other, if-modified-since equal": Case(
        "medium.bin", {"if-none-match": '"other"', "if-modified-since": LAST_MODIFIED}
    ),
    "if-none-match current, if-modified-since earlier": Case(
        "medium.bin", {"if-none-match": ETAG_MEDIUM, "if-modified-since": EARLIER}
    ),
    # If-Match and If-Unmodified-Since.
    "if-match current": Case("medium.bin", {"if-match": ETAG_MEDIUM}),
    "if-match star": Case("medium.bin", {"if-match": "*"}),
    "if-match other": Case("medium.bin", {"if-match": '"other"'}),
    "if-match weak": Case("medium.bin", {"if-match": f"W/{ETAG_MEDIUM}"}),
    "if-unmodified-since equal": Case("medium.bin", {"if-unmodified-since": LAST_MODIFIED}),
    "if-unmodified-since earlier": Case("medium.bin", {"if-unmodified-since": EARLIER}),
    "if-match current, if-unmodified-since earlier": Case(
        "medium.bin", {"if-match": ETAG_MEDIUM, "if-unmodified-since": EARLIER}
    ),
    # One range.
    "range first bytes": Case("medium.bin", {"range": "bytes=0-99"}),
    "range open-ended": Case("medium.bin", {"range": "bytes=100000-"}),
    "range suffix": Case("medium.bin", {"range": "bytes=-100"}),
    "range past the end": Case("medium.bin", {"range": "bytes=70000-99999999"}),
    "range suffix longer than the file": Case("medium.bin", {"range": "bytes=-99999999"}),
    "range of a small file": Case("page.css", {"range": "bytes=5-9"}),
    "range of 10 MiB": Case("big.bin", {"range": "bytes=5000000-5100000"}),
    "range and if-none-match current": Case(
        "medium.bin", {"range": "bytes=0-5", "if-none-match": ETAG_MEDIUM}
    ),
    # Several ranges.
    "ranges three": Case("medium.bin", {"range": "bytes=0-9, 100000-100099, -10"}),
    "ranges out of order": Case("medium.bin", {"range": "bytes=100000-100010, 0-100"}),
    "ranges 200 bytes apart": Case("medium.bin", {"range": "bytes=0-9, 210-219"}),
    "ranges sixteen": Case("medium.bin", {"range": SIXTEEN_RANGES}),
    "ranges seventeen": Case("medium.bin", {"range": SEVENTEEN_RANGES}),
    "ranges overlapping": Case("medium.bin", {"range": "bytes=0-9, 5-20"}),
    "ranges 40 bytes apart": Case("medium.bin", {"range": "bytes=0-9, 50-60"}),
    "ranges adding up to more than the file": Case(
        "medium.bin", {"range": "bytes=0-150000, 100000-204799"}
    ),
    # Ranges that cannot be served or that are not ranges.
    "range after the end": Case("medium.bin", {"range": "bytes=204800-"}),
    "range suffix of nothing": Case("medium.bin", {"range": "bytes=-0"}),
    "range far after the end": Case("medium.bin", {"range": "bytes=300000-300010"}),
    "range backwards": Case("medium.bin", {"range": "bytes=9-5"}),
    "range of another unit": Case("medium.bin", {"range": "items=0-5"}),
    "range without a unit": Case("medium.bin", {"range": "0-5"}),
    "range on HEAD": Case("medium.bin", {"range": "bytes=0-9"}, "HEAD"),
    # If-Range.
    "if-range current etag": Case("medium.bin", {"range": "bytes=10-19", "if-range": ETAG_MEDIUM}),
    "if-range current date": Case(
        "medium.bin", {"range": "bytes=10-19", "if-range": LAST_MODIFIED}
    ),
    "if-range other etag": Case("medium.bin", {"range": "bytes=10-19", "if-range": '"other"'}),
    "if-range weak etag": Case(
        "medium.bin", {"range": "bytes=10-19", "if-range": f"W/{ETAG_MEDIUM}"}
    ),
    "if-range earlier date": Case("medium.bin", {"range": "bytes=10-19", "if-range": EARLIER}),
    # Precompressed variants.
    "gzip": Case("page.css", {"accept-encoding": "gzip"}),
    "br": Case("page.css", {"accept-encoding": "br"}),
    "gzip and br": Case("page.css", {"accept-encoding": "gzip, deflate, br"}),
    "gzip, br refused": Case("page.css", {"accept-encoding": "gzip, br;q=0"}),
    "gzip refused": Case("page.css", {"accept-encoding": "gzip;q=0"}),
    "identity": Case("page.css", {"accept-encoding": "identity"}),
    "deflate only": Case("page.css", {"accept-encoding": "deflate"}),
    "gzip for a file without variants": Case("plain.txt", {"accept-encoding": "gzip, br"}),
    "br revalidated": Case(
        "page.css", {"accept-encoding": "br", "if-none-match": f'"{MTIME:x}-2c7"'}
    ),
    "br preferred less than gzip": Case("page.css", {"accept-encoding": "br;q=0.5, gzip"}),
    "gzip preferred less than identity": Case("page.css", {"accept-encoding": "gzip;q=0.5"}),
    "identity named first": Case("page.css", {"accept-encoding": "identity;q=1, gzip;q=0.5"}),
    "any coding": Case("page.css", {"accept-encoding": "*"}),
    "x-gzip": Case("page.css", {"accept-encoding": "x-gzip"}),
    "range of the gzip variant": Case(
        "page.css", {"accept-encoding": "gzip", "range": "bytes=0-9"}
    ),
    "range of the br variant": Case("page.css", {"accept-encoding": "br", "range": "bytes=0-9"}),
    # Methods.
    "post": Case("page.css", method="POST"),
    "delete": Case("page.css", method="DELETE"),
}

Q_VALUES = (
    "asgi_bridge ranks the codings by their q-values and sends the file as it is when the "
    "client weighs that (identity, 1 unless said otherwise) above every variant; nginx's "
    "gzip_static and brotli_static take a variant whenever its coding is accepted at all, br first"
)
NO_RANGES_OF_VARIANTS = (
    "nginx does not range a precompressed variant and sends it whole; asgi_bridge ranges the "
    "variant it sends, as RFC 9110 has ranges apply to the selected representation"
)
CASE_DIFFERENCES: dict[str, Difference] = {
    "if-modified-since later": Difference(
        "nginx's default 'if_modified_since exact' wants the very date; asgi_bridge answers 304 "
        "for any date not before the file's, as RFC 9110 section 13.1.3 says",
        304,
        200,
    ),
    "if-none-match current, if-modified-since earlier": Difference(
        "with If-None-Match, RFC 9110 section 13.2.2 has If-Modified-Since ignored (asgi_bridge);"
        " nginx wants both to hold",
        304,
        200,
    ),
    "if-match current, if-unmodified-since earlier": Difference(
        "with If-Match, RFC 9110 section 13.2.2 has If-Unmodified-Since ignored (asgi_bridge); "
        "nginx wants both to hold",
        200,
        412,
    ),
    "ranges overlapping": Difference(
        "asgi_bridge merges overlapping ranges into one part (RFC 9110 section 14.3 allows it); "
        "nginx sends each range as asked",
        206,
        206,
        asgi_bridge_headers={"content-range": f"bytes 0-20/{MEDIUM_SIZE}"},
    ),
    "ranges 40 bytes apart": Difference(
        "asgi_bridge merges ranges less than 80 bytes apart, whose part headers would cost more "
        "than the gap; nginx sends each range as asked",
        206,
        206,
        asgi_bridge_headers={"content-range": f"bytes 0-60/{MEDIUM_SIZE}"},
    ),
    "ranges adding up to more than the file": Difference(
        "nginx ignores ranges that add up to more than the file and sends it whole; asgi_bridge "
        "merges them into the one range they cover",
        206,
        200,
        asgi_bridge_headers={"content-range": f"bytes 0-{MEDIUM_SIZE - 1}/{MEDIUM_SIZE}"},
    ),
    "range backwards": Difference(
        "a range whose end is before its start makes the header invalid, which RFC 9110 section "
        "14.2 lets a server ignore (asgi_bridge, 200) or answer 416 (nginx)",
        200,
        416,
    ),
    "range on HEAD": Difference(
        "Range applies to GET only (RFC 9110 section 14.2): asgi_bridge answers HEAD as it "
        "answers a GET without Range; nginx answers it 206",
        200,
        206,
    ),
    "br preferred less than gzip": Difference(
        Q_VALUES,
        200,
        200,
        asgi_bridge_headers={"content-encoding": "gzip"},
        nginx_headers={"content-encoding": "br"},
    ),
    "gzip preferred less than identity": Difference(
        Q_VALUES,
        200,
        200,
        asgi_bridge_headers={"content-encoding": None},
        nginx_headers={"content-encoding": "gzip"},
    ),
    "identity named first": Difference(
        Q_VALUES,
        200,
        200,
        asgi_bridge_headers={"content-encoding": None},
        nginx_headers={"content-encoding": "gzip"},
    ),
    "any coding": Difference(
        "asgi_bridge takes '*' as accepting every coding, as RFC 9110 section 12.5.3 says, and "
        "sends the smallest variant; nginx's modules do not read '*'",
        200,
        200,
        asgi_bridge_headers={"content-encoding": "br"},
        nginx_headers={"content-encoding": None},
    ),
    "x-gzip": Difference(
        "asgi_bridge reads x-gzip as gzip (RFC 9110 section 8.4.1.3); nginx's gzip_static does not",
        200,
        200,
        asgi_bridge_headers={"content-encoding": "gzip"},
        nginx_headers={"content-encoding": None},
    ),
    "range of the gzip variant": Difference(NO_RANGES_OF_VARIANTS, 206, 200),
    "range of the br variant": Difference(NO_RANGES_OF_VARIANTS, 206, 200),
    "post": Difference(
        "asgi_bridge's 405 says which methods a file allows (RFC 9110 section 15.5.6); nginx's "
        "does not",
        405,
        405,
        asgi_bridge_headers={"allow": "GET, HEAD"},
        nginx_headers={"allow": None},
    ),
    "delete": Difference(
        "asgi_bridge's 405 says which methods a file allows; nginx's does not",
        405,
        405,
        asgi_bridge_headers={"allow": "GET, HEAD"},
        nginx_headers={"allow": None},
    ),
}


@pytest.fixture(scope="module")
def static_tree(server_environment: ServerEnvironment) -> StaticTree:
    return write_static_tree(Path(server_environment.env["EXAMPLE_STATIC_ROOT"]))


@pytest.fixture(scope="module")
def nginx(
    static_tree: StaticTree, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxServer]:
    with running_nginx(static_tree.root, tmp_path_factory.mktemp("nginx")) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    server_environment: ServerEnvironment, static_tree: StaticTree
) -> Iterator[RunningServer]:
    """asgi_bridge on uvicorn; named ``server`` so that conftest attaches its log to a failure."""
    running = start_server("uvicorn", "127.0.0.1", server_environment)
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Answer:
    """A response and its body as they came over the wire."""

    status: int
    headers: httpx.Headers
    body: bytes

    def header(self, name: str) -> str | None:
        value: str | None = self.headers.get(name)
        return value


def ask(base_url: str, case: Case) -> Answer:
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        del client.headers["accept-encoding"]
        with client.stream(case.method, f"{E2E}/{case.name}", headers=case.headers) as response:
            body = b"".join(response.iter_raw())
            return Answer(response.status_code, response.headers, body)


def compared(answer: Answer) -> dict[str, object]:
    """What must be the same in both servers' answers, GENERAL_DIFFERENCES left out."""
    if answer.status >= 400:
        return {"status": answer.status, "content-range": answer.header("content-range")}
    view: dict[str, object] = {"status": answer.status, "body": answer.body}
    for name in ("etag", "last-modified", "content-encoding", "vary", "content-range"):
        view[name] = answer.header(name)
    content_type = answer.header("content-type")
    if content_type is not None and content_type.startswith("multipart/byteranges"):
        view["body"] = [
            (media_type(part_type), part_range, part_body)
            for part_type, part_range, part_body in multipart_parts(content_type, answer.body)
        ]
    else:
        view["content-type"] = None if content_type is None else media_type(content_type)
        view["content-length"] = answer.header("content-length")
    return view


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip()


def check_general_differences(asgi_bridge: Answer, nginx: Answer) -> None:
    """Assert GENERAL_DIFFERENCES' "accept-ranges", "charset" and "caching and sniffing" as
    they are ("error pages" and "multipart framing" are what compared() leaves out)."""
    if asgi_bridge.status in (200, 206):
        assert asgi_bridge.header("accept-ranges") == "bytes"
        assert asgi_bridge.header("cache-control") == "public, max-age=60"
        assert asgi_bridge.header("x-content-type-options") == "nosniff"
    if nginx.status == 200 and nginx.header("content-encoding") is None:
        assert nginx.header("accept-ranges") == "bytes"
    elif nginx.status in (200, 206):
        assert nginx.header("accept-ranges") is None
    assert nginx.header("cache-control") is None
    assert nginx.header("x-content-type-options") is None
    asgi_type, nginx_type = asgi_bridge.header("content-type"), nginx.header("content-type")
    if (
        asgi_bridge.status == nginx.status
        and asgi_bridge.status in (200, 206)
        and asgi_type is not None
        and nginx_type is not None
        and not asgi_type.startswith("multipart/")
        and not nginx_type.startswith("multipart/")
    ):
        if asgi_type.startswith("text/"):
            assert asgi_type == f"{media_type(asgi_type)}; charset=utf-8"
        assert nginx_type == media_type(asgi_type)


def check_body(answer: Answer, case: Case, static_tree: StaticTree) -> None:
    """The body is what its own status and headers say: the representation whole, its range,
    each part's range, or nothing."""
    if case.method == "HEAD" or answer.status == 304:
        assert answer.body == b""
        return
    if answer.status not in (200, 206):
        return
    coding = answer.header("content-encoding")
    name = case.name if coding is None else ENCODED_NAMES[coding]
    content = static_tree.content(name)
    content_type = answer.header("content-type") or ""
    if answer.status == 200:
        assert answer.body == content
    elif content_type.startswith("multipart/byteranges"):
        for _, part_range, part_body in multipart_parts(content_type, answer.body):
            assert part_body == slice_of(content, part_range)
    else:
        assert answer.body == slice_of(content, answer.header("content-range") or "")


def slice_of(content: bytes, content_range: str) -> bytes:
    """The bytes of ``content`` that a Content-Range value such as "bytes 0-9/100" names."""
    unit, _, spec = content_range.partition(" ")
    span, _, size = spec.partition("/")
    first, _, last = span.partition("-")
    assert (unit, int(size)) == ("bytes", len(content)), content_range
    return content[int(first) : int(last) + 1]


@pytest.mark.parametrize("case_id", list(CASES))
def test_same_answers_as_nginx(
    case_id: str, server: RunningServer, nginx: NginxServer, static_tree: StaticTree
) -> None:
    case = CASES[case_id]
    asgi_bridge = ask(server.base_url, case)
    from_nginx = ask(nginx.base_url, case)
    check_body(asgi_bridge, case, static_tree)
    check_body(from_nginx, case, static_tree)
    check_general_differences(asgi_bridge, from_nginx)
    difference = CASE_DIFFERENCES.get(case_id)
    if difference is None:
        assert compared(asgi_bridge) == compared(from_nginx)
        return
    # A documented difference, asserted as it is.
    assert (asgi_bridge.status, from_nginx.status) == (difference.asgi_bridge, difference.nginx)
    for answer, expected in (
        (asgi_bridge, difference.asgi_bridge_headers),
        (from_nginx, difference.nginx_headers),
    ):
        assert {name: answer.header(name) for name in expected} == expected
    named = {*difference.asgi_bridge_headers, *difference.nginx_headers}
    assert compared(asgi_bridge) != compared(from_nginx) or any(
        asgi_bridge.header(name) != from_nginx.header(name) for name in named
    ), f"no longer differs: {difference.why}"


def test_every_difference_names_a_case() -> None:
    assert set(CASE_DIFFERENCES) <= set(CASES)
    assert set(PATH_DIFFERENCES) <= {hostile.target for hostile in HOSTILE_TARGETS}


# ---------------------------------------------------------------------------------------------
# Hostile paths

RESOLVES_DOT_SEGMENTS = (
    "nginx resolves dot segments itself and serves what the resulting path names, inside its "
    "root (a URL with dot segments is hand-made, browsers resolve them); asgi_bridge refuses any "
    "dot segment with 400"
)
BACKSLASH_IS_A_NAME = (
    "nginx takes a backslash for a character of a name on POSIX; asgi_bridge refuses it with "
    "400, as a separator on Windows"
)
MERGES_SLASHES = (
    "nginx merges repeated slashes (merge_slashes on) and serves the file; asgi_bridge serves no "
    "name with an empty segment"
)
DIRECTORY = (
    "nginx answers a directory with 403 (no autoindex) or a 301 to add its slash; asgi_bridge "
    "leaves directories to Django, whose 404 it is"
)
DOTFILE = (
    "nginx serves dotfiles unless told not to (location ~ /\\.); asgi_bridge never serves "
    "them: nginx leaks"
)
LINK_OUT = (
    "nginx follows links out of its root unless disable_symlinks is set; asgi_bridge follows "
    "links only within STATIC_ROOT (STATIC_FOLLOW_SYMLINKS is off): nginx leaks"
)


@dataclass(frozen=True)
class PathDifference:
    """What nginx answers to a hostile target where asgi_bridge (on uvicorn) answers otherwise:
    its status, whether its body holds a secret, and why."""

    nginx: int
    why: str
    nginx_leaks: bool = False


def resolved(status: int) -> PathDifference:
    return PathDifference(status, RESOLVES_DOT_SEGMENTS)


def backslash() -> PathDifference:
    return PathDifference(404, BACKSLASH_IS_A_NAME)


def dotfile() -> PathDifference:
    return PathDifference(200, DOTFILE, nginx_leaks=True)


def link_out() -> PathDifference:
    return PathDifference(200, LINK_OUT, nginx_leaks=True)


PATH_DIFFERENCES: dict[str, PathDifference] = {
    "/static/../secret.txt": resolved(404),
    f"{E2E}/../../secret.txt": resolved(404),
    "/static/..": resolved(404),
    f"{E2E}/page.css/..": resolved(403),
    "/static/%2e%2e/secret.txt": resolved(404),
    "/static/%2E%2E/secret.txt": resolved(404),
    "/static/.%2e/secret.txt": resolved(404),
    "/static/%2E./secret.txt": resolved(404),
    "/static/%2e%2e%2fsecret.txt": resolved(404),
    "/static/..%2fsecret.txt": resolved(404),
    f"{E2E}/..%2f..%2fsecret.txt": resolved(404),
    "/static/./e2e/page.css": resolved(200),
    f"{E2E}/./page.css": resolved(200),
    "/static/%2e/e2e/page.css": resolved(200),
    f"{E2E}/page.css/.": resolved(404),
    "/static/../secret.txt?x=1": resolved(404),
    f"{E2E}/page.css%3f/../../secret.txt": resolved(404),
    f"{E2E}/page.css%23/../../secret.txt": resolved(404),
    ABSOLUTE_FORM_CLIMB: resolved(404),
    "/%2e%2e/secret.txt": PathDifference(
        400,
        "nginx refuses with 400 a path that climbs above the site's root; outside /static/ the "
        "path is Django's, which answers 404",
    ),
    "/static/%u002e%u002e/secret.txt": PathDifference(
        400,
        "nginx refuses a malformed percent-escape with 400; uvicorn hands '%u' over undecoded, "
        "a name no file has",
    ),
    f"{E2E}%5cpage.css": backslash(),
    "/static/..%5csecret.txt": backslash(),
    "/static/%5c..%5c..%5csecret.txt": backslash(),
    "/static/..\\secret.txt": backslash(),
    "/static/\\\\server\\share\\secret.txt": backslash(),
    "/static/C:%5cWindows%5cwin.ini": backslash(),
    "/static/c:..%5csecret.txt": backslash(),
    "/static//e2e/page.css": PathDifference(200, MERGES_SLASHES),
    f"{E2E}//page.css": PathDifference(200, MERGES_SLASHES),
    "/static/.env": dotfile(),
    "/static/%2eenv": dotfile(),
    "/static/.git/config": dotfile(),
    f"{E2E}/.hidden": dotfile(),
    "/static/.git/": PathDifference(403, DIRECTORY),
    f"{E2E}/": PathDifference(403, DIRECTORY),
    E2E: PathDifference(301, DIRECTORY),
    "/static/": PathDifference(403, DIRECTORY),
    f"{E2E}/out.txt": link_out(),
    f"{E2E}/relative-out.txt": link_out(),
    f"{E2E}/outdir/secret.txt": link_out(),
    f"{E2E}/sibling.txt": link_out(),
    LONG_TARGET: PathDifference(
        414,
        "nginx refuses a request line longer than large_client_header_buffers (8 KiB) with "
        "414; uvicorn takes it, and no file has that name",
    ),
    RAW_UTF8: PathDifference(
        200,
        "uvicorn's parser (httptools), not asgi_bridge, refuses raw UTF-8 in a target with "
        "400; nginx serves the NFD name, as asgi_bridge does on granian",
    ),
}


def test_hostile_paths_beside_nginx(
    server: RunningServer, nginx: NginxServer, static_tree: StaticTree
) -> None:
    """Each corpus target, raw, to both: asgi_bridge never leaks; nginx answers as asgi_bridge
    does or as PATH_DIFFERENCES says, leaks included."""
    found: list[str] = []
    for hostile in HOSTILE_TARGETS:
        ours = raw_request("127.0.0.1", server.port, hostile.wire)
        theirs = raw_request("127.0.0.1", nginx.port, hostile.wire)
        assert ours is not None and theirs is not None, hostile.target
        assert not leaked(ours.body), hostile.target
        expected = PATH_DIFFERENCES.get(hostile.target)
        actual = (theirs.status, bool(leaked(theirs.body)))
        if expected is None:
            same = actual == (ours.status, False) and (
                ours.status != 200 or ours.body == theirs.body
            )
            if not same:
                found.append(f"{hostile.target[:70]!r}: asgi_bridge {ours.status}, nginx {actual}")
        elif actual != (expected.nginx, expected.nginx_leaks) or ours.status == expected.nginx:
            found.append(
                f"{hostile.target[:70]!r}: expected nginx {expected.nginx} "
                f"(leaks: {expected.nginx_leaks}) beside asgi_bridge's own answer, got nginx "
                f"{actual} and asgi_bridge {ours.status}: {expected.why}"
            )
    assert not found, "\n".join(found)
