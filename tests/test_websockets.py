"""WebSocket views in the URLconf: the handshake through the middleware, messages, denial,
origin checks, errors, signals, and no thread held while a socket waits."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any
from unittest import mock

from asgiref.testing import ApplicationCommunicator
from django.test import SimpleTestCase, override_settings
from django.urls import reverse

from asgi_bridge import ASGIHandler, WebSocketDisconnect, get_asgi_application
from asgi_bridge.metrics import thread_metrics, websocket_metrics

from . import urls
from .asgi import ServedLikeByAServer, body_of, collect_response, http_scope, record_signals

TIMEOUT = 5


def websocket_scope(path: str, **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    scope.update(extra)
    return scope


class WebSocketTestCase(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()
        self.signals = record_signals(self)
        self.application = get_asgi_application()

    async def connect(self, scope: dict[str, Any]) -> tuple[ApplicationCommunicator, Any]:
        communicator = ApplicationCommunicator(self.application, scope)
        await communicator.send_input({"type": "websocket.connect"})
        return communicator, await communicator.receive_output(TIMEOUT)


async def assert_cancelling_closes_with_1001(
    test: SimpleTestCase, communicator: ApplicationCommunicator
) -> None:
    """Cancel the application as a server does at shutdown: the client gets 1001, and the
    application returns, its cancellation taken back."""
    communicator.future.cancel()
    test.assertEqual(
        await communicator.receive_output(TIMEOUT),
        {"type": "websocket.close", "code": 1001, "reason": "Going Away"},
    )
    await asyncio.wait_for(asyncio.wait([communicator.future]), TIMEOUT)
    test.assertFalse(communicator.future.cancelled())
    test.assertIsNone(communicator.future.result())
    if sys.version_info >= (3, 11):
        test.assertEqual(communicator.future.cancelling(), 0)


class EchoTests(WebSocketTestCase):
    async def test_echo_text_and_bytes_then_close(self) -> None:
        communicator, answer = await self.connect(websocket_scope("/ws/echo/"))
        self.assertEqual(answer, {"type": "websocket.accept", "subprotocol": None})
        await communicator.send_input({"type": "websocket.receive", "text": "hello"})
        self.assertEqual(
            await communicator.receive_output(TIMEOUT), {"type": "websocket.send", "text": "hello"}
        )
        await communicator.send_input({"type": "websocket.receive", "bytes": b"\x00\x01"})
        self.assertEqual(
            await communicator.receive_output(TIMEOUT),
            {"type": "websocket.send", "bytes": b"\x00\x01"},
        )
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(TIMEOUT)
        # The view ran on the event loop; the handshake is one request, from start to end.
        self.assertEqual(urls.observed["websocket_view_thread"], threading.get_ident())
        self.assertEqual(self.signals, ["started", "finished"])

    async def test_reverse_and_path_converters(self) -> None:
        self.assertEqual(reverse("websocket_echo"), "/ws/echo/")
        scope = websocket_scope("/ws/chat/lobby/", subprotocols=["chat.v1", "chat.v2"])
        communicator, answer = await self.connect(scope)
        self.assertEqual(answer, {"type": "websocket.accept", "subprotocol": "chat.v2"})
        sent = await communicator.receive_output(TIMEOUT)
        self.assertEqual(json.loads(sent["text"]), {"room": "lobby", "subprotocol": "chat.v2"})
        self.assertEqual((await communicator.receive_output(TIMEOUT))["type"], "websocket.close")
        await communicator.wait(TIMEOUT)

    async def test_a_plain_request_to_a_websocket_view_is_426(self) -> None:
        communicator = ApplicationCommunicator(self.application, http_scope("/ws/echo/"))
        await communicator.send_input({"type": "http.request"})
        messages = await collect_response(communicator)
        await communicator.wait(TIMEOUT)
        self.assertEqual(messages[0]["status"], 426)
        self.assertIn((b"Upgrade", b"websocket"), messages[0]["headers"])
        self.assertIn(b"Upgrade Required", body_of(messages))


class DenialTests(WebSocketTestCase):
    DENIAL = {"websocket.http.response": {}}

    async def denied(self, path: str, **extra: Any) -> tuple[int, bytes]:
        communicator, start = await self.connect(
            websocket_scope(path, extensions=self.DENIAL, **extra)
        )
        self.assertEqual(start["type"], "websocket.http.response.start", start)
        body = await communicator.receive_output(TIMEOUT)
        self.assertEqual(body["type"], "websocket.http.response.body")
        await communicator.wait(TIMEOUT)
        self.assertEqual(self.signals, ["started", "finished"])
        return start["status"], body["body"]

    async def test_the_views_response_before_accept_is_the_denial(self) -> None:
        self.assertEqual(await self.denied("/ws/denied/"), (403, b"not for you"))

    async def test_an_http_view_refuses_a_handshake(self) -> None:
        status, _ = await self.denied("/")
        self.assertEqual(status, 404)

    async def test_an_unknown_path_is_404(self) -> None:
        status, _ = await self.denied("/no/such/socket/")
        self.assertEqual(status, 404)

    async def test_unsupported_subprotocols_are_403(self) -> None:
        status, _ = await self.denied("/ws/chat/lobby/", subprotocols=["chat.v1"])
        self.assertEqual(status, 403)

    async def test_without_the_extension_the_server_refuses(self) -> None:
        communicator, answer = await self.connect(websocket_scope("/ws/denied/"))
        self.assertEqual(answer["type"], "websocket.close")
        await communicator.wait(TIMEOUT)
        self.assertEqual(self.signals, ["started", "finished"])


class OriginTests(WebSocketTestCase):
    async def status_for(self, origin: bytes | None) -> str:
        headers = [(b"host", b"testserver")]
        if origin is not None:
            headers.append((b"origin", origin))
        communicator, answer = await self.connect(
            websocket_scope("/ws/echo/", headers=headers, extensions=DenialTests.DENIAL)
        )
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(TIMEOUT)
        return str(answer.get("status", answer["type"]))

    @override_settings(ALLOWED_HOSTS=["testserver", "www.example.com"])
    async def test_same_host_and_allowed_hosts_pass_others_are_403(self) -> None:
        self.assertEqual(await self.status_for(b"http://testserver"), "websocket.accept")
        self.assertEqual(await self.status_for(b"https://www.example.com"), "websocket.accept")
        self.assertEqual(await self.status_for(None), "websocket.accept")
        self.assertEqual(await self.status_for(b"https://evil.example"), "403")
        self.assertEqual(await self.status_for(b"null"), "403")

    @override_settings(
        ALLOWED_HOSTS=["testserver"], CSRF_TRUSTED_ORIGINS=["https://*.partner.example"]
    )
    async def test_csrf_trusted_origins_pass(self) -> None:
        self.assertEqual(await self.status_for(b"https://app.partner.example"), "websocket.accept")
        self.assertEqual(await self.status_for(b"http://app.partner.example"), "403")

    @override_settings(
        ALLOWED_HOSTS=["testserver"],
        ASGI_BRIDGE={"WEBSOCKET_ALLOW_NO_ORIGIN": False},
    )
    async def test_a_missing_origin_can_be_refused(self) -> None:
        self.assertEqual(await self.status_for(None), "403")

    @override_settings(ASGI_BRIDGE={"WEBSOCKET_ORIGIN_CHECK": False})
    async def test_the_check_can_be_turned_off(self) -> None:
        self.assertEqual(await self.status_for(b"https://evil.example"), "websocket.accept")


class ErrorTests(WebSocketTestCase):
    async def test_an_error_after_accept_closes_with_1011_and_is_logged(self) -> None:
        communicator, answer = await self.connect(websocket_scope("/ws/fails/"))
        self.assertEqual(answer["type"], "websocket.accept")
        with self.assertLogs("django.request", "ERROR") as logged:
            await communicator.send_input({"type": "websocket.receive", "text": "go"})
            closing = await communicator.receive_output(TIMEOUT)
            await communicator.wait(TIMEOUT)
        self.assertEqual((closing["type"], closing["code"]), ("websocket.close", 1011))
        self.assertIn("ValueError: the view failed", logged.output[0])
        self.assertEqual(self.signals, ["started", "finished"])


@override_settings(
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "tests.middleware.RecordingMiddleware",
    ],
)
class CancelledFromOutsideTests(WebSocketTestCase):
    """A server stopping an open socket by cancelling its view (hypercorn at the end of its
    graceful timeout, daphne at shutdown) gets 1001 from it, not the server's 1011."""

    async def test_an_open_socket_closes_with_1001_and_the_view_returns(self) -> None:
        communicator, answer = await self.connect(websocket_scope("/ws/echo/"))
        self.assertEqual(answer["type"], "websocket.accept")
        await communicator.send_input({"type": "websocket.receive", "text": "hi"})
        self.assertEqual(
            await communicator.receive_output(TIMEOUT), {"type": "websocket.send", "text": "hi"}
        )
        urls.observed.pop("middleware_threads", None)
        await assert_cancelling_closes_with_1001(self, communicator)
        # The response half of the middleware ran, as for a view that closed.
        self.assertEqual(len(urls.observed.get("middleware_threads", [])), 1)
        self.assertTrue(await communicator.receive_nothing(0.05))
        self.assertEqual(self.signals, ["started", "finished"])

    async def test_a_handshake_not_yet_answered_stays_cancelled(self) -> None:
        communicator = ApplicationCommunicator(self.application, websocket_scope("/ws/undecided/"))
        await communicator.send_input({"type": "websocket.connect"})
        for _ in range(500):
            if self.signals:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        communicator.future.cancel()
        await asyncio.wait_for(asyncio.wait([communicator.future]), TIMEOUT)
        self.assertTrue(communicator.future.cancelled())
        self.assertTrue(communicator.output_queue.empty())
        self.assertEqual(self.signals, ["started", "finished"])

    async def test_a_socket_the_client_closed_sends_nothing_more(self) -> None:
        from asgi_bridge.websockets import WebSocket, WebSocketState, websocket

        sent: list[dict[str, Any]] = []
        waiting = asyncio.Event()

        @websocket
        async def view(request: Any, ws: WebSocket) -> None:
            ws.client_state = WebSocketState.DISCONNECTED  # As after a websocket.disconnect.
            waiting.set()
            await asyncio.Event().wait()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            raise AssertionError("not called")

        from asgi_bridge.websockets.handshake import SOCKET_KEY

        socket = WebSocket(websocket_scope("/"), receive, send)
        request = mock.Mock(scope={SOCKET_KEY: socket})
        with mock.patch("asgi_bridge.websockets.views.origin_allowed", return_value=True):
            task = asyncio.ensure_future(view(request))
            await asyncio.wait_for(waiting.wait(), TIMEOUT)
            task.cancel()
            await asyncio.wait([task])
        self.assertTrue(task.cancelled())
        self.assertEqual(sent, [])


@override_settings(
    ASGI_BRIDGE={"THREADS": 2},
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "tests.middleware.RecordingMiddleware",
    ],
)
class NoThreadPerSocketTests(WebSocketTestCase):
    async def test_open_sockets_hold_no_thread(self) -> None:
        count = 100
        open_before = websocket_metrics().open
        urls.observed["websocket_gate"] = urls.Gate(count)
        sockets = []
        for _ in range(count):
            communicator, answer = await self.connect(websocket_scope("/ws/waiting/"))
            self.assertEqual(answer["type"], "websocket.accept")
            sockets.append(communicator)
        for _ in range(500):
            if urls.observed["websocket_gate"].arrived == count:
                break
            await asyncio.sleep(0.01)
        self.assertEqual(urls.observed["websocket_gate"].arrived, count)
        # A hundred sockets open behind sync middleware, with two threads: none is held (the
        # last handshake's thread may still be on its way back to the pool).
        for _ in range(500):
            if thread_metrics().busy == 0:
                break
            await asyncio.sleep(0.01)
        self.assertEqual(thread_metrics().busy, 0)
        self.assertEqual(websocket_metrics().open - open_before, count)
        for communicator in sockets:
            await communicator.send_input({"type": "websocket.receive", "text": "bye"})
            self.assertEqual(
                await communicator.receive_output(TIMEOUT),
                {"type": "websocket.send", "text": "bye"},
            )
            await communicator.wait(TIMEOUT)
        self.assertEqual(websocket_metrics().open, open_before)
        self.assertEqual(self.signals.count("started"), count)
        self.assertEqual(self.signals.count("finished"), count)


class CloseAfterErrorTests(SimpleTestCase):
    def socket(self, refuse: Any) -> tuple[Any, list[dict[str, Any]]]:
        from asgi_bridge.websockets import WebSocket, WebSocketState

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            refusal = refuse(message)
            if refusal is not None:
                raise refusal
            sent.append(dict(message))

        async def receive() -> dict[str, Any]:
            raise AssertionError("not called")

        socket = WebSocket(websocket_scope("/"), receive, send)
        socket.client_state = WebSocketState.CONNECTED
        return socket, sent

    def test_1011_where_the_server_takes_it(self) -> None:
        socket, sent = self.socket(lambda message: None)
        asyncio.run(socket.close_after_error())
        self.assertEqual(
            sent, [{"type": "websocket.close", "code": 1011, "reason": "Internal Server Error"}]
        )

    def test_1000_where_the_server_refuses_1011(self) -> None:
        # daphne (autobahn) raises on an application close code outside 1000 and 3000-4999.
        def refuse(message: dict[str, Any]) -> Exception | None:
            return Exception("invalid close code 1011") if message["code"] == 1011 else None

        socket, sent = self.socket(refuse)
        asyncio.run(socket.close_after_error())
        self.assertEqual(
            sent, [{"type": "websocket.close", "code": 1000, "reason": "Internal Server Error"}]
        )
        self.assertEqual(socket.client_state.value, "disconnected")

    def test_1001_going_away_where_the_server_takes_it(self) -> None:
        socket, sent = self.socket(lambda message: None)
        asyncio.run(socket.close_going_away())
        self.assertEqual(sent, [{"type": "websocket.close", "code": 1001, "reason": "Going Away"}])

    def test_1000_going_away_where_the_server_refuses_1001(self) -> None:
        def refuse(message: dict[str, Any]) -> Exception | None:
            return Exception("invalid close code 1001") if message["code"] == 1001 else None

        socket, sent = self.socket(refuse)
        asyncio.run(socket.close_going_away())
        self.assertEqual(sent, [{"type": "websocket.close", "code": 1000, "reason": "Going Away"}])

    def test_a_client_that_left_is_not_closed_again(self) -> None:
        socket, sent = self.socket(lambda message: OSError("gone"))
        asyncio.run(socket.close_after_error())
        self.assertEqual(sent, [])


def slow_socket() -> tuple[Any, list[dict[str, Any]], asyncio.Event]:
    """A connected WebSocket whose first message waits for the client to read, as a server's
    send does when its buffer is full; it queues at most two messages behind it."""
    from asgi_bridge.websockets import WebSocket, WebSocketState

    sent: list[dict[str, Any]] = []
    reading = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if not sent:
            await reading.wait()
        sent.append(dict(message))

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")

    socket = WebSocket(websocket_scope("/ws/slow/"), receive, send)
    socket.client_state = WebSocketState.CONNECTED
    socket.send_queue_size = 2
    return socket, sent, reading


class SendQueueTests(SimpleTestCase):
    """A send that waits for the server queues the others behind it, up to a bound."""

    def test_sends_behind_a_waiting_one_are_queued_and_sent_in_order(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            socket, sent, reading = slow_socket()
            first = asyncio.ensure_future(socket.send("one"))
            await asyncio.sleep(0)
            await socket.send("two")  # returns once queued
            await socket.send(b"three")
            self.assertEqual(sent, [])
            reading.set()
            await first
            await socket.close()
            return sent

        self.assertEqual(
            asyncio.run(scenario()),
            [
                {"type": "websocket.send", "text": "one"},
                {"type": "websocket.send", "text": "two"},
                {"type": "websocket.send", "bytes": b"three"},
                {"type": "websocket.close", "code": 1000, "reason": ""},
            ],
        )

    def test_a_client_that_does_not_read_is_closed_with_1013(self) -> None:
        closes_before = websocket_metrics().slow_reader_closes

        async def scenario() -> tuple[list[dict[str, Any]], int]:
            socket, sent, reading = slow_socket()
            first = asyncio.ensure_future(socket.send("one"))
            await asyncio.sleep(0)
            await socket.send("two")
            await socket.send("three")
            with (
                self.assertLogs("asgi_bridge", "WARNING") as logged,
                self.assertRaises(WebSocketDisconnect) as refused,
            ):
                await socket.send("four")
            self.assertIn("2 queued messages dropped", logged.output[0])
            # A close asked for meanwhile waits for the writer too.
            await socket.close()
            reading.set()
            await first
            with self.assertRaises(WebSocketDisconnect):
                await socket.send("five")
            return sent, refused.exception.code

        sent, code = asyncio.run(scenario())
        self.assertEqual(code, 1013)
        self.assertEqual(websocket_metrics().slow_reader_closes - closes_before, 1)
        self.assertEqual(
            sent,
            [
                {"type": "websocket.send", "text": "one"},
                {"type": "websocket.close", "code": 1013, "reason": "Try Again Later"},
            ],
        )


class InstrumentedHandler(ASGIHandler):
    """A subclass wrapping run_get_response, as instrumentation does: requests then take the
    path on which Django's own thread-sensitive sync_to_async runs the chain."""

    async def run_get_response(self, request: Any) -> Any:
        return await super().run_get_response(request)


@override_settings(MIDDLEWARE=["tests.middleware.RecordingMiddleware"])
class WebSocketThreadTests(ServedLikeByAServer, SimpleTestCase):
    async def test_the_handshakes_sync_code_runs_on_pooled_threads_on_every_path(self) -> None:
        for application in (get_asgi_application(), InstrumentedHandler()):
            with self.subTest(handler=type(application).__name__):
                urls.observed.clear()
                communicator = ApplicationCommunicator(application, websocket_scope("/ws/echo/"))
                await communicator.send_input({"type": "websocket.connect"})
                answer = await communicator.receive_output(TIMEOUT)
                self.assertEqual(answer["type"], "websocket.accept")
                await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
                await communicator.wait(TIMEOUT)
                names = {thread.ident: thread.name for thread in threading.enumerate()}
                middleware_threads = urls.observed["middleware_threads"]
                self.assertEqual(len(middleware_threads), 2)
                for ident in middleware_threads:
                    self.assertTrue(
                        names.get(ident, "").startswith("asgi_bridge-"), names.get(ident)
                    )
