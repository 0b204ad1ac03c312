"""Failures found by tests/test_handler_properties.py, each kept as a focused test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import django
import pytest
from django.core.signals import request_started
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import SimpleTestCase, override_settings
from django.urls import path

from asgi_bridge import ASGIHandler
from asgi_bridge.sse import EventStreamResponse
from asgi_bridge.types import Message

from .asgi import RecordingSend, ScriptedReceive, ServedLikeByAServer, http_scope

PARTS = 40
# Known failure, in asgi_bridge/sse.py (outside the handler): stream_events() closes the source
# from inside its own body, which never runs when the stream is never started (HEAD, or the
# client gone before the first part), so a source with close() (a cursor, a subscription) is
# never closed. Django's StreamingHttpResponse.close() closes such a sync iterator itself.
# Known failure, between Django's GZipMiddleware and close_async_stream(): the middleware
# wraps an async stream in an async generator of its own that does not close the one it
# iterates, and Django's response.close() closes no async iterator, so the handler can only
# close the outer wrapper. When the client leaves mid-stream, the view's generator is left
# suspended; its ``finally`` runs when the garbage collector finalizes it, after
# request_finished and outside the request (never, while anything still references it).
GZIP_ASYNC_STREAM_NOT_CLOSED = (
    "an async stream wrapped by GZipMiddleware is not closed when the client leaves mid-stream"
)


def many_parts() -> Iterator[bytes]:
    for number in range(PARTS):
        yield b"part %d\n" % number


async def async_view_sync_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(many_parts())


class ClosableSource:
    """An event source that holds something to release, as a database cursor would."""

    instances: list[ClosableSource] = []

    def __init__(self) -> None:
        self.closed = False
        ClosableSource.instances.append(self)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raise StopIteration

    def close(self) -> None:
        self.closed = True


def events(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(ClosableSource(), ping=None)


# The async generators of the async_stream view, kept as a view's caller might keep them.
async_streams: list[Any] = []
async_stream_finally_ran: list[bool] = []


async def async_parts() -> AsyncIterator[bytes]:
    try:
        for number in range(PARTS):
            yield b"part %d\n" % number
    finally:
        async_stream_finally_ran.append(True)


def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    async_streams.append(async_parts())
    return StreamingHttpResponse(async_streams[-1])


sync_source_finally_ran: list[bool] = []


def sync_source() -> Iterator[str]:
    try:
        for number in range(PARTS):
            yield f"event {number}"
    finally:
        sync_source_finally_ran.append(True)


# Kept, so that only closing, not the garbage collector, can run the source's ``finally``.
sync_sources: list[Iterator[str]] = []


def sync_events(request: HttpRequest) -> EventStreamResponse:
    sync_sources.append(sync_source())
    return EventStreamResponse(sync_sources[-1], ping=None)


urlpatterns = [
    path("async-view-sync-stream/", async_view_sync_stream),
    path("events/", events),
    path("async-stream/", async_stream),
    path("sync-events/", sync_events),
]


@override_settings(ROOT_URLCONF=__name__)
class SendAfterDisconnectTests(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)

    async def test_nothing_is_sent_once_a_disconnect_is_received(self) -> None:
        # The disconnect arrives after the start and first part, while the request's thread has
        # queued more parts that the loop sends without suspending: the cancellation the
        # disconnect causes lands a loop turn later, and part 15 used to go out in between.
        sent: list[Message] = []
        after_disconnect: list[Message] = []
        disconnected = False
        two_sent = asyncio.Event()
        body_sent = False

        async def receive() -> Message:
            nonlocal disconnected, body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b""}
            await two_sent.wait()
            disconnected = True
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if disconnected:
                after_disconnect.append(message)
                raise OSError("sent after http.disconnect")
            sent.append(message)
            if len(sent) == 2:
                two_sent.set()

        await asyncio.wait_for(
            ASGIHandler()(http_scope("/async-view-sync-stream/"), receive, send), 10
        )
        self.assertTrue(disconnected)
        self.assertEqual(after_disconnect, [])


@override_settings(ROOT_URLCONF=__name__)
class EventStreamSourceTests(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        ClosableSource.instances.clear()
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)

    async def respond(self, method: str, send: Any) -> None:
        messages: list[Message] = [{"type": "http.request", "body": b""}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        await asyncio.wait_for(ASGIHandler()(http_scope("/events/", method), receive, send), 10)

    async def test_source_is_closed_after_a_get(self) -> None:
        async def send(message: Message) -> None:
            pass

        await self.respond("GET", send)
        self.assertTrue(ClosableSource.instances[0].closed)

    async def test_source_is_closed_after_a_head(self) -> None:
        async def send(message: Message) -> None:
            pass

        await self.respond("HEAD", send)
        self.assertTrue(ClosableSource.instances[0].closed)

    async def test_source_is_closed_when_send_fails_at_the_start(self) -> None:
        async def send(message: Message) -> None:
            raise OSError("client gone")

        await self.respond("GET", send)
        self.assertTrue(ClosableSource.instances[0].closed)


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=["django.middleware.gzip.GZipMiddleware"])
async def serve_until_send_fails(scope: dict[str, Any], sends: int) -> None:
    """Serve ``scope`` to a client whose send fails as a server's does once the client has left,
    after ``sends`` messages; its receive gives an empty body, then waits."""
    messages: list[Message] = [{"type": "http.request", "body": b""}]
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if len(sent) == sends:
            raise OSError("client gone")
        sent.append(message)

    await asyncio.wait_for(ASGIHandler()(scope, receive, send), 10)


class GZipAsyncStreamTests(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        async_streams.clear()
        async_stream_finally_ran.clear()
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)

    async def leave_after(self, sends: int) -> None:
        scope = http_scope("/async-stream/", headers=[(b"accept-encoding", b"gzip")])
        await serve_until_send_fails(scope, sends)

    async def test_view_stream_is_closed_when_sent_whole(self) -> None:
        await self.leave_after(PARTS + 10)
        self.assertEqual(async_stream_finally_ran, [True])

    # Not strict: GZipMiddleware's wrapper leaves the view's stream to asyncio's async-generator
    # finalizer, whose task has run by the time the handler returns on Python 3.12 (CI's tox
    # environment) but not on 3.11 or 3.13; the stream is closed late, not never.
    @pytest.mark.xfail(strict=False, reason=GZIP_ASYNC_STREAM_NOT_CLOSED)
    async def test_view_stream_is_closed_when_the_client_leaves_known_failure(self) -> None:
        await self.leave_after(2)
        self.assertEqual(async_stream_finally_ran, [True])


# A sync middleware: asgi_bridge's sync chain, where the stream is sent inside a thread context
# of its own that used to exit before the stream was closed.
@override_settings(
    ROOT_URLCONF=__name__, MIDDLEWARE=["django.middleware.security.SecurityMiddleware"]
)
class EventStreamSyncSourceTests(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        sync_source_finally_ran.clear()
        self.addCleanup(sync_sources.clear)
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)

    async def test_sync_source_is_closed_when_send_fails_mid_stream(self) -> None:
        await serve_until_send_fails(http_scope("/sync-events/"), 1)
        self.assertEqual(sync_source_finally_ran, [True])


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


@override_settings(ROOT_URLCONF=__name__)
class UnparsableHeaderTests(ServedLikeByAServer, SimpleTestCase):
    """A Content-Type Django cannot parse (Django 6.0+ refuses one past MAX_HEADER_LENGTH with
    a ValueError) is a 400, not a traceback for the server (found by the hostile scopes)."""

    def setUp(self) -> None:
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)

    async def status_for(self, content_type: bytes) -> int:
        send = RecordingSend()
        headers = [(b"host", b"testserver"), (b"content-type", content_type)]
        receive = ScriptedReceive({"type": "http.request", "body": b""})
        await asyncio.wait_for(
            ASGIHandler()(http_scope("/hello/", headers=headers), receive, send), 10
        )
        return int(send.messages[0]["status"])

    async def test_an_overlong_content_type(self) -> None:
        content_type = b"text/plain; " + b"v" * 20_000
        # Django 5.2 parses a header of any length; 6.0 and later refuse it.
        refused = django.VERSION >= (6, 0)
        logged = self.assertLogs("django.request", "WARNING")
        with logged if refused else contextlib.nullcontext():
            status = await self.status_for(content_type)
        self.assertEqual(status, 400 if refused else 200)

    async def test_any_value_error_of_the_content_type_parser(self) -> None:
        refuse = mock.patch(
            "django.http.request.parse_header_parameters",
            side_effect=ValueError("Unable to parse header parameters (value too long)."),
        )
        with refuse, self.assertLogs("django.request", "WARNING") as logs:
            status = await self.status_for(b"text/plain")
        self.assertEqual(status, 400)
        # Django 6.1 turns the parser's ValueError into BadRequest("Invalid Content-Type header.").
        self.assertIn("Bad Request (Content-Type: ", logs.output[0])


urlpatterns += [path("hello/", hello)]
