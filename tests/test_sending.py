"""sending: headers, the client-gone mapping of send errors, and when pathsend may be used."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO, Any

from asgiref.testing import ApplicationCommunicator
from django.core.exceptions import RequestAborted
from django.core.files.base import ContentFile
from django.core.signals import request_started
from django.db import close_old_connections
from django.http import FileResponse, HttpResponse
from django.test import SimpleTestCase

from asgi_bridge import get_asgi_application
from asgi_bridge.exceptions import ClientDisconnected
from asgi_bridge.sending import (
    PATHSEND,
    PathsendFile,
    ResponseChannel,
    pathsend_file,
    response_headers,
)
from asgi_bridge.types import Message

from . import urls
from .asgi import RecordingSend, ServedLikeByAServer, collect_response, http_scope


class ResponseHeadersTests(SimpleTestCase):
    def test_headers_and_cookies(self) -> None:
        response = HttpResponse("x", content_type="text/plain")
        response["X-Latin"] = "café"
        response.set_cookie("a", "1")
        headers = response_headers(response)
        self.assertIn((b"Content-Type", b"text/plain"), headers)
        self.assertIn((b"X-Latin", "café".encode("latin1")), headers)
        self.assertIn((b"Set-Cookie", b"a=1; Path=/"), headers)

    def test_same_pairs_in_the_same_order_as_items(self) -> None:
        response = HttpResponse("x")
        response["X-B"] = "2"
        response["x-a"] = "1"
        response["X-B"] = "3"  # replaced in place, keeping its first position
        expected = [(name.encode(), value.encode()) for name, value in response.items()]
        self.assertEqual(response_headers(response), expected)

    def test_headers_without_their_usual_store(self) -> None:
        # A headers mapping other than Django's ResponseHeaders is read through items().
        response = HttpResponse("x")
        response.headers = {"X-Custom": "yes"}  # type: ignore[assignment]
        self.assertEqual(response_headers(response), [(b"X-Custom", b"yes")])


class ResponseChannelTests(SimpleTestCase):
    def test_scope_facts(self) -> None:
        channel = ResponseChannel(
            RecordingSend(), http_scope(method="HEAD", extensions={"http.response.pathsend": {}})
        )
        self.assertTrue(channel.head_only)
        self.assertTrue(channel.pathsend)
        plain = ResponseChannel(RecordingSend())
        self.assertFalse(plain.head_only or plain.pathsend)

    def test_send_errors_become_client_disconnected(self) -> None:
        for error in (
            OSError("gone"),
            ConnectionResetError(),
            # granian's messages, as its releases have worded them.
            RuntimeError("ASGI transport closed"),
            RuntimeError("ASGI flow error: Transport closed"),
            RuntimeError("ASGI flow error: Transport not initialized or closed"),
        ):
            with self.subTest(error=error):
                channel = ResponseChannel(RecordingSend(fail_on=lambda m, e=error: e))
                with self.assertRaises(ClientDisconnected) as caught:
                    asyncio.run(channel({"type": "http.response.body"}))
                self.assertIsInstance(caught.exception, RequestAborted)

    def test_other_errors_propagate(self) -> None:
        for error in (
            ValueError("bug"),
            # A RuntimeError that is no closed transport is a bug, not a client that left.
            RuntimeError("dictionary changed size during iteration"),
            RuntimeError("closed"),
        ):
            with self.subTest(error=error):
                channel = ResponseChannel(RecordingSend(fail_on=lambda m, e=error: e))
                with self.assertRaises(type(error)) as caught:
                    asyncio.run(channel({"type": "http.response.body"}))
                self.assertIs(caught.exception, error)


class PathsendFileTests(SimpleTestCase):
    def setUp(self) -> None:
        handle, self.path = tempfile.mkstemp()
        os.write(handle, b"data")
        os.close(handle)
        self.addCleanup(os.unlink, self.path)

    def file_response(self, filelike: Any = None) -> FileResponse:
        response = FileResponse(open(self.path, "rb") if filelike is None else filelike)  # noqa: SIM115
        self.addCleanup(response.close)
        return response

    def test_plain_file(self) -> None:
        self.assertEqual(pathsend_file(self.file_response()), PathsendFile(self.path, 4))

    def test_not_a_file_response(self) -> None:
        self.assertIsNone(pathsend_file(HttpResponse("x")))

    def test_file_like_without_path(self) -> None:
        response = FileResponse(iter([b"a"]))
        self.assertIsNone(pathsend_file(response))

    def test_content_encoding_set(self) -> None:
        response = self.file_response()
        response["Content-Encoding"] = "gzip"
        self.assertIsNone(pathsend_file(response))

    def test_content_replaced_by_middleware(self) -> None:
        response = self.file_response()
        response.streaming_content = (gzip.compress(p) for p in response.streaming_content)
        self.assertIsNone(pathsend_file(response))

    def test_file_already_advanced(self) -> None:
        handle = open(self.path, "rb")  # noqa: SIM115
        handle.read(2)
        self.assertIsNone(pathsend_file(self.file_response(handle)))

    def test_relative_name(self) -> None:
        cwd = os.getcwd()
        os.chdir(os.path.dirname(self.path))
        self.addCleanup(os.chdir, cwd)
        response = self.file_response(open(os.path.basename(self.path), "rb"))  # noqa: SIM115
        self.assertIsNone(pathsend_file(response))

    def test_text_mode_file(self) -> None:
        # Not driven through the handler: Django's FileResponse never ends a text-mode file
        # (its reader stops at b"", a text file's end is ""), so neither does the stream.
        self.assertIsNone(pathsend_file(self.file_response(open(self.path))))  # noqa: SIM115

    def test_file_subclass(self) -> None:
        class UpperCaseFile(io.FileIO):
            def read(self, size: int | None = -1) -> bytes:
                return super().read(size).upper()

        self.assertIsNone(pathsend_file(self.file_response(UpperCaseFile(self.path))))

    def test_file_size_changed_since_the_response_was_built(self) -> None:
        response = self.file_response()
        with open(self.path, "ab") as file:
            file.write(b" and more")
        self.assertIsNone(pathsend_file(response))

    def test_empty_file(self) -> None:
        with open(self.path, "wb"):
            pass
        self.assertIsNone(pathsend_file(self.file_response()))

    def test_closed_file(self) -> None:
        handle = open(self.path, "rb")  # noqa: SIM115
        response = self.file_response(handle)
        handle.close()
        self.assertIsNone(pathsend_file(response))


def content_length(start: Message) -> int:
    values = [v for n, v in start["headers"] if n.lower() == b"content-length"]
    if len(values) != 1:
        raise AssertionError(f"expected one Content-Length, got {values}")
    return int(values[0])


class PathsendThroughHandlerTests(ServedLikeByAServer, SimpleTestCase):
    """Whole requests on a server that advertises pathsend: the client must get exactly the
    bytes stock Django would send, read from the file object the view handed over."""

    def setUp(self) -> None:
        urls.observed.clear()
        request_started.disconnect(close_old_connections)
        self.addCleanup(request_started.connect, close_old_connections)
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = directory.name

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as file:
            file.write(data)
        return path

    def respond_with(self, filelike: Any) -> FileResponse:
        response = FileResponse(filelike)
        self.addCleanup(response.close)
        return response

    async def serve(self, response: FileResponse) -> list[Message]:
        urls.observed["prepared_response"] = response
        scope = http_scope("/file/prepared/", extensions={PATHSEND: {}})
        communicator = ApplicationCommunicator(get_asgi_application(), scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        messages = await collect_response(communicator)
        await communicator.wait(timeout=5)
        return messages

    async def assert_streams_djangos_bytes(self, served: FileResponse, twin: FileResponse) -> None:
        """``twin`` is an identical response, read the way Django's own handler reads it."""
        expected = b"".join(twin)
        start, *bodies = await self.serve(served)
        self.assertEqual(start["type"], "http.response.start")
        self.assertEqual([m["type"] for m in bodies], ["http.response.body"] * len(bodies))
        self.assertEqual([m["more_body"] for m in bodies], [True] * (len(bodies) - 1) + [False])
        self.assertEqual(b"".join(m["body"] for m in bodies), expected)
        self.assertEqual(content_length(start), len(expected))

    async def assert_sent_by_path(self, served: FileResponse, path: str, expected: bytes) -> None:
        start, *rest = await self.serve(served)
        self.assertEqual(start["type"], "http.response.start")
        self.assertEqual(rest, [{"type": PATHSEND, "path": path}])
        # What the server will send: the file at that path, whole.
        with open(path, "rb") as file:
            self.assertEqual(file.read(), expected)
        self.assertEqual(content_length(start), len(expected))

    async def test_content_file_named_after_another_file(self) -> None:
        secret = self.write("secret.txt", b"bytes on disk the view never meant to send\n")

        def respond() -> FileResponse:
            return self.respond_with(ContentFile(b"the response's own bytes\n", name=secret))

        await self.assert_streams_djangos_bytes(respond(), respond())

    async def test_tarfile_member(self) -> None:
        archive = os.path.join(self.directory, "archive.tar")
        with tarfile.open(archive, "w") as tar:
            member, data = tarfile.TarInfo("member.txt"), b"one member of the archive\n"
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))

        def respond() -> FileResponse:
            tar = tarfile.open(archive)  # noqa: SIM115
            self.addCleanup(tar.close)
            return self.respond_with(tar.extractfile("member.txt"))

        await self.assert_streams_djangos_bytes(respond(), respond())

    async def test_gzip_file(self) -> None:
        compressed = self.write("text.txt.gz", gzip.compress(b"uncompressed line\n" * 500))

        def respond() -> FileResponse:
            return self.respond_with(gzip.open(compressed))

        await self.assert_streams_djangos_bytes(respond(), respond())

    async def test_file_replaced_on_disk_after_opening(self) -> None:
        path = self.write("report.txt", b"the version the view opened\n")
        served, twin = (self.respond_with(open(path, "rb")) for _ in range(2))  # noqa: SIM115
        os.replace(self.write("new.txt", b"a newer version, put in its place\n"), path)
        await self.assert_streams_djangos_bytes(served, twin)

    async def test_symlink_retargeted_after_opening(self) -> None:
        opened = self.write("opened.txt", b"opened through the link\n")
        other = self.write("other.txt", b"the link's later target\n")
        link = os.path.join(self.directory, "link.txt")
        os.symlink(opened, link)
        served, twin = (self.respond_with(open(link, "rb")) for _ in range(2))  # noqa: SIM115
        os.symlink(other, link + ".new")
        os.replace(link + ".new", link)
        await self.assert_streams_djangos_bytes(served, twin)

    async def test_symlink_still_pointing_at_the_opened_file(self) -> None:
        # The server opens the link and reaches the very inode that was checked: as safe as
        # sending the target's own path, so pathsend is kept.
        data = b"opened through the link\n"
        link = os.path.join(self.directory, "link.txt")
        os.symlink(self.write("target.txt", data), link)
        await self.assert_sent_by_path(self.respond_with(open(link, "rb")), link, data)  # noqa: SIM115

    async def test_file_advanced_before_sending(self) -> None:
        path = self.write("data.bin", b"0123456789" * 100)
        advance: dict[str, Callable[[IO[bytes]], object]] = {
            "read": lambda file: file.read(7),
            "seek": lambda file: file.seek(13),
        }
        for how, move in advance.items():
            with self.subTest(how=how):
                files = [open(path, "rb") for _ in range(2)]  # noqa: SIM115
                for file in files:
                    move(file)
                served, twin = (self.respond_with(file) for file in files)
                await self.assert_streams_djangos_bytes(served, twin)

    async def test_real_file_at_its_start_is_sent_by_path(self) -> None:
        data = b"a plain file on disk\n" * 100
        path = self.write("plain.txt", data)
        openers: dict[str, Callable[[], IO[bytes]]] = {
            "buffered": lambda: open(path, "rb"),  # noqa: SIM115
            "unbuffered": lambda: open(path, "rb", buffering=0),  # noqa: SIM115
            "read-write": lambda: open(path, "r+b"),  # noqa: SIM115
        }
        for kind, opener in openers.items():
            with self.subTest(kind=kind):
                await self.assert_sent_by_path(self.respond_with(opener()), path, data)

    async def test_content_length_comes_from_the_open_file(self) -> None:
        data = b"a plain file on disk\n" * 100
        path = self.write("plain.txt", data)
        response = self.respond_with(open(path, "rb"))  # noqa: SIM115
        del response["Content-Length"]
        await self.assert_sent_by_path(response, path, data)

    async def test_bytesio_named_after_a_file_is_streamed(self) -> None:
        other = self.write("other.txt", b"a different file the name points at\n")

        def respond() -> FileResponse:
            buffer = io.BytesIO(b"bytes in memory\n")
            buffer.name = other
            return self.respond_with(buffer)

        await self.assert_streams_djangos_bytes(respond(), respond())
