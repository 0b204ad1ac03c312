"""Regression tests for Django's 2025-26 ASGI security fixes, driven through asgi_bridge's handler.

Each class sends the attack input of one advisory as raw ASGI messages and asserts the fixed
behaviour. What each advisory says comes from Django's release notes and the PyPA/OSV advisory
records (docs.djangoproject.com/en/stable/releases/5.2.13/ and 5.2.14/, PYSEC-2026-49 and
PYSEC-2026-54, the weblog posts of 2026-02-03, 2026-04-07 and 2026-05-05); how Django fixed the
body and upload limits was read in the installed Django's ``django/http/request.py`` and
``django/core/files/uploadhandler.py`` (5.2.19). Inferred, not from an advisory: the exact join
rules asserted for repeated headers (RFC 9110 5.3, RFC 9113 8.2.3), and asgi_bridge's own
``MAX_REQUEST_BODY_SIZE`` cases.

``Django>=5.2`` admits releases without these fixes (5.2.0-5.2.12 for the body, 5.2.0-5.2.13
for uploads), so asgi_bridge must provide them itself: the body and upload tests run twice, with
the installed Django and with Django's pre-fix behaviour patched back in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from io import BytesIO
from typing import Any
from unittest import mock

from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import SimpleTestCase, override_settings
from django.urls import path

from asgi_bridge import get_asgi_application
from asgi_bridge.types import Message

from .asgi import body_of, collect_response, http_scope

LIMIT = 1000


def header_view(request: HttpRequest) -> JsonResponse:
    meta = {key: value for key, value in request.META.items() if key.startswith("HTTP_")}
    return JsonResponse({"meta": meta, "headers": dict(request.headers)})


def duplicate_count_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.META["HTTP_X_DUPE"].split(","))))


def body_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.body)))


def upload_view(request: HttpRequest) -> JsonResponse:
    upload = request.FILES["file"]
    return JsonResponse(
        {"size": upload.size, "in_memory": isinstance(upload, InMemoryUploadedFile)}
    )


urlpatterns = [
    path("headers/", header_view),
    path("headers/count/", duplicate_count_view),
    path("body/", body_view),
    path("upload/", upload_view),
]


async def exchange(
    path_: str,
    headers: list[tuple[bytes, bytes]],
    parts: tuple[bytes, ...] | list[bytes] = (),
    method: str = "GET",
) -> tuple[int, bytes]:
    """Send one request, its body in ``parts`` (a chunked body), and return status and body."""
    scope = http_scope(path_, method=method, headers=[(b"host", b"testserver"), *headers])
    communicator = ApplicationCommunicator(get_asgi_application(), scope)
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": True} for part in parts
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    for message in messages:
        await communicator.send_input(message)
    response = await collect_response(communicator)
    await communicator.wait(timeout=5)
    return response[0]["status"], body_of(response)


class CountingSeparator(str):
    """A separator that records how many values each join() of it is given."""

    calls: list[int]

    def __new__(cls, value: str) -> CountingSeparator:
        separator = super().__new__(cls, value)
        separator.calls = []
        return separator

    def join(self, values: Iterable[str]) -> str:
        values = list(values)
        self.calls.append(len(values))
        return str.join(self, values)


@override_settings(ROOT_URLCONF=__name__)
class RepeatedHeaderTests(SimpleTestCase):
    """CVE-2025-14550 (Django 5.2.11, 6.0.2): many duplicate headers made ASGIRequest concatenate
    strings once per repeat, super-linear in their count. Fixed: each name's values are joined
    once."""

    async def test_many_duplicates_are_joined_once(self) -> None:
        """256,000 repeats of a header: all of its values go to one join, which is linear in
        their total length (the fixed Django's way), never to a concatenation per repeat.
        Counted, not timed: unit tests assert no wall-clock times."""
        separator = CountingSeparator(",")
        with mock.patch("asgi_bridge.request._HEADER_SEPARATOR", separator):
            status, body = await exchange("/headers/count/", [(b"x-dupe", b"a")] * 256_000)
        self.assertEqual((status, body), (200, b"256000"))
        self.assertEqual(separator.calls.count(256_000), 1, separator.calls)
        self.assertTrue(all(count <= 256_000 for count in separator.calls))

    async def test_repeats_joined_with_comma_and_cookies_with_semicolon(self) -> None:
        headers = [
            (b"accept", b"text/html"),
            (b"accept", b"application/json"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ]
        status, body = await exchange("/headers/", headers)
        self.assertEqual(status, 200)
        meta = json.loads(body)["meta"]
        self.assertEqual(meta["HTTP_ACCEPT"], "text/html,application/json")
        self.assertEqual(meta["HTTP_COOKIE"], "a=1; b=2")


@override_settings(ROOT_URLCONF=__name__)
class UnderscoreHeaderTests(SimpleTestCase):
    """CVE-2026-3902 (Django 5.2.13, 6.0.4): "X-Auth_User" and "X-Auth-User" both became
    HTTP_X_AUTH_USER, so a client could spoof a header a proxy sets. Fixed: header names with
    underscores are ignored, as Daphne does."""

    async def test_underscored_name_cannot_spoof_a_hyphenated_header(self) -> None:
        for order in (1, -1):
            headers = [(b"x-auth-user", b"from-proxy"), (b"x_auth_user", b"spoofed")][::order]
            with self.subTest(underscored_first=order == -1):
                status, body = await exchange("/headers/", headers)
                self.assertEqual(status, 200)
                seen = json.loads(body)
                self.assertEqual(seen["meta"]["HTTP_X_AUTH_USER"], "from-proxy")
                self.assertEqual(seen["headers"]["X-Auth-User"], "from-proxy")

    async def test_underscored_name_alone_is_dropped(self) -> None:
        status, body = await exchange("/headers/", [(b"x_forwarded_for", b"10.0.0.1")])
        self.assertEqual(status, 200)
        seen = json.loads(body)
        self.assertNotIn("HTTP_X_FORWARDED_FOR", seen["meta"])
        self.assertNotIn("X-Forwarded-For", seen["headers"])

    async def test_underscored_content_length_does_not_become_content_length(self) -> None:
        # Inferred: the two META keys without an HTTP_ prefix must not be reachable either.
        status, _ = await exchange(
            "/body/", [(b"content_length", b"1")], [b"x" * 10], method="POST"
        )
        self.assertEqual(status, 200)


def body_before_the_fix(self: HttpRequest) -> bytes:
    """HttpRequest.body as Django had it before CVE-2026-33034: only Content-Length checked."""
    if not hasattr(self, "_body"):
        declared = int(self.META.get("CONTENT_LENGTH") or 0)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and declared > limit:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        self._body = self.read()
        self._stream = BytesIO(self._body)
    return self._body


def memory_handler_before_the_fix(
    self: MemoryFileUploadHandler, input_data: Any, META: Any, content_length: int, *args: Any
) -> None:
    """MemoryFileUploadHandler as before CVE-2026-5766: it trusted the declared length."""
    self.activated = content_length <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE


class BodyLimitCases:
    """Attack inputs of CVE-2026-33034 and CVE-2026-5766; subclasses choose Django's behaviour."""

    # A SimpleTestCase's assertions, for mypy.
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any

    async def test_chunked_body_without_content_length_is_refused(self) -> None:
        # CVE-2026-33034: no Content-Length, the body in many parts, past the limit.
        status, _ = await exchange("/body/", [], [b"x" * 100] * 20, method="POST")
        self.assertEqual(status, 400)

    async def test_understated_content_length_is_refused(self) -> None:
        # CVE-2026-33034: a Content-Length under the limit, a body over it.
        status, _ = await exchange(
            "/body/", [(b"content-length", b"10")], [b"x" * (LIMIT + 1)], method="POST"
        )
        self.assertEqual(status, 400)

    async def test_body_at_the_limit_is_read(self) -> None:
        status, body = await exchange("/body/", [], [b"x" * 500, b"x" * 500], method="POST")
        self.assertEqual((status, body), (200, str(LIMIT).encode()))

    async def test_upload_with_understated_content_length_is_not_kept_in_memory(self) -> None:
        # CVE-2026-5766: a file over FILE_UPLOAD_MAX_MEMORY_SIZE, a Content-Length under it.
        boundary = b"boundary"
        data = b"y" * (20 * LIMIT)
        body = (
            b"--" + boundary + b"\r\n"
            b'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
            b"--" + boundary + b"--\r\n"
        )
        headers = [
            (b"content-type", b"multipart/form-data; boundary=" + boundary),
            (b"content-length", b"200"),
        ]
        status, answer = await exchange("/upload/", headers, [body], method="POST")
        self.assertEqual(status, 200)
        seen = json.loads(answer)
        self.assertEqual(seen["size"], len(data))
        self.assertFalse(seen["in_memory"])

    async def test_small_upload_stays_in_memory(self) -> None:
        boundary = b"boundary"
        body = (
            b"--" + boundary + b"\r\n"
            b'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
            b"small\r\n--" + boundary + b"--\r\n"
        )
        headers = [
            (b"content-type", b"multipart/form-data; boundary=" + boundary),
            (b"content-length", str(len(body)).encode()),
        ]
        status, answer = await exchange("/upload/", headers, [body], method="POST")
        self.assertEqual(status, 200)
        self.assertTrue(json.loads(answer)["in_memory"])

    @override_settings(ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 4 * LIMIT})
    async def test_max_request_body_size_not_bypassed_by_chunks_or_a_lying_length(self) -> None:
        # Inferred: asgi_bridge's own cap counts the bytes received, not the bytes declared.
        for headers in ([], [(b"content-length", b"10")]):
            with self.subTest(headers=headers):
                status, _ = await exchange("/body/", headers, [b"x" * LIMIT] * 5, method="POST")
                self.assertEqual(status, 413)


@override_settings(
    ROOT_URLCONF=__name__, DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT, FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT
)
class BodyLimitTests(BodyLimitCases, SimpleTestCase):
    """CVE-2026-33034 (5.2.13, 6.0.4) and CVE-2026-5766 (5.2.14, 6.0.5), on the installed Django."""


@override_settings(
    ROOT_URLCONF=__name__, DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT, FILE_UPLOAD_MAX_MEMORY_SIZE=LIMIT
)
class BodyLimitBeforeDjangoFixTests(BodyLimitCases, SimpleTestCase):
    """The same attacks with Django's pre-fix body and upload handler: asgi_bridge must hold."""

    def setUp(self) -> None:
        for patcher in (
            mock.patch.object(HttpRequest, "body", property(body_before_the_fix)),
            mock.patch.object(
                MemoryFileUploadHandler, "handle_raw_input", memory_handler_before_the_fix
            ),
        ):
            patcher.start()
            self.addCleanup(patcher.stop)
