"""What the static-file end-to-end tests serve and send: the files written into the session's
STATIC_ROOT (with secrets just outside it and links pointing out), the hostile-path corpus with
what asgi_bridge must do with each path, and a raw HTTP/1.1 client for request targets that no
HTTP library sends as they are.

Used by test_static_servers.py (asgi_bridge on uvicorn, granian, hypercorn and daphne) and
test_static_nginx.py (the same files through nginx, for comparison).
"""

from __future__ import annotations

import enum
import gzip
import os
import random
import re
import socket
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

import brotli

# Directory of STATIC_ROOT holding the files below; collectstatic never writes there.
SUBDIRECTORY = "e2e"
# Every file written here has this modification time, so that ETag and Last-Modified are known.
MTIME = 1_750_000_000
MiB = 1024 * 1024
BIG_SIZE = 10 * MiB
# Larger than asgi_bridge's SMALL_FILE (64 KiB): read from disk for each response.
MEDIUM_SIZE = 200 * 1024
# More than a connection buffers in the kernel (test_static_servers.py checks it).
CROWD_SIZE = 6 * MiB

# What lies outside STATIC_ROOT: none of it may ever reach a client of asgi_bridge.
SECRET = b"SECRET-OUTSIDE-STATIC-ROOT-7f3c2a9e\n"
SIBLING_SECRET = b"SECRET-IN-A-SIBLING-OF-STATIC-ROOT-51d0\n"
# Dotfiles inside STATIC_ROOT: not served either.
DOTENV = b"SECRET_KEY=DOTFILE-SECRET-0b6e\n"
GIT_CONFIG = b"[remote]\n\turl = https://DOTFILE-SECRET-GIT-9c41@example.invalid/\n"
HIDDEN = b"DOTFILE-SECRET-HIDDEN-44aa\n"
# Bytes found in any of them, or in /etc/passwd: a response holding one has leaked.
LEAK_MARKERS = (b"SECRET-OUTSIDE", b"SECRET-IN-A-SIBLING", b"DOTFILE-SECRET", b"root:x:0:0")


def seeded_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


PAGE_CSS = b"".join(
    f".rule-{n} {{ color: #{n * 2654435761 % 0xFFFFFF:06x}; margin: {n % 7}px; }}\n".encode()
    for n in range(120)
)
PLAIN_TXT = b"plain text, no precompressed variant beside it\n" * 20
# NFD: "e" and a combining acute accent; a request for the NFC name must not find it.
NFD_NAME = "cafe\u0301.txt"
NFD_TXT = b"a name in NFD\n"


@dataclass(frozen=True)
class StaticTree:
    """The files written into STATIC_ROOT/e2e, and what lies around them."""

    root: Path
    outside: Path
    # Name under STATIC_ROOT to content, for every file served.
    files: dict[str, bytes] = field(repr=False)

    def url(self, name: str) -> str:
        return f"/static/{SUBDIRECTORY}/{name}"

    def content(self, name: str) -> bytes:
        return self.files[f"{SUBDIRECTORY}/{name}"]


def write_static_tree(static_root: Path) -> StaticTree:
    """Write the test files into ``static_root`` (once: a second call finds them and changes
    nothing, so that every server and nginx see the same validators)."""
    outside = static_root.parent
    directory = static_root / SUBDIRECTORY
    files: dict[str, bytes] = {
        "page.css": PAGE_CSS,
        "page.css.gz": gzip.compress(PAGE_CSS, mtime=0),
        "page.css.br": brotli.compress(PAGE_CSS),
        "plain.txt": PLAIN_TXT,
        "medium.bin": seeded_bytes(MEDIUM_SIZE, 19),
        "big.bin": seeded_bytes(BIG_SIZE, 20),
        "crowd.bin": seeded_bytes(CROWD_SIZE, 21),
        NFD_NAME: NFD_TXT,
    }
    # What a client gets for each name; inside.css is a link to page.css.
    served = {**files, "inside.css": PAGE_CSS}
    tree = StaticTree(
        static_root,
        outside,
        {f"{SUBDIRECTORY}/{name}": content for name, content in served.items()},
    )
    marker = directory / ".written"
    if marker.exists():
        return tree
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write_file(directory / name, content)
    write_file(outside / "secret.txt", SECRET)
    sibling = Path(f"{static_root}-sibling")
    sibling.mkdir(exist_ok=True)
    write_file(sibling / "secret.txt", SIBLING_SECRET)
    write_file(static_root / ".env", DOTENV)
    (static_root / ".git").mkdir(exist_ok=True)
    write_file(static_root / ".git" / "config", GIT_CONFIG)
    write_file(directory / ".hidden", HIDDEN)
    (directory / "inside.css").symlink_to(directory / "page.css")
    (directory / "out.txt").symlink_to(outside / "secret.txt")
    (directory / "outdir").symlink_to(outside, target_is_directory=True)
    (directory / "sibling.txt").symlink_to(sibling / "secret.txt")
    (directory / "relative-out.txt").symlink_to(Path("..", "..", "secret.txt"))
    marker.write_bytes(b"")
    return tree


def write_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    os.utime(path, (MTIME, MTIME))


class Outcome(enum.Enum):
    """What asgi_bridge does with a path when the server hands it over."""

    # 400 "Bad Request" from asgi_bridge.static: a dot segment, NUL or backslash.
    REFUSED = "refused"
    # Not a file asgi_bridge serves: left to Django, which answers the project's 404.
    NOT_SERVED = "not served"
    # A file inside STATIC_ROOT, sent whole (``served`` names it under STATIC_ROOT/e2e).
    SERVED = "served"


@dataclass(frozen=True)
class HostileTarget:
    """A request target as sent on the wire, and what asgi_bridge must do with it."""

    target: str
    outcome: Outcome
    why: str
    served: str | None = None

    @property
    def wire(self) -> bytes:
        """The target's bytes: UTF-8 where it holds raw non-ASCII characters."""
        return self.target.encode("utf-8")


def refused(target: str, why: str) -> HostileTarget:
    return HostileTarget(target, Outcome.REFUSED, why)


def not_served(target: str, why: str) -> HostileTarget:
    return HostileTarget(target, Outcome.NOT_SERVED, why)


def served(target: str, name: str, why: str) -> HostileTarget:
    return HostileTarget(target, Outcome.SERVED, why, served=name)


E2E = f"/static/{SUBDIRECTORY}"
# Targets that some servers answer themselves, or hand over changed (test_static_servers.py
# pins what each server does with them).
RAW_UTF8 = f"{E2E}/cafe\u0301.txt"
RAW_FRAGMENT = f"{E2E}/page.css#/../../secret.txt"
RAW_NUL = f"{E2E}/page.css\x00"
RAW_DEL = f"{E2E}/page.css\x7f"
RAW_SPACE = f"{E2E}/ page.css"
ABSOLUTE_FORM_CLIMB = "http://127.0.0.1/static/%2e%2e/secret.txt"
ABSOLUTE_FORM = f"http://127.0.0.1{E2E}/page.css"
LONG_TARGET = "/static/" + "b" * 20_000
HOSTILE_TARGETS: list[HostileTarget] = [
    # Traversal with dot segments, as sent and once percent-encoded: the server decodes once,
    # asgi_bridge sees "..".
    refused("/static/../secret.txt", "a dot segment right after the prefix"),
    refused(f"{E2E}/../../secret.txt", "two dot segments climbing out of the root"),
    refused("/static/..", "the path ends in a dot segment"),
    refused(f"{E2E}/page.css/..", "a dot segment after a file name"),
    refused("/static/%2e%2e/secret.txt", "%2e%2e decoded once is .."),
    refused("/static/%2E%2E/secret.txt", "upper-case percent-encoding of .."),
    refused("/static/.%2e/secret.txt", "half-encoded .."),
    refused("/static/%2E./secret.txt", "the other half encoded"),
    refused("/static/%2e%2e%2fsecret.txt", "../ wholly encoded: a slash inside one segment"),
    refused("/static/..%2fsecret.txt", "..%2f: the server decodes %2f into a separator"),
    refused(f"{E2E}/..%2f..%2fsecret.txt", "..%2f twice"),
    refused("/static/./e2e/page.css", "a single-dot segment names the same file another way"),
    refused(f"{E2E}/./page.css", "a single-dot segment inside the path"),
    refused("/static/%2e/e2e/page.css", "an encoded single-dot segment"),
    refused(f"{E2E}/page.css/.", "a trailing single-dot segment"),
    refused("/static/../secret.txt?x=1", "a query string does not hide the dot segment"),
    # Double encoding: decoded once, it is a literal name that no file has.
    not_served("/static/%252e%252e/secret.txt", "double-encoded ..: a literal %2e%2e"),
    not_served("/static/%252e%252e%252fsecret.txt", "double-encoded ../ in one segment"),
    not_served(f"{E2E}/%252e%252e%252f%252e%252e%252fsecret.txt", "double-encoded, twice"),
    # Overlong UTF-8 and look-alike dots: never decoded to ASCII dots.
    not_served("/static/%c0%ae%c0%ae/secret.txt", "overlong UTF-8 for .. (invalid UTF-8)"),
    not_served("/static/%e0%80%ae%e0%80%ae/secret.txt", "three-byte overlong UTF-8 for .."),
    not_served("/static/%c0%af../secret.txt", "overlong UTF-8 for /"),
    not_served("/static/%ef%bc%8e%ef%bc%8e/secret.txt", "fullwidth full stops, NFKC-like to .."),
    not_served("/static/%e2%80%a4%e2%80%a4/secret.txt", "one-dot leaders, not dots"),
    not_served("/static/%u002e%u002e/secret.txt", "IIS-style %u escapes are not decoded"),
    # Dot tricks that are not dot segments.
    not_served("/static/....//secret.txt", "four dots and an empty segment"),
    not_served("/static/....//....//secret.txt", "the ....// filter-evasion pattern"),
    not_served("/static/..;/secret.txt", "..; is a name (Tomcat path parameters), not .."),
    not_served(f"{E2E}/page.css/..;/..;/secret.txt", "..; after a file name"),
    not_served("/static/.../secret.txt", "three dots are a name"),
    not_served(f"{E2E}/page.css;jsessionid=x", "a path parameter is part of the name"),
    # NUL.
    refused(f"{E2E}/page.css%00.png", "NUL ends a C string early: page.css posing as .png"),
    refused("/static/%00", "a lone NUL"),
    refused(f"{E2E}%00/page.css", "NUL in a directory name"),
    refused(f"{E2E}/page.css%00", "a trailing NUL"),
    # Backslashes: separators on Windows.
    refused(f"{E2E}%5cpage.css", "an encoded backslash as a separator"),
    refused("/static/..%5csecret.txt", "..\\ encoded"),
    refused("/static/%5c..%5c..%5csecret.txt", "\\..\\..\\ encoded"),
    refused("/static/..\\secret.txt", "a raw backslash after .."),
    refused("/static/\\\\server\\share\\secret.txt", "a raw UNC path"),
    # Absolute paths after the prefix, and no prefix at all.
    not_served("/static//etc/passwd", "an absolute path after the prefix: an empty segment"),
    not_served("/static/%2fetc%2fpasswd", "an encoded absolute path"),
    not_served("/static/%2f%2fetc%2fpasswd", "an encoded //"),
    not_served("/static/etc/passwd", "a relative name that is no file of the root"),
    not_served("//etc/passwd", "not under the prefix: Django's"),
    not_served("/static//e2e/page.css", "an empty segment: a directory's listing, not a file"),
    not_served(f"{E2E}//page.css", "an empty segment inside the path"),
    # Windows drive letters and file-system quirks.
    not_served("/static/C:/Windows/win.ini", "a drive letter is a name on POSIX"),
    refused("/static/C:%5cWindows%5cwin.ini", "a drive letter with backslashes"),
    refused("/static/c:..%5csecret.txt", "a drive-relative climb"),
    not_served(f"{E2E}/page.css::$DATA", "an NTFS alternate data stream"),
    not_served(f"{E2E}/page.css.", "a trailing dot, which Windows drops"),
    not_served(f"{E2E}/page.css%20", "a trailing space, which Windows drops"),
    not_served(f"{E2E}/PAGE.CSS", "names are case-sensitive"),
    not_served(f"{E2E}/page~1.css", "an 8.3 short name"),
    # Dotfiles and directories.
    not_served("/static/.env", "a dotfile at the root"),
    not_served("/static/%2eenv", "a dotfile, its dot encoded"),
    not_served("/static/.git/config", "a file in a dot-directory"),
    not_served("/static/.git/", "a dot-directory"),
    not_served(f"{E2E}/.hidden", "a dotfile in a subdirectory"),
    not_served(f"{E2E}/", "a directory"),
    not_served(E2E, "a directory without its slash"),
    not_served("/static/", "the root itself"),
    not_served("/static", "the prefix without its slash"),
    # Links.
    not_served(f"{E2E}/out.txt", "a link to a file outside the root"),
    not_served(f"{E2E}/relative-out.txt", "a relative link climbing out of the root"),
    not_served(f"{E2E}/outdir/secret.txt", "a file under a link to a directory outside"),
    not_served(f"{E2E}/sibling.txt", "a link to a sibling whose name starts like the root's"),
    served(f"{E2E}/inside.css", "page.css", "a link within the root is followed"),
    # Long names.
    not_served("/static/" + "a" * 300, "a name longer than NAME_MAX"),
    not_served("/static/" + "a/" * 1500 + "x", "a path longer than PATH_MAX"),
    not_served("/static/" + "%2e" * 1000, "a thousand encoded dots: one long name"),
    not_served(LONG_TARGET, "a 20 kB request target"),
    # Unicode.
    not_served(f"{E2E}/caf%C3%A9.txt", "NFC of a name stored in NFD: no normalisation"),
    served(f"{E2E}/cafe%CC%81.txt", NFD_NAME, "the name as stored, in NFD"),
    served(RAW_UTF8, NFD_NAME, "the NFD name as raw UTF-8 on the wire"),
    not_served(f"{E2E}/page.css%E2%80%8B", "a zero-width space after the name"),
    not_served(f"{E2E}/page.css%0d%0aX-Injected:%201", "CRLF in the name: no header injection"),
    not_served(f"{E2E}/page.css%09", "a tab after the name"),
    # Raw control characters and spaces, which no client sends unencoded.
    refused(RAW_NUL, "a raw NUL byte"),
    not_served(RAW_DEL, "a raw DEL byte: a name no file has"),
    not_served(RAW_SPACE, "a raw space splits the request line"),
    # Query and fragment smuggling.
    served(f"{E2E}/page.css?/../../secret.txt", "page.css", "a query is not part of the path"),
    refused(f"{E2E}/page.css%3f/../../secret.txt", "an encoded ? is part of the path"),
    refused(f"{E2E}/page.css%23/../../secret.txt", "an encoded # is part of the path"),
    served(RAW_FRAGMENT, "page.css", "a raw # starts a fragment, which is no part of the path"),
    # Prefix confusion.
    not_served("/staticx/../secret.txt", "a look-alike prefix: Django's"),
    not_served("/STATIC/e2e/page.css", "the prefix is case-sensitive"),
    served("/static%2fe2e/page.css", "page.css", "%2f decoded by the server: a plain path"),
    not_served("/static/e2e/page.css/", "a file name with a trailing slash"),
    not_served("/static/e2e/page.css/x", "a file name used as a directory"),
    not_served("/%2e%2e/secret.txt", "a climb from the site's root: Django's"),
    # The absolute form, which a server must accept (RFC 9112, section 3.2.2).
    refused(ABSOLUTE_FORM_CLIMB, "the absolute form: its path holds a dot segment"),
    served(ABSOLUTE_FORM, "page.css", "the absolute form of a plain path"),
]


@dataclass
class RawResponse:
    """A response as it came over a socket: status, headers (lower-case names) and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def raw_request(
    host: str,
    port: int,
    target: bytes,
    *,
    method: bytes = b"GET",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> RawResponse | None:
    """Send one HTTP/1.1 request with ``target`` byte for byte; None if the server closed the
    connection without an answer."""
    lines = [method + b" " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode()]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in (headers or {}).items()]
    lines += [b"Connection: close", b"", b""]
    received = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(b"\r\n".join(lines))
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    if not received:
        return None
    return parse_response(bytes(received), head_only=method == b"HEAD")


STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ?([^\r\n]*)")


def parse_response(data: bytes, head_only: bool = False) -> RawResponse:
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        raise AssertionError(f"no end of headers in {data[:500]!r}")
    status_line, *header_lines = head.split(b"\r\n")
    matched = STATUS_LINE.match(status_line)
    if matched is None:
        raise AssertionError(f"not a status line: {status_line!r}")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    response = RawResponse(int(matched.group(1)), matched.group(2).decode("latin-1"), headers, b"")
    status = response.status
    if head_only or status == 304 or status == 204 or 100 <= status < 200:
        return response
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        response.body = dechunk(rest)
    elif response.header("content-length") is not None:
        response.body = rest[: int(response.header("content-length") or 0)]
    else:
        response.body = rest
    return response


def dechunk(data: bytes) -> bytes:
    body = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += data[:size]
        data = data[size + 2 :]
    return bytes(body)


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """The (Content-Type, Content-Range, bytes) of each part of a multipart/byteranges body."""
    assert content_type.startswith("multipart/byteranges; boundary="), content_type
    message = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = message.get_payload()
    assert isinstance(parts, list), body[:300]
    found = []
    for part in parts:
        assert isinstance(part, Message), part
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes), part
        found.append((str(part["Content-Type"]), str(part["Content-Range"]), payload))
    return found


def leaked(body: bytes) -> list[bytes]:
    """The LEAK_MARKERS found in ``body``."""
    return [marker for marker in LEAK_MARKERS if marker in body]
