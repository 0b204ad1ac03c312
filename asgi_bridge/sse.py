"""Server-sent events: EventStreamResponse streams events to a browser's ``EventSource``.

Framing follows the WHATWG HTML standard, section "Server-sent events". The response is always
an async StreamingHttpResponse: its source, sync or async, is read by one task of its own, so
that a keep-alive comment can go out while the source is still waiting for its next event.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeAlias

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse

from .aio import wait_for_end

__all__ = ["EventStreamResponse", "ServerSentEvent", "last_event_id"]

CONTENT_TYPE = "text/event-stream; charset=utf-8"
DEFAULT_PING = 15.0
PING = b": ping\n\n"
# The only line breaks of the event stream format; str.splitlines() knows many more.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELDS = frozenset({"data", "event", "id", "retry", "comment"})
# What a sync iterator gives once exhausted: StopIteration cannot cross into a coroutine.
_END = object()


@dataclass(frozen=True)
class ServerSentEvent:
    """One event of an event stream.

    ``data`` that is a str is sent as it is, split into one ``data:`` line per line; ``None``
    sends no data (the browser then dispatches nothing, but still takes ``id`` and ``retry``);
    anything else is sent as JSON, encoded with DjangoJSONEncoder. ``retry`` is the reconnection
    delay in milliseconds. ``comment`` lines are ignored by browsers.
    """

    data: object = None
    event: str | None = None
    id: str | int | None = None
    retry: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        if self.event is not None:
            require_single_line("event", self.event)
        if self.id is not None:
            require_single_line("id", str(self.id))
            if "\0" in str(self.id):
                # Browsers ignore an id holding NULL, so it would silently not be remembered.
                raise ValueError(f"A server-sent event's id must not contain NULL: {self.id!r}")
        if self.retry is not None and (
            not isinstance(self.retry, int) or isinstance(self.retry, bool) or self.retry < 0
        ):
            raise ValueError(
                f"A server-sent event's retry must be a non-negative int of milliseconds, "
                f"not {self.retry!r}"
            )
        if self.comment is not None and not isinstance(self.comment, str):
            raise TypeError(f"A server-sent event's comment must be a str, not {self.comment!r}")
        if all(getattr(self, name) is None for name in _FIELDS):
            raise ValueError("A server-sent event needs data, event, id, retry or comment")

    def encode(self) -> bytes:
        """The event's lines in UTF-8, ending in the blank line that dispatches it."""
        lines: list[str] = []
        if self.comment is not None:
            lines.extend(": " + line for line in _LINE_BREAK.split(self.comment))
        if self.event is not None:
            lines.append("event: " + self.event)
        if self.data is not None:
            lines.extend("data: " + line for line in _LINE_BREAK.split(data_text(self.data)))
        if self.id is not None:
            lines.append("id: %s" % self.id)
        if self.retry is not None:
            lines.append("retry: %d" % self.retry)
        lines.append("\n")
        return "\n".join(lines).encode("utf-8")


# What a source may yield, and what EventStreamResponse takes as its source.
EventItem: TypeAlias = ServerSentEvent | str | Mapping[str, Any]
Events: TypeAlias = Iterable[EventItem] | AsyncIterable[EventItem]


def require_single_line(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"A server-sent event's {field} must be a str, not {value!r}")
    if "\n" in value or "\r" in value:
        raise ValueError(
            f"A server-sent event's {field} must not contain a newline (\\r or \\n): {value!r}"
        )


def data_text(data: object) -> str:
    return data if isinstance(data, str) else json.dumps(data, cls=DjangoJSONEncoder)


def encode_event(item: object) -> bytes:
    """One item of a source as event stream bytes: a ServerSentEvent, a str or a dict."""
    if isinstance(item, str):
        return ServerSentEvent(item).encode()
    if isinstance(item, ServerSentEvent):
        return item.encode()
    if isinstance(item, Mapping):
        unknown = set(item) - _FIELDS
        if unknown:
            raise ValueError(
                f"A dict in an event stream holds the fields of one event "
                f"({', '.join(sorted(_FIELDS))}), not {', '.join(map(repr, sorted(unknown)))}; "
                f"to send a dict as JSON data, yield {{'data': your_dict}}"
            )
        return ServerSentEvent(**item).encode()
    raise TypeError(
        f"An event stream yields ServerSentEvent, str or dict items, not {type(item).__name__}"
    )


def last_event_id(request: HttpRequest) -> str | None:
    """The id of the last event the browser received before it reconnected, if any."""
    return request.headers.get("Last-Event-ID") or None


class EventStreamResponse(StreamingHttpResponse):
    """A stream of server-sent events from a sync or async iterable of events.

    Items may be ServerSentEvent, str (the data of an event) or dict (the fields of an event,
    as ServerSentEvent's keyword arguments). After ``ping`` seconds without an event a ``: ping``
    comment keeps proxies and the browser from dropping the connection; ``ping=None`` or ``0``
    sends none. Other keyword arguments go to StreamingHttpResponse.

    When the server cancels the stream (its graceful shutdown timeout), asgi_bridge's handler
    ends the response properly instead of leaving it cut, so the client sees a complete
    response; EventSource then reconnects, to another process or after the restart.
    """

    # Read by asgi_bridge's handler: a stream with no natural end, so ending it is no truncation.
    ends_cleanly_when_cancelled = True

    def __init__(self, source: Events, ping: float | None = DEFAULT_PING, **kwargs: Any) -> None:
        if isinstance(source, (str, bytes)):
            raise TypeError("EventStreamResponse takes an iterable of events, not a str or bytes")
        if ping is not None and ping < 0:
            raise ValueError(f"ping must be a number of seconds >= 0 or None, not {ping!r}")
        kwargs.setdefault("content_type", CONTENT_TYPE)
        super().__init__(stream_events(source, ping or None), **kwargs)
        # The reader closes the source once the stream has started; one that never starts (HEAD,
        # a client gone before the first event) is closed with the response, as Django closes a
        # sync streaming response's iterator: close() by Django, aclose() by asgi_bridge's
        # handler (sending.close_async_stream).
        close = getattr(source, "close", None)
        if callable(close):
            self._resource_closers.append(close)  # type: ignore[attr-defined]  # Django's own list
        self.aclose_source = getattr(source, "aclose", None)
        self.setdefault("Cache-Control", "no-cache")
        # nginx buffers proxied responses unless told not to.
        self.setdefault("X-Accel-Buffering", "no")
        # GZipMiddleware (and other compression middleware) leave a response alone once it has
        # a Content-Encoding; compressed, events would sit in the compressor's buffer.
        self.setdefault("Content-Encoding", "identity")


async def stream_events(source: Events, ping: float | None) -> AsyncIterator[bytes]:
    """Encoded events as the source yields them, and a ping after ``ping`` seconds of silence.

    The source is read by one task from start to end (an async generator's steps must not
    hop between tasks, or its timeouts and task groups break), at most two events ahead of
    the one being sent. Waiting for an event with a timeout cancels only the wait on the
    queue, never the source.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
    reader = asyncio.ensure_future(read_source(source, queue))
    try:
        while (part := await next_part(queue, reader, ping)) is not None:
            yield part
    finally:
        # Closing the response (the client left, the stream ended or failed) stops the reader,
        # which closes the source so that its ``finally`` runs now.
        reader.cancel()
        await wait_for_end(reader)
        if not reader.cancelled():
            # Retrieved so that asyncio does not log it: nobody is left to send it to.
            reader.exception()


async def next_part(
    queue: asyncio.Queue[bytes], reader: asyncio.Future[None], ping: float | None
) -> bytes | None:
    """The next encoded event; PING after ``ping`` s without one; None once the source is done.

    Raises what the source raised.
    """
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait(
            (getter, reader), timeout=ping, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        # A cancelled get leaves its item on the queue for the next one.
        getter.cancel()
    if getter in done:
        return getter.result()
    if reader in done:
        if not queue.empty():
            # The reader put its last event and ended before our get ran.
            return queue.get_nowait()
        reader.result()
        return None
    return PING


async def read_source(source: Events, queue: asyncio.Queue[bytes]) -> None:
    """Put each item of the source on ``queue``, encoded; the queue holds one at most."""
    if isinstance(source, AsyncIterable):
        parts = read_async_source(source)
    else:
        parts = read_sync_source(iter(source))
    async with aclosing(parts):
        async for part in parts:
            await queue.put(part)


async def read_async_source(source: AsyncIterable[object]) -> AsyncGenerator[bytes, None]:
    iterator = aiter(source)
    try:
        async for item in iterator:
            yield encode_event(item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def next_item(iterator: Iterator[object]) -> object:
    return next(iterator, _END)


async def read_sync_source(iterator: Iterator[object]) -> AsyncGenerator[bytes, None]:
    """Advance a sync iterator one item per visit to the request's thread, where the view ran.

    One thread hop per event: a cost that matters for a body of many small parts, not for
    events a browser waits for. A blocked iterator delays its own closing until it yields.
    """
    advance = sync_to_async(next_item, thread_sensitive=True)
    try:
        while (item := await advance(iterator)) is not _END:
            yield encode_event(item)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()
