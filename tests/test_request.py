"""ASGIRequest: META from the scope, with upstream's newest fixes on every supported Django."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest as DjangoASGIRequest
from django.test import SimpleTestCase, override_settings

from asgi_bridge import ASGIRequest
from asgi_bridge.request import split_script_name

from .asgi import http_scope


def make_request(body: bytes = b"", **scope: Any) -> ASGIRequest:
    return ASGIRequest(http_scope(**scope), BytesIO(body))


class RequestBasicsTests(SimpleTestCase):
    def test_is_a_django_asgi_request(self) -> None:
        self.assertIsInstance(make_request(), DjangoASGIRequest)

    def test_meta_from_scope(self) -> None:
        request = make_request(path="/a/b/", method="post", query_string=b"x=1&y=2")
        self.assertEqual(request.method, "POST")
        self.assertEqual(request.META["QUERY_STRING"], "x=1&y=2")
        self.assertEqual(request.GET["y"], "2")
        self.assertEqual(request.META["REMOTE_ADDR"], "127.0.0.1")
        self.assertEqual(request.META["REMOTE_PORT"], 50000)
        self.assertEqual(request.META["SERVER_NAME"], "testserver")
        self.assertEqual(request.META["SERVER_PORT"], "80")
        self.assertEqual(request.path_info, "/a/b/")

    def test_str_query_string(self) -> None:
        self.assertEqual(make_request(query_string="a=%C3%A9").GET["a"], "é")

    def test_invalid_utf8_query_string_raises(self) -> None:
        with self.assertRaises(UnicodeDecodeError):
            make_request(query_string=b"\xff")

    def test_scheme_from_scope(self) -> None:
        self.assertTrue(make_request(scheme="https").is_secure())


class HeaderTests(SimpleTestCase):
    def test_repeated_headers_joined_with_comma(self) -> None:
        request = make_request(headers=[(b"accept", b"a"), (b"accept", b"b")])
        self.assertEqual(request.META["HTTP_ACCEPT"], "a,b")

    def test_many_repeated_headers_single_meta_assignment(self) -> None:
        request = make_request(headers=[(b"x-many", b"v")] * 100_000)
        self.assertEqual(len(request.META["HTTP_X_MANY"].split(",")), 100_000)

    def test_underscored_header_names_dropped(self) -> None:
        request = make_request(headers=[(b"x_auth_user", b"admin"), (b"x-auth-user", b"me")])
        self.assertEqual(request.META["HTTP_X_AUTH_USER"], "me")
        self.assertEqual(request.headers["X-Auth-User"], "me")

    def test_http2_cookie_headers_joined_with_semicolon(self) -> None:
        request = make_request(headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        self.assertEqual(request.META["HTTP_COOKIE"], "a=1; b=2")
        self.assertEqual(request.COOKIES, {"a": "1", "b": "2"})

    def test_http2_cookie_headers_with_trailing_semicolons(self) -> None:
        request = make_request(headers=[(b"cookie", b"a=1;"), (b"cookie", b"b=2; ")])
        self.assertEqual(request.META["HTTP_COOKIE"], "a=1; b=2")

    def test_content_type_and_length_unprefixed(self) -> None:
        request = make_request(
            headers=[(b"content-type", b"text/plain; charset=latin-1"), (b"content-length", b"3")]
        )
        self.assertEqual(request.META["CONTENT_TYPE"], "text/plain; charset=latin-1")
        self.assertEqual(request.META["CONTENT_LENGTH"], "3")
        self.assertEqual(request.encoding, "latin-1")

    def test_latin1_header_values(self) -> None:
        self.assertEqual(
            make_request(headers=[(b"x-name", "café".encode("latin1"))]).headers["X-Name"], "café"
        )


class MalformedContentLengthTests(SimpleTestCase):
    def test_malformed_values_read_as_zero(self) -> None:
        for value in (b"10,20", b"abc", b""):
            with self.subTest(value=value):
                request = make_request(
                    b"hello", method="POST", headers=[(b"content-length", value)]
                )
                self.assertEqual(request.body, b"hello")
                # META keeps what the client sent.
                self.assertEqual(request.META["CONTENT_LENGTH"], value.decode())

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=3)
    def test_real_size_still_checked(self) -> None:
        request = make_request(b"hello", method="POST", headers=[(b"content-length", b"abc")])
        with self.assertRaises(RequestDataTooBig):
            request.body

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=3)
    def test_valid_length_over_limit_rejected(self) -> None:
        request = make_request(b"hello", method="POST", headers=[(b"content-length", b"5")])
        with self.assertRaises(RequestDataTooBig):
            request.body

    def test_malformed_length_form_post(self) -> None:
        request = make_request(
            b"a=1",
            method="POST",
            headers=[
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", b"3,3"),
            ],
        )
        self.assertEqual(request.POST["a"], "1")


class ScriptNameTests(SimpleTestCase):
    def test_split_on_segment_boundary(self) -> None:
        cases = [
            ("/root/x/", "/root", ("/root", "/x/")),
            ("/root/x/", "/root/", ("/root/", "/x/")),
            ("/rootless/x/", "/root", ("/root", "/rootless/x/")),
            ("/root", "/root", ("/root", "")),
            ("/x/", "", ("", "/x/")),
            ("/x/", "/", ("/", "/x/")),
        ]
        for path, prefix, expected in cases:
            with self.subTest(path=path, prefix=prefix):
                self.assertEqual(split_script_name(path, prefix), expected)

    def test_root_path(self) -> None:
        request = make_request(path="/root/somepath/", root_path="/root")
        self.assertEqual(
            (request.path, request.script_name, request.path_info),
            ("/root/somepath/", "/root", "/somepath/"),
        )
        self.assertEqual(request.META["SCRIPT_NAME"], "/root")

    def test_root_path_not_on_boundary(self) -> None:
        request = make_request(path="/rootpath/x/", root_path="/root")
        self.assertEqual(request.path_info, "/rootpath/x/")

    @override_settings(FORCE_SCRIPT_NAME="/FORCED")
    def test_force_script_name(self) -> None:
        request = make_request(path="/FORCED/somepath/", root_path="/ignored")
        self.assertEqual((request.script_name, request.path_info), ("/FORCED", "/somepath/"))


class AddressTests(SimpleTestCase):
    def test_unix_socket_server_gets_scheme_default_port(self) -> None:
        self.assertEqual(make_request(server=("/run/app.sock", None)).META["SERVER_PORT"], "80")
        self.assertEqual(
            make_request(server=("/run/app.sock", None), scheme="https").META["SERVER_PORT"], "443"
        )

    def test_missing_server(self) -> None:
        request = make_request(server=None)
        self.assertEqual(
            (request.META["SERVER_NAME"], request.META["SERVER_PORT"]), ("unknown", "0")
        )

    def test_missing_client(self) -> None:
        self.assertNotIn("REMOTE_ADDR", make_request(client=None).META)

    def test_ipv6_client_and_string_port(self) -> None:
        request = make_request(client=("::1", 4242), server=("::1", "8000"))
        self.assertEqual(request.META["REMOTE_ADDR"], "::1")
        self.assertEqual(request.META["SERVER_PORT"], "8000")
