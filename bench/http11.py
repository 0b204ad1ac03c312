"""A minimal HTTP/1.1 client over asyncio streams, for the benchmark's own load and memory clients.

Only what the benchmark needs: build a request, read one response (Content-Length, chunked or
until EOF) while optionally discarding the body, so clients spend little CPU per byte.
"""

import asyncio
from dataclasses import dataclass

READ_SIZE = 65536
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Response:
    status: int
    body_size: int
    body: bytes
    keep_alive: bool


def build_request(
    method: str,
    path: str,
    port: int,
    content_length: int | None = None,
    keep_alive: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if content_length is not None:
        lines += [f"Content-Length: {content_length}", "Content-Type: application/octet-stream"]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_exactly(reader: asyncio.StreamReader, size: int, keep: bool) -> bytes:
    # Reading in bounded pieces keeps a discarded 10 MiB body from ever sitting in client memory.
    if keep:
        return await reader.readexactly(size)
    remaining = size
    while remaining:
        piece = await reader.read(min(remaining, READ_SIZE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(piece)
    return b""


async def read_chunked(reader: asyncio.StreamReader, keep: bool) -> tuple[int, bytes]:
    size = 0
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        chunk_size = int(size_line.split(b";", 1)[0].strip(), 16)
        if chunk_size == 0:
            # Skip optional trailers up to the blank line that ends the message.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return size, b"".join(parts)
        data = await read_exactly(reader, chunk_size, keep)
        parts.append(data)
        size += chunk_size
        await reader.readexactly(2)


async def read_until_eof(reader: asyncio.StreamReader, keep: bool) -> tuple[int, bytes]:
    size = 0
    parts: list[bytes] = []
    while piece := await reader.read(READ_SIZE):
        size += len(piece)
        if keep:
            parts.append(piece)
    return size, b"".join(parts)


async def read_response(reader: asyncio.StreamReader, keep_body: bool = False) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head[:-4])
    keep_alive = headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        size, body = await read_chunked(reader, keep_body)
    elif "content-length" in headers:
        size = int(headers["content-length"])
        body = await read_exactly(reader, size, keep_body)
    else:
        size, body = await read_until_eof(reader, keep_body)
        keep_alive = False
    return Response(status=status, body_size=size, body=body, keep_alive=keep_alive)


async def request_once(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30.0
) -> Response:
    """Send one request on a fresh connection and return the response with its body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        length = None if body is None else len(body)
        writer.write(build_request(method, path, port, length, keep_alive=False) + (body or b""))
        await writer.drain()
        return await asyncio.wait_for(read_response(reader, keep_body=True), timeout)
    finally:
        writer.close()
