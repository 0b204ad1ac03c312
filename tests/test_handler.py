"""ASGIHandler: the request cycle, streaming, files, HEAD, disconnects and body limits."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock, skipIf

from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from asgi_bridge import ASGIHandler, get_asgi_application, hop
from asgi_bridge import handler as handler_module
from asgi_bridge.sending import SYNC_BYTES_AHEAD
from asgi_bridge.threads import RequestThreadPool
from asgi_bridge.types import Message

from . import urls
from .asgi import (
    RecordingSend,
    ScriptedReceive,
    ServedLikeByAServer,
    body_of,
    collect_response,
    http_scope,
)

# Large enough that the byte budget, not the part count, bounds how far a producer runs ahead.
PART_SIZE = 2**16


class SignalCounter:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, **kwargs: Any) -> None:
        self.threads.append(threading.get_ident())


@contextmanager
def recorded_spools() -> Iterator[list[Any]]:
    """Every body spool the handler opens meanwhile, so a test can check that it was closed."""
    spools: list[Any] = []
    original = tempfile.SpooledTemporaryFile

    def spool(*args: Any, **kwargs: Any) -> Any:
        spools.append(original(*args, **kwargs))
        return spools[-1]

    with mock.patch.object(handler_module.tempfile, "SpooledTemporaryFile", spool):
        yield spools


class HandlerTestCase(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        urls.observed.clear()
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)
        self.finished = SignalCounter()
        request_finished.connect(self.finished)
        self.addCleanup(request_finished.disconnect, self.finished)
        handle, path = tempfile.mkstemp()
        os.write(handle, os.urandom(200_000))
        os.close(handle)
        self.addCleanup(os.unlink, path)
        urls.observed["file_path"] = path
        self.file_bytes = open(path, "rb").read()  # noqa: SIM115

    async def request(
        self, scope: dict[str, Any], body: bytes = b"", application: ASGIHandler | None = None
    ) -> list[dict[str, Any]]:
        communicator = ApplicationCommunicator(application or get_asgi_application(), scope)
        await communicator.send_input({"type": "http.request", "body": body})
        messages = await collect_response(communicator)
        await communicator.wait(timeout=5)
        return messages


class DispatchTests(HandlerTestCase):
    async def test_other_scope_types_raise_djangos_error(self) -> None:
        communicator = ApplicationCommunicator(get_asgi_application(), {"type": "other"})
        with self.assertRaisesMessage(
            ValueError, "Django can only handle ASGI/HTTP connections, not other."
        ):
            await communicator.wait()

    async def test_plain_response_carries_headers_and_body(self) -> None:
        start, body = await self.request(http_scope("/"))
        self.assertEqual(start["type"], "http.response.start")
        self.assertEqual(start["status"], 200)
        self.assertIn((b"Content-Type", b"text/html; charset=utf-8"), start["headers"])
        self.assertEqual(
            body, {"type": "http.response.body", "body": b"Hello World!", "more_body": False}
        )
        self.assertEqual(len(self.finished.threads), 1)

    async def test_invalid_utf8_query_string_is_a_logged_400(self) -> None:
        # Real servers refuse a raw 0xFF in the request line themselves; only this test reaches it.
        application = get_asgi_application()
        with self.assertLogs("django.request", "WARNING") as logs:
            start, body = await self.request(
                http_scope("/", query_string=b"name=\xff"), application=application
            )
        self.assertEqual(start["status"], 400)
        self.assertEqual(body["body"], b"")
        self.assertIn("Bad Request (UnicodeDecodeError)", logs.output[0])
        self.assertEqual(len(self.finished.threads), 1)

    async def test_string_ports_are_accepted(self) -> None:
        scope = http_scope("/", server=("testserver", "8000"), client=("10.0.0.1", "1234"))
        start, _ = await self.request(scope)
        self.assertEqual(start["status"], 200)

    async def test_scope_extensions_are_not_mutated(self) -> None:
        extensions = {"http.response.pathsend": {}, "other": {"a": 1}}
        scope = http_scope("/file/", extensions=extensions)
        snapshot = copy.deepcopy(extensions)
        await self.request(scope)
        self.assertEqual(extensions, snapshot)


class SyncStreamingTests(HandlerTestCase):
    async def test_each_part_is_one_message_and_no_consume_warning(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*must consume synchronous iterators.*")
            messages = await self.request(http_scope("/stream/sync/", query_string=b"n=3"))
        self.assertEqual(
            [m.get("body") for m in messages[1:]], [b"part 0\n", b"part 1\n", b"part 2\n", b""]
        )
        self.assertTrue(urls.observed["closed"])
        self.assertEqual(len(self.finished.threads), 1)

    async def test_iterator_is_advanced_lazily_not_collected(self) -> None:
        communicator = ApplicationCommunicator(
            get_asgi_application(),
            http_scope("/stream/sync/", query_string=b"n=1000&size=%d" % PART_SIZE),
        )
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=5)  # start
        first = await communicator.receive_output(timeout=5)
        self.assertTrue(first["body"].startswith(b"part 0\n"))
        # ApplicationCommunicator's queue is unbounded, so only the byte budget limits the
        # producer; a collected iterator would have yielded all 1000 parts before any message.
        self.assertLess(urls.observed["yielded"], 1000)
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=5)
        self.assertTrue(urls.observed["closed"])

    async def test_producer_stays_a_bounded_number_of_bytes_ahead(self) -> None:
        release = asyncio.Event()

        async def slow_send(message: dict[str, Any]) -> None:
            if message.get("body", b"").startswith(b"part 0\n"):
                await release.wait()

        receive = ScriptedReceive({"type": "http.request"})
        scope = http_scope("/stream/sync/", query_string=b"n=50&size=%d" % PART_SIZE)
        task = asyncio.ensure_future(get_asgi_application()(scope, receive, slow_send))
        ahead = SYNC_BYTES_AHEAD // PART_SIZE
        for _ in range(500):
            if urls.observed.get("yielded", 0) > ahead:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # time to overrun the bound, if it were not enforced
        # One part being sent, a budget's worth waiting, one produced and waiting for room.
        self.assertLessEqual(urls.observed["yielded"], ahead + 2)
        release.set()
        await asyncio.wait_for(task, 5)
        self.assertEqual(urls.observed["yielded"], 50)
        self.assertTrue(urls.observed["closed"])

    async def test_small_parts_are_produced_in_one_go(self) -> None:
        # 200 parts of 7 bytes fit the budget: the producer never waits for the loop.
        messages = await self.request(http_scope("/stream/sync/", query_string=b"n=200"))
        self.assertEqual(len(messages), 202)
        self.assertEqual(
            messages[-1], {"type": "http.response.body", "body": b"", "more_body": False}
        )
        self.assertEqual(len(self.finished.threads), 1)

    async def test_iterator_error_mid_stream_propagates_after_cleanup(self) -> None:
        send = RecordingSend()
        receive = ScriptedReceive({"type": "http.request"})
        scope = http_scope("/stream/sync/", query_string=b"n=5&fail=2")
        with self.assertRaisesMessage(ValueError, "part 2 failed"):
            await get_asgi_application()(scope, receive, send)
        self.assertEqual([m.get("body") for m in send.messages[1:]], [b"part 0\n", b"part 1\n"])
        self.assertTrue(urls.observed["closed"])
        self.assertEqual(len(self.finished.threads), 1)

    async def test_iterator_runs_off_the_loop_on_the_views_thread(self) -> None:
        await self.request(http_scope("/stream/sync/"))
        self.assertEqual(urls.observed["stream_threads"], {urls.observed["view_thread"]})
        self.assertNotIn(threading.get_ident(), urls.observed["stream_threads"])

    async def test_large_part_is_split_into_chunk_size_messages(self) -> None:
        messages = await self.request(http_scope("/stream/big/"))
        sizes = [len(m["body"]) for m in messages[1:]]
        self.assertEqual(sizes, [2**16, 2**16, 10, 0])

    async def test_disconnect_mid_stream_closes_generator_once(self) -> None:
        communicator = ApplicationCommunicator(
            get_asgi_application(), http_scope("/stream/sync/", query_string=b"n=100000")
        )
        await communicator.send_input({"type": "http.request"})
        await communicator.receive_output(timeout=5)
        await communicator.receive_output(timeout=5)
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=5)
        self.assertTrue(urls.observed["closed"])
        self.assertLess(urls.observed["yielded"], 100000)
        self.assertEqual(len(self.finished.threads), 1)


class AsyncStreamingTests(HandlerTestCase):
    async def test_async_stream_parts_and_cleanup(self) -> None:
        messages = await self.request(http_scope("/stream/async/", query_string=b"n=2"))
        self.assertEqual([m.get("body") for m in messages[1:]], [b"part 0\n", b"part 1\n", b""])
        self.assertTrue(urls.observed["closed"])

    async def test_send_failure_stops_stream_quietly(self) -> None:
        for error in (OSError("gone"), RuntimeError("ASGI flow error: Transport closed")):
            with self.subTest(error=error):
                urls.observed.clear()
                self.finished.threads.clear()
                send = RecordingSend(
                    fail_on=lambda m, e=error: e if m.get("body") == b"part 1\n" else None
                )
                receive = ScriptedReceive({"type": "http.request"})
                scope = http_scope("/stream/async/", query_string=b"n=1000")
                await get_asgi_application()(scope, receive, send)
                self.assertEqual([m.get("body") for m in send.messages[1:]], [b"part 0\n"])
                self.assertTrue(urls.observed["closed"])
                self.assertEqual(len(self.finished.threads), 1)


class FileResponseTests(HandlerTestCase):
    async def test_streamed_without_pathsend_extension(self) -> None:
        messages = await self.request(http_scope("/file/"))
        self.assertEqual(body_of(messages), self.file_bytes)
        self.assertNotIn("http.response.pathsend", [m["type"] for m in messages])
        self.assertTrue(urls.observed["file_closed"])

    async def test_pathsend_when_advertised(self) -> None:
        scope = http_scope("/file/", extensions={"http.response.pathsend": {}})
        start, pathsend = await self.request(scope)
        self.assertIn((b"Content-Length", str(len(self.file_bytes)).encode()), start["headers"])
        self.assertEqual(
            pathsend, {"type": "http.response.pathsend", "path": urls.observed["file_path"]}
        )
        self.assertNotIn("file_reads", urls.observed)
        self.assertTrue(urls.observed["file_closed"])
        self.assertEqual(len(self.finished.threads), 1)

    async def test_no_pathsend_when_content_was_replaced(self) -> None:
        scope = http_scope(
            "/file/", query_string=b"encoding=upper", extensions={"http.response.pathsend": {}}
        )
        messages = await self.request(scope)
        self.assertNotIn("http.response.pathsend", [m["type"] for m in messages])
        self.assertEqual(body_of(messages), self.file_bytes.upper())


class HeadTests(HandlerTestCase):
    async def test_head_file_is_not_read_but_closed(self) -> None:
        messages = await self.request(
            http_scope("/file/", method="HEAD", extensions={"http.response.pathsend": {}})
        )
        self.assertEqual(
            [m["type"] for m in messages], ["http.response.start", "http.response.body"]
        )
        self.assertEqual(messages[1]["body"], b"")
        self.assertIn(
            (b"Content-Length", str(len(self.file_bytes)).encode()), messages[0]["headers"]
        )
        self.assertNotIn("file_reads", urls.observed)
        self.assertTrue(urls.observed["file_closed"])
        self.assertEqual(len(self.finished.threads), 1)

    async def test_head_stream_is_not_iterated(self) -> None:
        messages = await self.request(http_scope("/stream/sync/", method="HEAD"))
        self.assertEqual(body_of(messages), b"")
        self.assertNotIn("yielded", urls.observed)
        self.assertEqual(len(self.finished.threads), 1)


class ListenForDisconnectTests(HandlerTestCase):
    async def test_empty_request_message_after_body_is_tolerated(self) -> None:
        receive = ScriptedReceive(
            {"type": "http.request", "body": b"abc"},
            {"type": "http.request", "body": b"", "more_body": False},
        )
        send = RecordingSend()
        await get_asgi_application()(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(body_of(send.messages), b"abc")

    async def test_other_unexpected_message_raises_assertion(self) -> None:
        receive = ScriptedReceive({"type": "http.request"}, {"type": "http.request", "body": b"x"})
        with self.assertRaisesMessage(
            AssertionError, "Invalid ASGI message after request body: http.request"
        ):
            await get_asgi_application()(
                http_scope("/echo/", method="POST"), receive, RecordingSend()
            )


class BodyLimitTests(HandlerTestCase):
    @override_settings(ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 100})
    async def test_declared_length_over_limit_is_refused_before_reading(self) -> None:
        receive = ScriptedReceive({"type": "http.request", "body": b"x" * 200})
        send = RecordingSend()
        scope = http_scope("/echo/", method="POST")
        scope["headers"] = [(b"content-length", b"200")]
        # Built first: django.setup() reconfigures logging and would drop assertLogs' handler.
        application = get_asgi_application()
        with self.assertLogs("django.request", "WARNING"):
            await application(scope, receive, send)
        self.assertEqual(receive.calls, 0)
        self.assertEqual(send.messages[0]["status"], 413)
        self.assertIn((b"Connection", b"close"), send.messages[0]["headers"])
        self.assertEqual(len(self.finished.threads), 1)

    @override_settings(ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 100})
    async def test_received_bytes_over_limit_stop_reading(self) -> None:
        receive = ScriptedReceive(
            *({"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(5))
        )
        send = RecordingSend()
        application = get_asgi_application()
        with self.assertLogs("django.request", "WARNING"):
            await application(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(receive.calls, 2)
        self.assertEqual(send.messages[0]["status"], 413)
        self.assertEqual(len(self.finished.threads), 1)

    async def test_no_limit_by_default(self) -> None:
        receive = ScriptedReceive(
            *({"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(4)),
            {"type": "http.request", "body": b"y"},
        )
        send = RecordingSend()
        await get_asgi_application()(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(body_of(send.messages), b"x" * 240 + b"y")


class BodyTimeoutTests(HandlerTestCase):
    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 0.05})
    async def test_stalled_body_is_answered_408(self) -> None:
        # The client sends part of the body, then nothing: ScriptedReceive then waits forever.
        receive = ScriptedReceive({"type": "http.request", "body": b"x" * 10, "more_body": True})
        send = RecordingSend()
        application = get_asgi_application()
        with (
            recorded_spools() as spools,
            self.assertLogs("django.request", "WARNING") as logs,
        ):
            await application(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(send.messages[0]["status"], 408)
        self.assertIn((b"Connection", b"close"), send.messages[0]["headers"])
        self.assertEqual(body_of(send.messages), b"408 Request Timeout")
        self.assertIn("Request Timeout", logs.output[0])
        self.assertTrue(spools[0].closed)
        self.assertEqual(len(self.finished.threads), 1)

    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 5})
    async def test_steady_body_within_timeout_is_served(self) -> None:
        receive = ScriptedReceive(
            {"type": "http.request", "body": b"a", "more_body": True},
            {"type": "http.request", "body": b"b"},
        )
        send = RecordingSend()
        await get_asgi_application()(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(body_of(send.messages), b"ab")

    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 30})
    async def test_server_cancelling_a_body_wait_is_not_a_timeout(self) -> None:
        receive = ScriptedReceive({"type": "http.request", "body": b"x", "more_body": True})
        send = RecordingSend()
        with recorded_spools() as spools:
            task = asyncio.ensure_future(
                get_asgi_application()(http_scope("/echo/", method="POST"), receive, send)
            )
            # Bounded, so a broken setup fails instead of hanging the suite.
            for _ in range(500):
                if receive.calls == 2:
                    break
                await asyncio.sleep(0.01)
            self.assertEqual(receive.calls, 2, "the handler never waited for more body")
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task
        # Cancelled, as the server asked: no 408, nothing sent, the spool closed.
        self.assertEqual(send.messages, [])
        self.assertTrue(spools[0].closed)
        self.assertEqual(self.finished.threads, [])

    async def test_no_timeout_by_default(self) -> None:
        self.assertIsNone(handler_module.bridge_settings().body_receive_timeout)


class TrickledReceive:
    """A client that sends ``size`` bytes of body ``piece`` bytes at a time, ``every`` seconds
    apart, then waits."""

    def __init__(self, size: int, piece: int, every: float) -> None:
        self.left, self.piece, self.every = size, piece, every

    async def __call__(self) -> Message:
        if self.left <= 0:
            await asyncio.Event().wait()
        await asyncio.sleep(self.every)
        piece = min(self.piece, self.left)
        self.left -= piece
        return {"type": "http.request", "body": b"x" * piece, "more_body": self.left > 0}


def body_scope(size: int, **extra: Any) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"content-length", str(size).encode())]
    return http_scope("/echo/", method="POST", headers=headers, **extra)


class BodyMinRateTests(HandlerTestCase):
    """BODY_MIN_RATE: after its grace, a body must keep up an average rate (mod_reqtimeout)."""

    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 0.2, "BODY_MIN_RATE": 1000})
    async def test_a_trickle_that_never_pauses_long_is_answered_408(self) -> None:
        # 1 byte every 20 ms never trips the 0.2 s gap, but is 50 bytes/s: after the 0.2 s
        # grace, plus 1 ms per byte received, it is behind.
        receive = TrickledReceive(size=10_000, piece=1, every=0.02)
        send = RecordingSend()
        with recorded_spools() as spools, self.assertLogs("django.request", "WARNING") as logs:
            await asyncio.wait_for(ASGIHandler()(body_scope(10_000), receive, send), 10)
        self.assertEqual(send.messages[0]["status"], 408)
        self.assertIn("ASGI_BRIDGE['BODY_MIN_RATE']", logs.output[0])
        self.assertIn("below 1,000 bytes/s", logs.output[0])
        self.assertTrue(spools[0].closed)
        self.assertEqual(len(self.finished.threads), 1)

    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 0.2, "BODY_MIN_RATE": 1000})
    async def test_a_slow_body_above_the_rate_is_served(self) -> None:
        # 100 bytes every 20 ms: 5,000 bytes/s, for longer than the grace.
        receive = TrickledReceive(size=3_000, piece=100, every=0.02)
        send = RecordingSend()
        await asyncio.wait_for(ASGIHandler()(body_scope(3_000), receive, send), 10)
        self.assertEqual(send.messages[0]["status"], 200)
        self.assertEqual(body_of(send.messages), b"x" * 3_000)

    @override_settings(ASGI_BRIDGE={"BODY_RECEIVE_TIMEOUT": 0.2, "BODY_MIN_RATE": None})
    async def test_none_turns_it_off(self) -> None:
        receive = TrickledReceive(size=30, piece=1, every=0.02)
        send = RecordingSend()
        await asyncio.wait_for(ASGIHandler()(body_scope(30), receive, send), 10)
        self.assertEqual(body_of(send.messages), b"x" * 30)

    async def test_the_default_is_apaches(self) -> None:
        config = handler_module.bridge_settings()
        self.assertEqual(config.body_min_rate, 500)
        self.assertEqual(handler_module.DEFAULT_BODY_MIN_RATE_GRACE, 20.0)

    def test_only_requests_that_can_have_a_body_arm_it(self) -> None:
        may_have_body = handler_module.may_have_body
        self.assertFalse(may_have_body(http_scope("/")))
        self.assertFalse(may_have_body(body_scope(0)))
        self.assertTrue(may_have_body(body_scope(5)))
        chunked = http_scope("/", headers=[(b"transfer-encoding", b"chunked")])
        self.assertTrue(may_have_body(chunked))
        self.assertTrue(may_have_body(http_scope("/", http_version="2")))
        self.assertTrue(may_have_body(None))


@contextmanager
def full_temporary_directory(size: str = "1m") -> Iterator[str]:
    """A real tmpfs of ``size`` as the temporary directory: writes past it fail with ENOSPC, as
    on a full disk. Mounting takes root, which the test machines have."""
    directory = tempfile.mkdtemp(prefix="asgi_bridge-full-")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        os.rmdir(directory)
        raise AssertionError(f"cannot mount a small tmpfs (needs root): {mounted.stderr}")
    try:
        with mock.patch.object(tempfile, "tempdir", directory):
            yield directory
    finally:
        subprocess.run(["umount", directory], check=True)
        os.rmdir(directory)


class FullDiskTests(HandlerTestCase):
    @override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=100_000)
    async def test_a_body_that_does_not_fit_on_disk_gets_503_and_leaves_nothing(self) -> None:
        body = b"x" * 3_000_000
        receive = ScriptedReceive(
            *(
                {"type": "http.request", "body": body[at : at + 65536], "more_body": True}
                for at in range(0, len(body), 65536)
            ),
            {"type": "http.request", "body": b""},
        )
        send = RecordingSend()
        with (
            full_temporary_directory() as directory,
            recorded_spools() as spools,
            self.assertLogs("django.request", "ERROR") as logs,
        ):
            await ASGIHandler()(body_scope(len(body)), receive, send)
            left = os.listdir(directory)
            usage = os.statvfs(directory)
        self.assertEqual(send.messages[0]["status"], 503)
        self.assertIn((b"Retry-After", b"10"), send.messages[0]["headers"])
        self.assertIn("No space left on device", logs.output[0])
        self.assertTrue(spools[0].closed)
        self.assertEqual(left, [])
        # The partial file's blocks were given back.
        self.assertEqual(usage.f_bfree, usage.f_blocks)
        self.assertEqual(len(self.finished.threads), 1)


class ReadBodyTests(HandlerTestCase):
    @override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=100)
    async def test_writes_after_rollover_happen_off_the_loop(self) -> None:
        writes: list[tuple[int, bool]] = []

        class RecordingSpool(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
            def write(self, data: bytes) -> int:  # type: ignore[override]
                writes.append((len(data), threading.get_ident() == loop_thread))
                return super().write(data)

        loop_thread = threading.get_ident()
        receive = ScriptedReceive(
            *({"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(3)),
            {"type": "http.request", "body": b"z"},
        )
        with mock.patch.object(handler_module.tempfile, "SpooledTemporaryFile", RecordingSpool):
            body_file = await ASGIHandler().read_body(receive)
        self.addCleanup(body_file.close)
        self.assertEqual(body_file.read(), b"x" * 180 + b"z")
        self.assertEqual([on_loop for _, on_loop in writes], [True, False, False, False])

    async def test_disconnect_while_reading_closes_the_spool(self) -> None:
        receive = ScriptedReceive(
            {"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}
        )
        send = RecordingSend()
        with recorded_spools() as spools:
            await get_asgi_application()(http_scope("/echo/", method="POST"), receive, send)
        self.assertEqual(send.messages, [])
        self.assertTrue(spools[0].closed)
        self.assertEqual(self.finished.threads, [])


class ConcurrencyTests(HandlerTestCase):
    async def test_handler_cancelled_by_server_still_finishes_request(self) -> None:
        receive = ScriptedReceive({"type": "http.request"})
        task = asyncio.ensure_future(
            get_asgi_application()(
                http_scope("/stream/sync/", query_string=b"n=100000000"), receive, RecordingSend()
            )
        )
        # Bounded, so a broken setup fails instead of hanging the suite.
        for _ in range(500):
            if urls.observed.get("yielded"):
                break
            await asyncio.sleep(0.01)
        self.assertTrue(urls.observed.get("yielded"), "the stream never started")
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        self.assertTrue(urls.observed["closed"])
        self.assertEqual(len(self.finished.threads), 1)

    @skipIf(sys.version_info < (3, 11), "Python 3.10 has no Task.uncancel() to tell them apart")
    async def test_server_cancel_is_not_mistaken_for_the_clients_disconnect(self) -> None:
        urls.observed["view_started"] = threading.Event()
        left = asyncio.Event()
        messages = [{"type": "http.request"}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await left.wait()
            return {"type": "http.disconnect"}

        task = asyncio.ensure_future(
            get_asgi_application()(http_scope("/async/waiting/"), receive, RecordingSend())
        )
        await wait_for_event(urls.observed["view_started"])
        # Both at once: the disconnect ends the view, the server's cancel must still end us.
        left.set()
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        self.assertTrue(urls.observed.get("view_cancelled"))
        self.assertEqual(len(self.finished.threads), 1)


SYNC_CHAIN = ["tests.middleware.RecordingMiddleware"]
ASYNC_CHAIN = ["tests.middleware.AsyncOnlyMiddleware"]


async def wait_for_event(event: threading.Event) -> None:
    """Wait for a thread-side event without blocking the event loop (bounded)."""
    for _ in range(500):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the view never started")


class ThreadModelTests(HandlerTestCase):
    """Where sync code runs, with either middleware chain; subclasses pick the chain."""

    middleware: list[str] = []

    def setUp(self) -> None:
        super().setUp()
        settings_override = override_settings(MIDDLEWARE=self.middleware)
        settings_override.enable()
        self.addCleanup(settings_override.disable)
        self.started = SignalCounter()
        request_started.connect(self.started)
        self.addCleanup(request_started.disconnect, self.started)

    async def test_sync_code_of_a_request_runs_on_one_pooled_thread(self) -> None:
        messages = await self.request(http_scope("/"))
        self.assertEqual(messages[0]["status"], 200)
        view_thread = urls.observed["view_thread"]
        self.assertEqual(self.started.threads, [view_thread])
        self.assertEqual(self.finished.threads, [view_thread])
        self.assertNotEqual(view_thread, threading.get_ident())
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        self.assertTrue(names[view_thread].startswith("asgi_bridge-"))

    async def test_async_view_runs_on_the_event_loop(self) -> None:
        messages = await self.request(http_scope("/async/"))
        self.assertEqual(body_of(messages), b"Hello async!")
        self.assertEqual(urls.observed["view_thread"], threading.get_ident())
        self.assertEqual(len(self.finished.threads), 1)

    async def test_concurrent_sync_views_run_on_different_threads(self) -> None:
        urls.observed["barrier"] = threading.Barrier(2, timeout=5)
        results = await asyncio.gather(
            self.request(http_scope("/meeting/")), self.request(http_scope("/meeting/"))
        )
        self.assertEqual([body_of(messages) for messages in results], [b"met", b"met"])
        self.assertEqual(len(set(urls.observed["meeting_threads"])), 2)

    @override_settings(ASGI_BRIDGE={"THREADS": 2})
    async def test_requests_share_a_bounded_pool(self) -> None:
        # Four views that meet in pairs need two threads at once, and never more than two.
        urls.observed["barrier"] = threading.Barrier(2, timeout=5)
        results = await asyncio.gather(*(self.request(http_scope("/meeting/")) for _ in range(4)))
        self.assertEqual([body_of(messages) for messages in results], [b"met"] * 4)
        self.assertEqual(len(set(urls.observed["meeting_threads"])), 2)
        self.assertEqual(len(self.finished.threads), 4)

    @override_settings(ASGI_BRIDGE={"THREADS": 1})
    async def test_a_view_that_outlives_its_client_keeps_its_thread(self) -> None:
        urls.observed.update(view_started=threading.Event(), release=threading.Event())
        application = get_asgi_application()
        left = ApplicationCommunicator(application, http_scope("/blocking/"))
        await left.send_input({"type": "http.request"})
        await wait_for_event(urls.observed["view_started"])
        await left.send_input({"type": "http.disconnect"})
        blocked_thread = urls.observed["view_thread"]
        # The only thread is still busy with the view, so the next request waits for it.
        waiting = asyncio.ensure_future(self.request(http_scope("/"), application=application))
        for _ in range(20):
            await asyncio.sleep(0)
        self.assertFalse(waiting.done())
        self.assertNotIn("view_returned", urls.observed)
        urls.observed["release"].set()
        messages = await waiting
        await left.wait(timeout=5)
        self.assertTrue(urls.observed["view_returned"])
        self.assertEqual(body_of(messages), b"Hello World!")
        self.assertEqual(urls.observed["view_thread"], blocked_thread)
        self.assertEqual(self.finished.threads, [blocked_thread, blocked_thread])
        self.assertTrue(await left.receive_nothing())

    async def test_async_view_is_cancelled_when_the_client_leaves(self) -> None:
        urls.observed["view_started"] = threading.Event()
        communicator = ApplicationCommunicator(
            get_asgi_application(), http_scope("/async/waiting/")
        )
        await communicator.send_input({"type": "http.request"})
        await wait_for_event(urls.observed["view_started"])
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=5)
        self.assertTrue(urls.observed.get("view_cancelled"))
        self.assertEqual(len(self.finished.threads), 1)
        self.assertTrue(await communicator.receive_nothing())

    async def test_signals_pair_up_when_the_client_leaves_as_the_body_ends(self) -> None:
        # The disconnect is queued with the body: the handler sees it before the view starts.
        # Django's handler sends both signals then; each fires once, on one thread.
        for path in ("/", "/async/"):
            with self.subTest(path=path):
                self.started.threads.clear()
                self.finished.threads.clear()
                communicator = ApplicationCommunicator(get_asgi_application(), http_scope(path))
                await communicator.send_input({"type": "http.request"})
                await communicator.send_input({"type": "http.disconnect"})
                await communicator.wait(timeout=5)
                self.assertEqual(len(self.started.threads), 1)
                self.assertEqual(self.finished.threads, self.started.threads)

    async def test_signals_pair_up_under_churn(self) -> None:
        # Clients that leave after a varying number of loop turns, some before the view runs,
        # some while it runs, some after the response.
        async def leave_after(turns: int, path: str) -> None:
            communicator = ApplicationCommunicator(get_asgi_application(), http_scope(path))
            await communicator.send_input({"type": "http.request"})
            for _ in range(turns):
                await asyncio.sleep(0)
            await communicator.send_input({"type": "http.disconnect"})
            await communicator.wait(timeout=5)

        await asyncio.gather(
            *(leave_after(turns, path) for turns in range(12) for path in ("/", "/async/"))
        )
        self.assertEqual(len(self.started.threads), 24)
        self.assertEqual(len(self.finished.threads), 24)

    async def test_request_finished_once_for_a_sync_stream_after_its_parts(self) -> None:
        messages = await self.request(http_scope("/stream/sync/", query_string=b"n=3"))
        self.assertEqual(body_of(messages), b"part 0\npart 1\npart 2\n")
        self.assertTrue(urls.observed["closed"])
        self.assertEqual(self.finished.threads, [urls.observed["view_thread"]])

    async def test_async_stream_of_a_sync_view_calls_sync_code_on_the_views_thread(self) -> None:
        messages = await self.request(http_scope("/stream/async/sync-code/"))
        self.assertEqual(body_of(messages), b"called")
        view_thread = urls.observed["view_thread"]
        self.assertEqual(urls.observed["sync_to_async_threads"], [view_thread])
        self.assertEqual(self.finished.threads, [view_thread])

    async def test_sync_code_called_from_an_async_view_runs_on_the_requests_thread(self) -> None:
        messages = await self.request(http_scope("/async/sync-code/"))
        self.assertEqual(body_of(messages), b"called")
        [called_thread] = urls.observed["sync_to_async_threads"]
        self.assertNotEqual(called_thread, threading.get_ident())
        self.assertEqual(self.started.threads, [called_thread])
        self.assertEqual(self.finished.threads, [called_thread])

    @override_settings(ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 100})
    async def test_signals_of_a_refused_body_run_on_one_pooled_thread(self) -> None:
        scope = http_scope("/echo/", method="POST")
        scope["headers"] = [(b"content-length", b"200")]
        application = get_asgi_application()
        with self.assertLogs("django.request", "WARNING"):
            messages = await self.request(scope, b"x" * 200, application=application)
        self.assertEqual(messages[0]["status"], 413)
        self.assertEqual(len(self.started.threads), 1)
        self.assertEqual(self.finished.threads, self.started.threads)
        self.assertNotEqual(self.started.threads[0], threading.get_ident())


class SyncChainThreadModelTests(ThreadModelTests):
    middleware = SYNC_CHAIN

    async def test_middleware_runs_with_the_view_in_one_thread_visit(self) -> None:
        self.assertIsNotNone(get_asgi_application().sync_handler)
        await self.request(http_scope("/"))
        self.assertEqual(urls.observed["middleware_threads"], [urls.observed["view_thread"]] * 2)

    async def test_middleware_around_an_async_view_runs_off_the_loop_in_two_visits(self) -> None:
        with mock.patch.object(hop, "call_on_loop", wraps=hop.call_on_loop) as call_on_loop:
            await self.request(http_scope("/async/"))
        # No thread waited for the view: the chain stopped at it and resumed after it.
        self.assertEqual(call_on_loop.call_count, 0)
        threads = urls.observed["middleware_threads"]
        self.assertEqual(len(threads), 2)
        # The second visit got the request's thread back: it was idle meanwhile.
        self.assertEqual(len(set(threads)), 1)
        self.assertNotEqual(threads[0], threading.get_ident())

    @override_settings(MIDDLEWARE=["tests.middleware.WholeCallMiddleware"])
    async def test_middleware_with_its_own_call_keeps_the_thread_around_an_async_view(
        self,
    ) -> None:
        with mock.patch.object(hop, "call_on_loop", wraps=hop.call_on_loop) as call_on_loop:
            messages = await self.request(http_scope("/async/"))
        self.assertEqual(messages[0]["status"], 200)
        # The middleware's __call__ cannot be split: its thread awaits the view on the loop.
        self.assertEqual(call_on_loop.call_count, 1)
        threads = urls.observed["middleware_threads"]
        self.assertEqual(len(threads), 1)
        self.assertNotEqual(threads[0], threading.get_ident())

    @override_settings(ASGI_BRIDGE={"THREADS": 1})
    async def test_thread_is_back_in_the_pool_when_its_work_is_over(self) -> None:
        # Once the response is closed on the request's thread, the thread goes back without
        # waiting for the handler to release it after the last message is sent.
        cases = [
            (http_scope("/"), "http.response.start"),
            (http_scope("/stream/sync/", query_string=b"n=3"), "http.response.body"),
        ]
        for scope, last_type in cases:
            with self.subTest(path=scope["path"]):
                self.finished.threads.clear()
                send = IdleThreadsAtLastMessage(get_asgi_application().request_threads(), last_type)
                receive = ScriptedReceive({"type": "http.request"})
                await get_asgi_application()(scope, receive, send)
                self.assertEqual(send.idle, [1])
                self.assertEqual(self.finished.threads, [urls.observed["view_thread"]])


class IdleThreadsAtLastMessage:
    """A ``send`` noting how many pooled threads are idle (after they had a moment to get
    there) when the last message of ``last_type`` is sent."""

    def __init__(self, pool: RequestThreadPool, last_type: str) -> None:
        self.pool = pool
        self.last_type = last_type
        self.idle: list[int] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == self.last_type and not message.get("more_body"):
            for _ in range(500):
                if self.pool.idle_count:
                    break
                await asyncio.sleep(0.01)
            self.idle.append(self.pool.idle_count)


class AsyncChainThreadModelTests(ThreadModelTests):
    middleware = ASYNC_CHAIN

    async def test_async_middleware_runs_on_the_loop(self) -> None:
        self.assertIsNone(get_asgi_application().sync_handler)
        await self.request(http_scope("/async/"))
        self.assertEqual(urls.observed["middleware_threads"], [threading.get_ident()])


@override_settings(ASGI_BRIDGE={"THREADS": 2}, MIDDLEWARE=["tests.middleware.RecordingMiddleware"])
class TransactionAcrossAwaitsTests(ServedLikeByAServer, TransactionTestCase):
    """An async view's sync calls may open a transaction in one call and end it in a later
    one: its thread (and so its database connection) stays with the request meanwhile, and
    no other request's code runs there, as with Django's thread per request."""

    databases = {"default"}

    async def test_the_thread_in_a_transaction_stays_with_its_request(self) -> None:
        urls.observed.clear()
        urls.observed.update(
            transaction_entered=asyncio.Event(), transaction_release=asyncio.Event()
        )
        application = get_asgi_application()
        communicator = ApplicationCommunicator(application, http_scope("/async/transaction/"))
        await communicator.send_input({"type": "http.request"})
        await asyncio.wait_for(urls.observed["transaction_entered"].wait(), 5)
        in_transaction = urls.observed["transaction_entered_on"]
        # Meanwhile other requests run, on the other thread only.
        for _ in range(3):
            other = ApplicationCommunicator(application, http_scope("/"))
            await other.send_input({"type": "http.request"})
            self.assertEqual(body_of(await collect_response(other)), b"Hello World!")
            await other.wait(timeout=5)
            self.assertNotEqual(urls.observed["view_thread"], in_transaction)
        urls.observed["transaction_release"].set()
        self.assertEqual(body_of(await collect_response(communicator)), b"committed")
        await communicator.wait(timeout=5)
        self.assertEqual(urls.observed["transaction_left_on"], in_transaction)
