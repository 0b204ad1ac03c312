"""asgi_bridge.sse: event framing, headers, keep-alive pings, compression and cleanup."""

from __future__ import annotations

import asyncio
import datetime
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpRequest, StreamingHttpResponse
from django.test import RequestFactory, SimpleTestCase, override_settings
from django.urls import path

from asgi_bridge import get_asgi_application
from asgi_bridge.sse import (
    PING,
    EventStreamResponse,
    ServerSentEvent,
    encode_event,
    last_event_id,
)

from .asgi import body_of, collect_response, http_scope, started_lifespan

# What the views and their sources saw; tests clear it in setUp.
observed: dict[str, Any] = {}
# Set by a test to let a waiting source go on; tests replace them in setUp.
gates: dict[str, Any] = {}

TIMEOUT = 5


# -- sources and views (this module is also the tests' URLconf) --------------------------------


async def async_events(count: int) -> AsyncIterator[object]:
    observed["async_exit"] = None
    try:
        for index in range(count):
            await asyncio.sleep(0)
            yield ServerSentEvent(f"event {index}", id=index)
        observed["async_exit"] = "exhausted"
    except BaseException as exit:
        observed["async_exit"] = type(exit).__name__
        raise
    finally:
        observed["async_finally"] = observed.get("async_finally", 0) + 1


def sync_events(count: int) -> Iterator[object]:
    observed["sync_exit"] = None
    try:
        for index in range(count):
            observed.setdefault("sync_threads", set()).add(threading.get_ident())
            yield ServerSentEvent(f"event {index}", id=index)
        observed["sync_exit"] = "exhausted"
    except BaseException as exit:
        observed["sync_exit"] = type(exit).__name__
        raise
    finally:
        observed["sync_finally"] = observed.get("sync_finally", 0) + 1


async def async_waiting_events() -> AsyncIterator[object]:
    """One event, then silence until the test opens the gate, then another."""
    try:
        yield "before"
        await gates["async"].wait()
        yield "after"
    finally:
        observed["async_finally"] = observed.get("async_finally", 0) + 1


def sync_waiting_events() -> Iterator[object]:
    try:
        yield "before"
        if not gates["sync"].wait(TIMEOUT):
            raise AssertionError("the test never opened the gate")
        yield "after"
    finally:
        observed["sync_finally"] = observed.get("sync_finally", 0) + 1


async def async_failing_events() -> AsyncIterator[object]:
    yield "fine"
    raise ValueError("the source failed")


def mixed_items() -> Iterator[object]:
    yield "plain"
    yield {"data": "from a dict", "event": "note", "id": "7"}
    yield {"data": {"when": datetime.date(2025, 1, 2), "n": [1, 2]}}
    yield ServerSentEvent("line 1\r\nline 2\rline 3\nline 4", event="multi")
    yield ServerSentEvent(retry=2500)


def read_ping(request: HttpRequest) -> float | None:
    raw = request.GET.get("ping", "")
    return float(raw) if raw else None


def async_view(request: HttpRequest) -> EventStreamResponse:
    observed["view_thread"] = threading.get_ident()
    return EventStreamResponse(
        async_events(int(request.GET.get("n", "3"))), ping=read_ping(request)
    )


def sync_view(request: HttpRequest) -> EventStreamResponse:
    observed["view_thread"] = threading.get_ident()
    return EventStreamResponse(sync_events(int(request.GET.get("n", "3"))), ping=read_ping(request))


def async_waiting_view(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(async_waiting_events(), ping=read_ping(request))


def sync_waiting_view(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(sync_waiting_events(), ping=read_ping(request))


def failing_view(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(async_failing_events())


def mixed_view(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(mixed_items())


class Countdown:
    """An async iterable that is not a generator: no aclose() to call."""

    def __init__(self, start: int) -> None:
        self.left = start

    def __aiter__(self) -> Countdown:
        return self

    async def __anext__(self) -> str:
        if self.left == 0:
            raise StopAsyncIteration
        self.left -= 1
        return str(self.left)


def iterables_view(request: HttpRequest) -> EventStreamResponse:
    if request.GET.get("kind") == "list":
        return EventStreamResponse(["a", {"data": "b"}])
    return EventStreamResponse(Countdown(2))


def plain_stream_view(request: HttpRequest) -> StreamingHttpResponse:
    # The control for the compression tests: GZipMiddleware does compress this one.
    return StreamingHttpResponse(iter([b"data: plain\n\n"]), content_type="text/event-stream")


async def endless_plain_parts() -> AsyncIterator[bytes]:
    while True:
        yield b"part\n"
        await asyncio.sleep(0.01)


def endless_plain_view(request: HttpRequest) -> StreamingHttpResponse:
    # A stream that does have an end: cancelling it must leave it visibly cut.
    return StreamingHttpResponse(endless_plain_parts())


urlpatterns = [
    path("endless-plain/", endless_plain_view),
    path("sse/async/", async_view),
    path("sse/sync/", sync_view),
    path("sse/async-waiting/", async_waiting_view),
    path("sse/sync-waiting/", sync_waiting_view),
    path("sse/failing/", failing_view),
    path("sse/mixed/", mixed_view),
    path("sse/iterables/", iterables_view),
    path("plain-stream/", plain_stream_view),
]


# -- framing ------------------------------------------------------------------------------------


class FramingTests(SimpleTestCase):
    def test_data_only(self) -> None:
        self.assertEqual(ServerSentEvent("hello").encode(), b"data: hello\n\n")

    def test_every_field(self) -> None:
        event = ServerSentEvent("payload", event="update", id="42", retry=3000, comment="note")
        self.assertEqual(
            event.encode(),
            b": note\nevent: update\ndata: payload\nid: 42\nretry: 3000\n\n",
        )

    def test_each_kind_of_line_break_starts_a_data_line(self) -> None:
        event = ServerSentEvent("a\r\nb\rc\nd")
        self.assertEqual(event.encode(), b"data: a\ndata: b\ndata: c\ndata: d\n\n")

    def test_trailing_and_empty_lines_survive(self) -> None:
        # A browser joins data lines with \n, so "a\n\nb\n" must come back exactly.
        self.assertEqual(
            ServerSentEvent("a\n\nb\n").encode(), b"data: a\ndata: \ndata: b\ndata: \n\n"
        )
        self.assertEqual(ServerSentEvent("").encode(), b"data: \n\n")

    def test_other_unicode_line_separators_are_data(self) -> None:
        # Only CR and LF end lines in an event stream; str.splitlines() would split these too.
        event = ServerSentEvent("a\u2028b\x0bc\x1cd")
        self.assertEqual(event.encode(), "data: a\u2028b\x0bc\x1cd\n\n".encode())

    def test_unicode_is_utf8(self) -> None:
        self.assertEqual(ServerSentEvent("héllo ✓ 🎉").encode(), "data: héllo ✓ 🎉\n\n".encode())

    def test_leading_space_of_data_is_kept(self) -> None:
        # The parser strips exactly one space after the colon, ours.
        self.assertEqual(ServerSentEvent(" indented").encode(), b"data:  indented\n\n")

    def test_int_id_and_empty_id(self) -> None:
        self.assertEqual(ServerSentEvent("x", id=5).encode(), b"data: x\nid: 5\n\n")
        # An empty id resets the browser's last event id.
        self.assertEqual(ServerSentEvent(id="").encode(), b"id: \n\n")

    def test_retry_alone_and_multi_line_comment(self) -> None:
        self.assertEqual(ServerSentEvent(retry=0).encode(), b"retry: 0\n\n")
        self.assertEqual(ServerSentEvent(comment="a\nb").encode(), b": a\n: b\n\n")

    def test_non_str_data_is_json(self) -> None:
        event = ServerSentEvent({"when": datetime.date(2025, 1, 2), "text": "a\nb"})
        self.assertEqual(event.encode(), b'data: {"when": "2025-01-02", "text": "a\\nb"}\n\n')

    def test_newline_in_event_or_id_is_refused(self) -> None:
        for field in ("event", "id"):
            for value in ("a\nb", "a\rb"):
                message = f"event's {field} must not contain a newline"
                with (
                    self.subTest(field=field, value=value),
                    self.assertRaisesMessage(ValueError, message),
                ):
                    ServerSentEvent("x", **{field: value})

    def test_null_in_id_is_refused(self) -> None:
        with self.assertRaisesMessage(ValueError, "id must not contain NULL"):
            ServerSentEvent("x", id="a\0b")

    def test_bad_retry_is_refused(self) -> None:
        for retry in (-1, 1.5, True, "100"):
            with self.subTest(retry=retry), self.assertRaisesMessage(ValueError, "retry must be"):
                ServerSentEvent("x", retry=retry)  # type: ignore[arg-type]

    def test_empty_event_is_refused(self) -> None:
        with self.assertRaisesMessage(ValueError, "needs data, event, id, retry or comment"):
            ServerSentEvent()


class ItemTests(SimpleTestCase):
    def test_str_is_data(self) -> None:
        self.assertEqual(encode_event("a\nb"), b"data: a\ndata: b\n\n")

    def test_dict_holds_fields(self) -> None:
        self.assertEqual(
            encode_event({"data": "x", "event": "e", "id": 1, "retry": 5}),
            b"event: e\ndata: x\nid: 1\nretry: 5\n\n",
        )

    def test_dict_data_that_is_not_str_is_json(self) -> None:
        self.assertEqual(encode_event({"data": [1, "é"]}), b'data: [1, "\\u00e9"]\n\n')

    def test_dict_with_other_keys_is_refused_with_a_hint(self) -> None:
        with self.assertRaisesMessage(ValueError, "yield {'data': your_dict}"):
            encode_event({"progress": 50})

    def test_dict_fields_are_validated(self) -> None:
        with self.assertRaisesMessage(ValueError, "must not contain a newline"):
            encode_event({"data": "x", "event": "a\nb"})

    def test_other_items_are_refused(self) -> None:
        with self.assertRaisesMessage(TypeError, "not bytes"):
            encode_event(b"raw")


class ResponseTests(SimpleTestCase):
    def test_headers(self) -> None:
        response = EventStreamResponse([])
        self.assertEqual(response["Content-Type"], "text/event-stream; charset=utf-8")
        self.assertEqual(response["Cache-Control"], "no-cache")
        self.assertEqual(response["X-Accel-Buffering"], "no")
        self.assertEqual(response["Content-Encoding"], "identity")
        self.assertTrue(response.is_async)

    def test_headers_given_win(self) -> None:
        response = EventStreamResponse([], headers={"Cache-Control": "no-store"}, status=201)
        self.assertEqual(response["Cache-Control"], "no-store")
        self.assertEqual(response.status_code, 201)

    def test_str_source_is_refused(self) -> None:
        with self.assertRaisesMessage(TypeError, "not a str or bytes"):
            EventStreamResponse("data")  # type: ignore[arg-type]

    def test_negative_ping_is_refused(self) -> None:
        with self.assertRaisesMessage(ValueError, "ping must be"):
            EventStreamResponse([], ping=-1)

    def test_last_event_id(self) -> None:
        factory = RequestFactory()
        self.assertEqual(last_event_id(factory.get("/", HTTP_LAST_EVENT_ID="17")), "17")
        self.assertIsNone(last_event_id(factory.get("/")))
        self.assertIsNone(last_event_id(factory.get("/", HTTP_LAST_EVENT_ID="")))


# -- through the handler ------------------------------------------------------------------------


class SignalCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **kwargs: Any) -> None:
        self.calls += 1


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
class HandlerTestCase(SimpleTestCase):
    def setUp(self) -> None:
        observed.clear()
        gates.clear()
        gates["sync"] = threading.Event()
        # A source blocked on the gate must not outlive a failed test.
        self.addCleanup(gates["sync"].set)
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)
        self.finished = SignalCounter()
        request_finished.connect(self.finished)
        self.addCleanup(request_finished.disconnect, self.finished)

    def communicator(self, path: str, query: bytes = b"", **scope: Any) -> ApplicationCommunicator:
        return ApplicationCommunicator(
            get_asgi_application(), http_scope(path, query_string=query, **scope)
        )

    async def request(self, path: str, query: bytes = b"", **scope: Any) -> list[dict[str, Any]]:
        communicator = self.communicator(path, query, **scope)
        await communicator.send_input({"type": "http.request"})
        messages = await collect_response(communicator)
        await communicator.wait(timeout=TIMEOUT)
        return messages

    async def next_body(self, communicator: ApplicationCommunicator) -> bytes:
        message = await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(message["type"], "http.response.body")
        self.assertTrue(message["more_body"])
        body: bytes = message["body"]
        return body

    async def read_to_the_end(self, communicator: ApplicationCommunicator) -> None:
        while (await communicator.receive_output(timeout=TIMEOUT))["more_body"]:
            pass

    async def bodies_until(self, communicator: ApplicationCommunicator, last: bytes) -> list[bytes]:
        bodies = [await self.next_body(communicator)]
        while bodies[-1] != last:
            bodies.append(await self.next_body(communicator))
        return bodies


class StreamTests(HandlerTestCase):
    async def test_async_source(self) -> None:
        start, *rest = await self.request("/sse/async/", b"n=3")
        self.assertEqual(start["status"], 200)
        self.assertIn((b"Content-Type", b"text/event-stream; charset=utf-8"), start["headers"])
        self.assertIn((b"Cache-Control", b"no-cache"), start["headers"])
        self.assertIn((b"X-Accel-Buffering", b"no"), start["headers"])
        self.assertEqual(
            [m["body"] for m in rest],
            [
                b"data: event 0\nid: 0\n\n",
                b"data: event 1\nid: 1\n\n",
                b"data: event 2\nid: 2\n\n",
                b"",
            ],
        )
        self.assertEqual(observed["async_exit"], "exhausted")
        self.assertEqual(observed["async_finally"], 1)
        self.assertEqual(self.finished.calls, 1)

    async def test_sync_source_runs_on_the_views_thread(self) -> None:
        messages = await self.request("/sse/sync/", b"n=3")
        self.assertEqual(
            body_of(messages),
            b"data: event 0\nid: 0\n\ndata: event 1\nid: 1\n\ndata: event 2\nid: 2\n\n",
        )
        self.assertEqual(observed["sync_threads"], {observed["view_thread"]})
        self.assertEqual(observed["sync_exit"], "exhausted")
        self.assertEqual(observed["sync_finally"], 1)
        self.assertEqual(self.finished.calls, 1)

    async def test_str_dict_and_event_items(self) -> None:
        messages = await self.request("/sse/mixed/")
        self.assertEqual(
            body_of(messages),
            b"data: plain\n\n"
            b"event: note\ndata: from a dict\nid: 7\n\n"
            b'data: {"when": "2025-01-02", "n": [1, 2]}\n\n'
            b"event: multi\ndata: line 1\ndata: line 2\ndata: line 3\ndata: line 4\n\n"
            b"retry: 2500\n\n",
        )

    async def test_list_and_async_iterator_sources(self) -> None:
        messages = await self.request("/sse/iterables/", b"kind=list")
        self.assertEqual(body_of(messages), b"data: a\n\ndata: b\n\n")
        messages = await self.request("/sse/iterables/", b"kind=countdown")
        self.assertEqual(body_of(messages), b"data: 1\n\ndata: 0\n\n")

    async def test_source_error_propagates_after_the_events_before_it(self) -> None:
        communicator = self.communicator("/sse/failing/")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: fine\n\n")
        with self.assertRaisesMessage(ValueError, "the source failed"):
            await communicator.wait(timeout=TIMEOUT)
        self.assertEqual(self.finished.calls, 1)

    async def test_head_does_not_start_the_source(self) -> None:
        start, end = await self.request("/sse/async/", method="HEAD")
        self.assertEqual(start["status"], 200)
        self.assertEqual(end["body"], b"")
        self.assertNotIn("async_finally", observed)
        self.assertEqual(self.finished.calls, 1)


class PingTests(HandlerTestCase):
    async def test_ping_while_an_async_source_waits_then_its_event(self) -> None:
        gates["async"] = asyncio.Event()
        await self.assert_pings_while_the_source_waits("async")

    async def test_ping_while_a_sync_source_blocks_its_thread(self) -> None:
        await self.assert_pings_while_the_source_waits("sync")

    async def assert_pings_while_the_source_waits(self, flavour: str) -> None:
        """/sse/<flavour>-waiting/ gives one event, then waits for its gate before the next."""
        communicator = self.communicator(f"/sse/{flavour}-waiting/", b"ping=0.05")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: before\n\n")
        # Silence: the next thing sent must be a ping, not the event the source waits to give.
        self.assertEqual(await self.next_body(communicator), PING)
        gates[flavour].set()
        # Pings that raced with the gate may come first; the pending event is not lost.
        bodies = await self.bodies_until(communicator, b"data: after\n\n")
        self.assertEqual(set(bodies[:-1]) - {PING}, set())
        await self.read_to_the_end(communicator)
        await communicator.wait(timeout=TIMEOUT)
        self.assertEqual(observed[f"{flavour}_finally"], 1)

    async def test_no_ping_when_disabled(self) -> None:
        gates["async"] = asyncio.Event()
        communicator = self.communicator("/sse/async-waiting/")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: before\n\n")
        self.assertTrue(await communicator.receive_nothing(timeout=0.2))
        gates["async"].set()
        self.assertEqual(await self.next_body(communicator), b"data: after\n\n")
        await self.read_to_the_end(communicator)
        await communicator.wait(timeout=TIMEOUT)


class DisconnectTests(HandlerTestCase):
    async def read_two_events_then_leave(self, path: str) -> None:
        communicator = self.communicator(path, b"n=1000000")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: event 0\nid: 0\n\n")
        self.assertEqual(await self.next_body(communicator), b"data: event 1\nid: 1\n\n")
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=TIMEOUT)

    async def test_async_source_is_closed_when_the_client_leaves(self) -> None:
        await self.read_two_events_then_leave("/sse/async/")
        self.assertIn(observed["async_exit"], {"CancelledError", "GeneratorExit"})
        self.assertEqual(observed["async_finally"], 1)
        self.assertEqual(self.finished.calls, 1)

    async def test_sync_source_is_closed_when_the_client_leaves(self) -> None:
        await self.read_two_events_then_leave("/sse/sync/")
        self.assertEqual(observed["sync_exit"], "GeneratorExit")
        self.assertEqual(observed["sync_finally"], 1)
        self.assertEqual(self.finished.calls, 1)

    async def test_async_source_waiting_for_an_event_is_cancelled(self) -> None:
        gates["async"] = asyncio.Event()
        communicator = self.communicator("/sse/async-waiting/", b"ping=0.05")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: before\n\n")
        self.assertEqual(await self.next_body(communicator), PING)
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=TIMEOUT)
        self.assertEqual(observed["async_finally"], 1)
        self.assertEqual(self.finished.calls, 1)

    async def test_blocked_sync_source_is_closed_once_it_yields(self) -> None:
        communicator = self.communicator("/sse/sync-waiting/", b"ping=0.05")
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(await self.next_body(communicator), b"data: before\n\n")
        self.assertEqual(await self.next_body(communicator), PING)
        await communicator.send_input({"type": "http.disconnect"})
        # The thread is still inside the source: closing it has to wait for the gate.
        gates["sync"].set()
        await communicator.wait(timeout=TIMEOUT)
        self.assertEqual(observed["sync_finally"], 1)
        self.assertEqual(self.finished.calls, 1)


class ShutdownTests(HandlerTestCase):
    """A server's graceful shutdown: an event stream has no natural end, so one cancelled by
    the server, or still open at the lifespan shutdown, ends as a stream that ran out."""

    async def open_stream(self, application: Any, url: str) -> ApplicationCommunicator:
        communicator = ApplicationCommunicator(
            application, http_scope(url, query_string=b"n=1000000")
        )
        await communicator.send_input({"type": "http.request"})
        start = await communicator.receive_output(timeout=TIMEOUT)
        self.assertEqual(start["status"], 200)
        await self.next_body(communicator)
        return communicator

    async def assert_ended_properly(self, communicator: ApplicationCommunicator) -> None:
        while (message := await communicator.receive_output(timeout=TIMEOUT))["more_body"]:
            pass
        self.assertEqual(message, {"type": "http.response.body", "body": b"", "more_body": False})
        await communicator.wait(timeout=TIMEOUT)
        self.assertFalse(communicator.future.cancelled())  # The cancellation was handled.
        self.assertEqual(self.finished.calls, 1)

    async def test_a_stream_the_server_cancels_ends_properly(self) -> None:
        cases = [("/sse/async/", "async_finally"), ("/sse/sync/", "sync_finally")]
        for url, finally_key in cases:
            with self.subTest(url=url):
                observed.clear()
                self.finished.calls = 0
                communicator = await self.open_stream(get_asgi_application(), url)
                communicator.future.cancel()  # What uvicorn does at its graceful timeout.
                await self.assert_ended_properly(communicator)
                self.assertEqual(observed[finally_key], 1)

    async def test_lifespan_shutdown_ends_the_streams_still_open(self) -> None:
        application = get_asgi_application()
        lifespan = await started_lifespan(application)
        streams = [await self.open_stream(application, "/sse/async/") for _ in range(3)]
        await lifespan.send_input({"type": "lifespan.shutdown"})
        self.assertEqual(
            await lifespan.receive_output(timeout=TIMEOUT), {"type": "lifespan.shutdown.complete"}
        )
        for communicator in streams:
            while (await communicator.receive_output(timeout=TIMEOUT))["more_body"]:
                pass
            await communicator.wait(timeout=TIMEOUT)
        self.assertEqual(observed["async_finally"], 3)
        self.assertEqual(self.finished.calls, 3)
        self.assertEqual(application.event_streams, set())

    async def test_a_plain_stream_the_server_cancels_stays_cut(self) -> None:
        communicator = ApplicationCommunicator(
            get_asgi_application(), http_scope("/endless-plain/")
        )
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=TIMEOUT)
        await self.next_body(communicator)
        communicator.future.cancel()
        await communicator.wait(timeout=TIMEOUT)
        self.assertTrue(communicator.future.cancelled())  # Passed on, not taken back.
        sent = []
        while not communicator.output_queue.empty():
            sent.append(communicator.output_queue.get_nowait())
        # Parts already queued may follow, but never the last message of a complete body.
        self.assertTrue(all(message["more_body"] for message in sent), sent)
        self.assertEqual(self.finished.calls, 1)


class MiddlewareTests(HandlerTestCase):
    @override_settings(MIDDLEWARE=["django.middleware.gzip.GZipMiddleware"])
    async def test_gzip_middleware_leaves_events_alone(self) -> None:
        headers = [(b"host", b"testserver"), (b"accept-encoding", b"gzip, deflate")]
        control_start, *_ = await self.request("/plain-stream/", headers=headers)
        self.assertIn((b"Content-Encoding", b"gzip"), control_start["headers"])

        start, *rest = await self.request("/sse/async/", b"n=2", headers=headers)
        self.assertIn((b"Content-Encoding", b"identity"), start["headers"])
        self.assertEqual(
            body_of([start, *rest]), b"data: event 0\nid: 0\n\ndata: event 1\nid: 1\n\n"
        )

    @override_settings(MIDDLEWARE=["django.middleware.http.ConditionalGetMiddleware"])
    async def test_conditional_get_middleware_still_streams(self) -> None:
        for header in (
            (b"if-none-match", b"*"),
            (b"if-modified-since", b"Sat, 01 Jan 2000 00:00:00 GMT"),
        ):
            with self.subTest(header=header):
                headers = [(b"host", b"testserver"), header]
                start, *rest = await self.request("/sse/async/", b"n=1", headers=headers)
                self.assertEqual(start["status"], 200)
                self.assertNotIn(b"ETag", [name for name, _ in start["headers"]])
                self.assertEqual(body_of([start, *rest]), b"data: event 0\nid: 0\n\n")


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
class DjangoTestClientTests(SimpleTestCase):
    def setUp(self) -> None:
        observed.clear()

    def test_sync_client_reads_the_whole_stream(self) -> None:
        response = self.client.get("/sse/sync/?n=2")
        self.assertEqual(response["Content-Type"], "text/event-stream; charset=utf-8")
        with warnings.catch_warnings():
            # Django's own warning: the sync client must consume an async iterator.
            warnings.filterwarnings("ignore", message=".*must consume asynchronous iterators")
            body = b"".join(response)
        self.assertEqual(body, b"data: event 0\nid: 0\n\ndata: event 1\nid: 1\n\n")
        self.assertEqual(observed["sync_finally"], 1)

    async def test_async_client_reads_the_whole_stream(self) -> None:
        response = await self.async_client.get("/sse/async/?n=2")
        body = b"".join([part async for part in response])
        self.assertEqual(body, b"data: event 0\nid: 0\n\ndata: event 1\nid: 1\n\n")
        self.assertEqual(observed["async_finally"], 1)
