"""Answering one request for a static or media file: conditional requests, ranges,
precompressed variants, HEAD, and the body from memory, by ``http.response.pathsend``, or read
in pieces, all on the event loop with no thread held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from ..types import Message, Receive, Scope, Send
from .conditional import if_range_holds, precondition_status
from .encodings import choose_coding
from .files import CHUNK_SIZE, FileEntry, FileIndex, Locate, OpenedFile, read_chunk
from .paths import HostilePath, file_name
from .ranges import ByteRange, Multipart, Unsatisfiable, parse_range

logger = logging.getLogger("asgi_bridge")
# Where Django logs a request for a file outside where it may look (SuspiciousFileOperation).
security_logger = logging.getLogger("django.security.SuspiciousFileOperation")

PATHSEND = "http.response.pathsend"
# The request headers a file's response depends on.
CONSULTED_HEADERS = frozenset(
    (
        b"accept-encoding",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
    )
)
ALLOWED_METHODS = b"GET, HEAD"

# A piece of a body: bytes as they are, or (offset, length) of the file.
Piece = bytes | tuple[int, int]


def consulted_headers(scope: Scope) -> dict[bytes, str]:
    """The request's values of CONSULTED_HEADERS; a field sent twice is joined with a comma,
    as HTTP defines, which makes a second date or range invalid and so ignored."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name in CONSULTED_HEADERS:
            text = value.decode("latin-1")
            found[name] = f"{found[name]}, {text}" if name in found else text
    return found


async def send_text(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class StaticFiles:
    """Serves the files under one root at one URL prefix, ahead of Django's middleware.

    Called with an HTTP scope, it answers and returns True, or returns False to leave the
    request to Django: a path outside its prefix, or one that names no file it serves (which
    then gets the project's own 404).
    """

    def __init__(
        self,
        prefix: str,
        locate: Locate,
        *,
        cache_control: Callable[[str], str | None],
        max_ranges: int,
        nosniff: bool,
    ) -> None:
        self.prefix = prefix
        self.index = FileIndex(locate)
        self.cache_control = cache_control
        self.max_ranges = max_ranges
        self.nosniff = nosniff

    def __repr__(self) -> str:
        return f"<StaticFiles {self.prefix!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return False
        try:
            name = file_name(path, self.prefix)
        except HostilePath as error:
            security_logger.warning("Refused the file path %r: %s.", path, error)
            await send_text(send, 400, "Bad Request", [])
            return True
        if name is None:
            return False
        entry = self.index.find(name)
        if entry is None:
            return False
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await send_text(send, 405, "Method Not Allowed", [(b"allow", ALLOWED_METHODS)])
            return True
        headers = consulted_headers(scope)
        opened = await self.open(entry, headers)
        if opened is None:
            return False
        try:
            await self.respond(scope, receive, send, entry, opened, headers)
        finally:
            opened.close()
        return True

    async def open(self, entry: FileEntry, headers: dict[bytes, str]) -> OpenedFile | None:
        """The representation the request takes, opened; None if the file has gone."""
        coding = None
        if entry.variants:
            coding = choose_coding(headers.get(b"accept-encoding"), entry.variant_sizes)
        try:
            return await self.index.open(entry, coding)
        except OSError:
            if coding is None:
                self.index.entries.pop(entry.name, None)
                return None
        # The variant has gone: the file itself will do.
        entry.variants.pop(coding, None)
        try:
            return await self.index.open(entry, None)
        except OSError:
            self.index.entries.pop(entry.name, None)
            return None

    def validator_headers(self, entry: FileEntry, opened: OpenedFile) -> list[tuple[bytes, bytes]]:
        """The headers a 304 repeats from the 200 it stands for."""
        representation = opened.representation
        headers = [
            (b"etag", representation.etag.encode("latin-1")),
            (b"last-modified", representation.last_modified.encode("latin-1")),
        ]
        cache_control = self.cache_control(entry.name)
        if cache_control is not None:
            headers.append((b"cache-control", cache_control.encode("latin-1")))
        if entry.variants:
            headers.append((b"vary", b"Accept-Encoding"))
        return headers

    async def respond(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        entry: FileEntry,
        opened: OpenedFile,
        headers: dict[bytes, str],
    ) -> None:
        representation = opened.representation
        size = representation.size
        response_headers = self.validator_headers(entry, opened)
        if self.nosniff:
            response_headers.append((b"x-content-type-options", b"nosniff"))
        status = precondition_status(headers, representation.etag, representation.modified, True)
        if status == 304:
            await send({"type": "http.response.start", "status": 304, "headers": response_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if status == 412:
            await send_text(send, 412, "Precondition Failed", response_headers)
            return
        is_get = scope["method"] == "GET"
        ranges = None
        range_value = headers.get(b"range")
        # Only GET has ranges (RFC 9110 section 14.2); a failed If-Range means the whole file.
        if is_get and range_value is not None:
            if_range = headers.get(b"if-range")
            if if_range is None or if_range_holds(
                if_range, representation.etag, representation.modified
            ):
                try:
                    ranges = parse_range(range_value, size, self.max_ranges)
                except Unsatisfiable:
                    response_headers.append((b"content-range", f"bytes */{size}".encode()))
                    await send_text(send, 416, "Range Not Satisfiable", response_headers)
                    return
        response_headers.append((b"accept-ranges", b"bytes"))
        if representation.coding is not None:
            response_headers.append((b"content-encoding", representation.coding.encode()))
        content_type = entry.content_type
        pieces: list[Piece]
        if ranges is None:
            status, pieces = 200, [(0, size)]
            response_headers.append((b"content-type", content_type.encode("latin-1")))
            response_headers.append((b"content-length", str(size).encode()))
        elif len(ranges) == 1:
            status, pieces = 206, [(ranges[0].start, ranges[0].length)]
            response_headers.append((b"content-type", content_type.encode("latin-1")))
            response_headers.append((b"content-range", ranges[0].content_range(size).encode()))
            response_headers.append((b"content-length", str(ranges[0].length).encode()))
        else:
            multipart = Multipart(content_type, size)
            status, pieces = 206, list(multipart_pieces(multipart, ranges))
            response_headers.append((b"content-type", multipart.header.encode("latin-1")))
            response_headers.append(
                (b"content-length", str(multipart.content_length(ranges)).encode())
            )
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": response_headers,
        }
        if not is_get:
            await send(start)
            await send({"type": "http.response.body", "body": b""})
            return
        if opened.content is not None:
            await send(start)
            await send({"type": "http.response.body", "body": join_pieces(opened.content, pieces)})
            return
        if status == 200 and PATHSEND in scope.get("extensions", {}) and opened.at_its_path():
            # The server sends the file itself; what it finds at the path right now is the
            # file measured for the headers (checked just above).
            await send(start)
            await send({"type": PATHSEND, "path": representation.path})
            return
        await until_disconnect(self.stream(send, start, opened, pieces), receive)

    async def stream(
        self, send: Send, start: Message, opened: OpenedFile, pieces: list[Piece]
    ) -> None:
        """Send the pieces, reading the file CHUNK_SIZE bytes at a time. If the file is cut
        short or written meanwhile, the response is left unfinished, so that the server drops
        the connection and the client cannot take a mixed body for the file."""
        descriptor = opened.descriptor
        assert descriptor is not None
        await send(start)
        chunks = list(chunk_pieces(pieces))
        for number, piece in enumerate(chunks):
            if isinstance(piece, bytes):
                chunk = piece
            else:
                offset, length = piece
                chunk = await read_chunk(descriptor, length, offset)
                if len(chunk) != length:
                    self.log_changed(opened)
                    return
            last = number == len(chunks) - 1
            if last and opened.changed():
                self.log_changed(opened)
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})

    def log_changed(self, opened: OpenedFile) -> None:
        logger.warning(
            "%s changed while it was being sent; the response was left unfinished so that the "
            "client does not take a mixed body for it.",
            opened.representation.path,
        )


def multipart_pieces(multipart: Multipart, ranges: list[ByteRange]) -> Iterator[Piece]:
    for part in ranges:
        yield multipart.part_head(part)
        yield (part.start, part.length)
    yield multipart.end


def chunk_pieces(pieces: list[Piece]) -> Iterator[Piece]:
    """The pieces with the file's ranges cut into CHUNK_SIZE reads."""
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        offset, length = piece
        end = offset + length
        while offset < end:
            step = min(CHUNK_SIZE, end - offset)
            yield (offset, step)
            offset += step


def join_pieces(content: bytes, pieces: list[Piece]) -> bytes:
    if len(pieces) == 1 and pieces[0] == (0, len(content)):
        return content
    return b"".join(
        piece if isinstance(piece, bytes) else content[piece[0] : piece[0] + piece[1]]
        for piece in pieces
    )


async def until_disconnect(sending: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run ``sending`` until it ends or the client disconnects, whichever is first; the other
    is cancelled."""
    sender = asyncio.ensure_future(sending)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        for task in (sender, watcher):
            with contextlib.suppress(asyncio.CancelledError):
                await task
