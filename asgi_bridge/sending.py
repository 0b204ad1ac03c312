"""Turning a Django response into ASGI messages: plain bodies, streams, files and HEAD."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from typing import Any, NamedTuple

from django.http import FileResponse
from django.http.response import HttpResponseBase

from .aio import wait_for_end
from .exceptions import ClientDisconnected
from .threads import on_request_thread
from .types import Message, Scope, Send

logger = logging.getLogger("asgi_bridge")

PATHSEND = "http.response.pathsend"

# The handler's chunk_bytes classmethod: (chunk, is_last) pairs of at most chunk_size bytes.
ChunkBytes = Callable[[Any], Iterable[tuple[Any, bool]]]

# FileResponse streams its file through iter(callable, b""); any other iterator type means a
# middleware (GZipMiddleware, for one) replaced the content, so the file on disk is not the body.
_FILE_READER_TYPE = type(iter(lambda: b"", b""))
# What open() returns for a binary file, buffered; their ``raw`` is the io.FileIO.
_BUFFERED_FILE_TYPES = (io.BufferedReader, io.BufferedRandom)
# Bytes of a sync iterator produced ahead of sending, per stream: bounds memory, and lets a
# response of small parts be produced in one go.
SYNC_BYTES_AHEAD = 2**17
PARTS_BETWEEN_YIELDS = 16
_END = object()


class ResponseChannel:
    """The sending half of one HTTP request: the server's ``send``, plus what the scope allows.

    Calling it sends a message; a server refusing because the client is gone becomes
    ClientDisconnected, a RequestAborted: an OSError, as ASGI 2.4 asks of servers, or granian's
    RuntimeError about its closed transport. Any other error is a bug and propagates.
    """

    __slots__ = ("_send", "client_left", "finish_on_thread", "head_only", "pathsend")

    def __init__(self, send: Send, scope: Scope | None = None) -> None:
        self._send = send
        # Set once http.disconnect has been received: nothing may be sent after it.
        self.client_left = False
        # Set by the handler: closes the response on the request's thread once a sync stream
        # has been produced, saving that thread a visit after the last part is sent.
        self.finish_on_thread: Callable[[], None] | None = None
        self.head_only = scope is not None and scope.get("method") == "HEAD"
        # Only use an extension the server advertised: daphne raises on unknown messages.
        extensions = (scope or {}).get("extensions") or {}
        self.pathsend = PATHSEND in extensions

    async def __call__(self, message: Message) -> None:
        if self.client_left:
            raise ClientDisconnected("http.disconnect received")
        try:
            await self._send(message)
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not transport_closed(exc):
                raise
            logger.debug("Client gone while sending %s: %r", message["type"], exc)
            raise ClientDisconnected(str(exc)) from exc


def transport_closed(error: RuntimeError) -> bool:
    """Whether a RuntimeError from ``send`` is granian's way of saying the client is gone
    ("ASGI transport closed", "ASGI flow error: Transport not initialized or closed")."""
    text = str(error).lower()
    return "transport" in text and "closed" in text


def response_headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """The response's headers and cookies as ASGI header pairs, original case preserved."""
    headers: list[tuple[bytes, bytes]] = []
    for name, value in header_items(response):
        raw_name = name.encode("ascii") if isinstance(name, str) else name
        raw_value = value.encode("latin1") if isinstance(value, str) else value
        headers.append((bytes(raw_name), bytes(raw_value)))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers


def header_items(response: HttpResponseBase) -> Iterable[tuple[str | bytes, str | bytes]]:
    """The response's (name, value) pairs, as ``response.items()`` gives them.

    ``items()`` looks every name up again through a case-insensitive mapping; the mapping's own
    store (Django's ResponseHeaders since 3.2) already holds the pairs, at a fifth of the cost.
    """
    store = getattr(response.headers, "_store", None)
    if type(store) is dict:
        return store.values()
    return response.items()


def start_message(response: HttpResponseBase) -> Message:
    return {
        "type": "http.response.start",
        "status": response.status_code,
        "headers": response_headers(response),
    }


def body_message(chunk: bytes, more_body: bool) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more_body}


class PathsendFile(NamedTuple):
    """A file the server may send itself: its absolute path, and its size when checked."""

    path: str
    size: int


def pathsend_file(response: HttpResponseBase) -> PathsendFile | None:
    """The file the server may send by path, or None if the app must stream the body.

    Only a real, regular file on disk qualifies, still at its start and still the file its
    name leads to: anything else (an in-memory file with a borrowed name, a gzip or tarfile
    reader, a file replaced on disk or advanced after opening) is streamed, as Django does.
    """
    if not isinstance(response, FileResponse) or response.has_header("Content-Encoding"):
        return None
    if type(getattr(response, "_iterator", None)) is not _FILE_READER_TYPE:
        return None
    # Stubs say BytesIO; it is whatever file-like object the view passed.
    filelike: Any = response.file_to_stream
    raw = _os_file(filelike)
    if raw is None:
        return None
    name = raw.name
    if not isinstance(name, str) or not os.path.isabs(name):
        return None
    try:
        # pathsend sends the whole file; a file opened and then advanced must be streamed.
        if filelike.tell() != 0:
            return None
        opened = os.fstat(raw.fileno())
        named = os.stat(name)
    except (OSError, ValueError):
        return None
    # One window remains: the server opens the path again after this check, so a rename in
    # between sends the newer file. Acceptable: right now the path leads to the very inode the
    # view opened, so a borrowed or stale name (the disclosure guarded against) cannot pass;
    # swapping the file later takes write access to its directory, which could as well have
    # changed the file before the view opened it.
    if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
        return None
    # Zero-size files cost nothing to stream, and /proc and /sys files report 0 bytes for
    # content they do have.
    if not stat.S_ISREG(opened.st_mode) or opened.st_size == 0:
        return None
    # Django measured the file when the response was built; if it has grown or shrunk since,
    # sending it whole would contradict that Content-Length.
    declared = response.get("Content-Length")
    if declared is not None and declared != str(opened.st_size):
        return None
    return PathsendFile(name, opened.st_size)


def _os_file(filelike: Any) -> io.FileIO | None:
    """The open, readable io.FileIO that ``filelike`` is or buffers, if it is exactly that.

    Exact types: a subclass (tarfile's member reader is a BufferedReader) may read other bytes
    than the file it names holds.
    """
    if type(filelike) in _BUFFERED_FILE_TYPES:
        try:
            filelike = filelike.raw
        except ValueError:  # detached
            return None
    if type(filelike) is not io.FileIO or filelike.closed or not filelike.readable():
        return None
    return filelike


class _ProducerFailed:
    """Carries an exception raised by a sync iterator across to the event loop."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class SyncPartsPipe:
    """Hands the parts of a sync iterator, produced in a worker thread, to the event loop.

    The whole iteration is one thread hop, not one per part. The worker blocks once
    SYNC_BYTES_AHEAD bytes wait unsent (one part always fits, whatever its size), so memory
    stays bounded per stream; it wakes the loop only when the loop has nothing queued, so a
    burst of small parts costs one wake-up. ``stop()`` makes the worker return after the part
    it is producing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Guards every field below; the worker waits on it for room in the byte budget.
        self._room = threading.Condition()
        self._parts: deque[bytes | object] = deque()
        self._queued_bytes = 0
        self._stopped = False
        self._wake_pending = False
        self._ready = asyncio.Event()
        self._taken = 0

    def produce(self, parts: Iterator[bytes], then: Callable[[], None] | None = None) -> None:
        """Worker-thread side: iterate until exhausted, failed or stopped, then run ``then``."""
        outcome: object = _END
        try:
            for part in parts:
                with self._room:
                    while self._queued_bytes >= SYNC_BYTES_AHEAD and not self._stopped:
                        self._room.wait()
                    if self._stopped:
                        return
                    self._queued_bytes += len(part)
                    self._push(part)
        except BaseException as error:
            outcome = _ProducerFailed(error)
        finally:
            with self._room:
                self._push(outcome)
            if then is not None:
                then()

    def _push(self, item: bytes | object) -> None:
        # Called with self._room held.
        self._parts.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._room:
            self._wake_pending = False
        self._ready.set()

    async def next_part(self) -> bytes | object:
        """Loop side: the next part, or _END; re-raises what the iterator raised."""
        self._taken += 1
        if self._taken % PARTS_BETWEEN_YIELDS == 0:
            # Parts already queued are taken without suspending: let other tasks (the disconnect
            # listener, other connections) run now and then.
            await asyncio.sleep(0)
        while True:
            with self._room:
                if self._parts:
                    item = self._parts.popleft()
                    if isinstance(item, (bytes, bytearray, memoryview)):
                        self._queued_bytes -= len(item)
                        self._room.notify()
                    break
                self._ready.clear()
            await self._ready.wait()
        if isinstance(item, _ProducerFailed):
            raise item.error
        return item

    def stop(self) -> None:
        with self._room:
            self._stopped = True
            # Wakes a worker waiting for room so that it can see the stop.
            self._room.notify_all()


produce_on_request_thread = on_request_thread(SyncPartsPipe.produce)


async def send_sync_stream(
    parts: Iterator[bytes],
    channel: ResponseChannel,
    chunk_bytes: ChunkBytes,
    then: Callable[[], None] | None = None,
) -> None:
    """Send a sync iterator part by part as the request's thread produces it, never whole.

    ``then`` runs on that thread once the iteration is over, however it ended.
    """
    pipe = SyncPartsPipe(asyncio.get_running_loop())
    # The iterator runs on the request's thread, where the view ran.
    producer = asyncio.ensure_future(produce_on_request_thread(pipe, parts, then))
    try:
        while (part := await pipe.next_part()) is not _END:
            for chunk, _ in chunk_bytes(part):
                await channel(body_message(chunk, True))
    finally:
        pipe.stop()
        # The worker returns after its current part; response.close() must not run before.
        await wait_for_end(producer)


async def send_async_stream(
    response: Any, channel: ResponseChannel, chunk_bytes: ChunkBytes
) -> None:
    """Send an async streaming response; aclosing() ends the iterator even on error."""
    async with aclosing(aiter(response)) as parts:
        async for part in parts:
            for chunk, _ in chunk_bytes(part):
                await channel(body_message(chunk, True))


async def close_async_stream(response: HttpResponseBase) -> None:
    """Close an async streaming response's own iterator, so its ``finally`` runs now, not at GC.

    Django's response.close() only closes sync iterators.
    """
    aclose = getattr(getattr(response, "_iterator", None), "aclose", None)
    if getattr(response, "is_async", False) and aclose is not None:
        await aclose()
    # An EventStreamResponse's async source, which its stream never reached if it never started.
    aclose_source = getattr(response, "aclose_source", None)
    if aclose_source is not None:
        await aclose_source()
