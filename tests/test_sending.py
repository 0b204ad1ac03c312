"""sending: headers, the client-gone mapping of send errors, and when pathsend may be used."""

from __future__ import annotations

import asyncio
import gzip
import os
import tempfile

from django.core.exceptions import RequestAborted
from django.http import FileResponse, HttpResponse
from django.test import SimpleTestCase

from asgi_bridge.exceptions import ClientDisconnected
from asgi_bridge.sending import ResponseChannel, pathsend_path, response_headers

from .asgi import RecordingSend, http_scope


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
        for error in (OSError("gone"), RuntimeError("closed"), ConnectionResetError()):
            with self.subTest(error=error):
                channel = ResponseChannel(RecordingSend(fail_on=lambda m, e=error: e))
                with self.assertRaises(ClientDisconnected) as caught:
                    asyncio.run(channel({"type": "http.response.body"}))
                self.assertIsInstance(caught.exception, RequestAborted)

    def test_other_errors_propagate(self) -> None:
        channel = ResponseChannel(RecordingSend(fail_on=lambda m: ValueError("bug")))
        with self.assertRaises(ValueError):
            asyncio.run(channel({"type": "http.response.body"}))


class PathsendPathTests(SimpleTestCase):
    def setUp(self) -> None:
        handle, self.path = tempfile.mkstemp()
        os.write(handle, b"data")
        os.close(handle)
        self.addCleanup(os.unlink, self.path)

    def file_response(self) -> FileResponse:
        response = FileResponse(open(self.path, "rb"))  # noqa: SIM115
        self.addCleanup(response.close)
        return response

    def test_plain_file(self) -> None:
        self.assertEqual(pathsend_path(self.file_response()), self.path)

    def test_not_a_file_response(self) -> None:
        self.assertIsNone(pathsend_path(HttpResponse("x")))

    def test_file_like_without_path(self) -> None:
        response = FileResponse(iter([b"a"]))
        self.assertIsNone(pathsend_path(response))

    def test_content_encoding_set(self) -> None:
        response = self.file_response()
        response["Content-Encoding"] = "gzip"
        self.assertIsNone(pathsend_path(response))

    def test_content_replaced_by_middleware(self) -> None:
        response = self.file_response()
        response.streaming_content = (gzip.compress(p) for p in response.streaming_content)
        self.assertIsNone(pathsend_path(response))

    def test_file_already_advanced(self) -> None:
        handle = open(self.path, "rb")  # noqa: SIM115
        handle.read(2)
        response = FileResponse(handle)
        self.addCleanup(response.close)
        self.assertIsNone(pathsend_path(response))

    def test_relative_name(self) -> None:
        cwd = os.getcwd()
        os.chdir(os.path.dirname(self.path))
        self.addCleanup(os.chdir, cwd)
        response = FileResponse(open(os.path.basename(self.path), "rb"))  # noqa: SIM115
        self.addCleanup(response.close)
        self.assertIsNone(pathsend_path(response))
