"""asgi_bridge.static through the handler: files of STATIC_ROOT and MEDIA_ROOT with validators,
conditional requests, ranges, precompressed variants, HEAD, and refusals of hostile paths.

Each test gets a fresh STATIC_ROOT in a temporary directory and the handler built after the
settings change; requests go through ASGIClient as a server would send them.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
from django.test import SimpleTestCase, override_settings
from django.utils.http import http_date

from asgi_bridge.handler import ASGIHandler
from asgi_bridge.static.files import SMALL_FILE
from asgi_bridge.testing import ASGIClient, ClientResponse

CSS = b"body { color: #123456; }\n" * 40  # 1,000 bytes
# A file larger than SMALL_FILE, so that it is read in pieces rather than kept in memory.
BIG = bytes(range(256)) * (3 * SMALL_FILE // 256 + 7)


class StaticRootTestCase(SimpleTestCase):
    """A STATIC_ROOT of this test's own, served with ASGI_BRIDGE["STATIC_FILES"]."""

    bridge_settings: ClassVar[dict[str, Any]] = {"STATIC_FILES": True}

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="asgi_bridge-static-"))
        self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        self.root = self.directory / "static"
        self.root.mkdir()
        self.write("css/site.css", CSS)
        self.write("big.bin", BIG)
        settings = override_settings(
            STATIC_ROOT=str(self.root),
            STATIC_URL="/static/",
            ASGI_BRIDGE=self.bridge_settings,
        )
        settings.enable()
        self.addCleanup(settings.disable)
        self.client = ASGIClient(ASGIHandler())

    def write(self, name: str, content: bytes, mtime: int | None = None) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    async def get(self, path: str, **headers: str) -> ClientResponse:
        """GET ``path`` with ``headers`` given as keywords: ``if_none_match`` is If-None-Match."""
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        return await self.client.get(path, headers=named)


class ServingTests(StaticRootTestCase):
    async def test_a_file_with_its_validators_and_caching_headers(self) -> None:
        path = self.root / "css/site.css"
        os.utime(path, (1_700_000_000, 1_700_000_000))
        response = await self.get("/static/css/site.css")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, CSS)
        self.assertEqual(response.headers["Content-Type"], "text/css; charset=utf-8")
        self.assertEqual(response.headers["Content-Length"], str(len(CSS)))
        self.assertEqual(response.headers["ETag"], f'"{1_700_000_000:x}-{len(CSS):x}"')
        self.assertEqual(response.headers["Last-Modified"], http_date(1_700_000_000))
        self.assertEqual(response.headers["Accept-Ranges"], "bytes")
        self.assertEqual(response.headers["Cache-Control"], "public, max-age=60")
        self.assertEqual(response.headers["X-Content-Type-Options"], "nosniff")
        self.assertNotIn("Vary", response.headers)
        self.assertNotIn("Content-Encoding", response.headers)

    async def test_head_has_the_headers_of_get_and_no_body(self) -> None:
        got = await self.get("/static/css/site.css")
        head = await self.client.head("/static/css/site.css")
        self.assertEqual(head.status_code, 200)
        self.assertEqual(head.content, b"")
        self.assertEqual(dict(head.headers), dict(got.headers))

    async def test_a_large_file_is_streamed_whole(self) -> None:
        response = await self.get("/static/big.bin")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], "application/octet-stream")
        self.assertEqual(response.headers["Content-Length"], str(len(BIG)))
        self.assertEqual(response.content, BIG)

    async def test_a_static_file_does_not_start_a_django_request(self) -> None:
        started: list[object] = []

        def record(**kwargs: object) -> None:
            started.append(kwargs)

        request_started.connect(record)
        self.addCleanup(request_started.disconnect, record)
        self.assertEqual((await self.get("/static/css/site.css")).status_code, 200)
        self.assertEqual(started, [])
        # A name with no file is Django's: the project's 404, after request_started.
        self.assertEqual((await self.get("/static/css/missing.css")).status_code, 404)
        self.assertEqual(len(started), 1)

    async def test_a_rewritten_file_is_served_anew(self) -> None:
        self.assertEqual((await self.get("/static/css/site.css")).content, CSS)
        self.write("css/site.css", b"p { margin: 0 }", mtime=1_800_000_000)
        response = await self.get("/static/css/site.css")
        self.assertEqual(response.content, b"p { margin: 0 }")
        self.assertEqual(response.headers["ETag"], f'"{1_800_000_000:x}-f"')

    async def test_a_removed_file_is_left_to_django(self) -> None:
        self.assertEqual((await self.get("/static/css/site.css")).status_code, 200)
        (self.root / "css/site.css").unlink()
        self.assertEqual((await self.get("/static/css/site.css")).status_code, 404)

    async def test_other_methods_are_not_allowed_on_a_file(self) -> None:
        for method in ("post", "put", "delete"):
            with self.subTest(method):
                response = await getattr(self.client, method)("/static/css/site.css")
                self.assertEqual(response.status_code, 405)
                self.assertEqual(response.headers["Allow"], "GET, HEAD")

    async def test_content_types_and_charsets(self) -> None:
        cases = {
            "app.js": "text/javascript; charset=utf-8",
            "data.json": "application/json; charset=utf-8",
            "logo.svg": "image/svg+xml; charset=utf-8",
            "logo.png": "image/png",
            "font.woff2": "font/woff2",
            "archive.tar.gz": "application/gzip",
            "noextension": "application/octet-stream",
        }
        for name, expected in cases.items():
            with self.subTest(name):
                self.write(name, b"x")
                self.assertEqual(
                    (await self.get(f"/static/{name}")).headers["Content-Type"], expected
                )

    async def test_paths_outside_the_prefix_are_djangos(self) -> None:
        self.assertEqual((await self.get("/staticx/css/site.css")).status_code, 404)
        self.assertEqual((await self.get("/css/site.css")).status_code, 404)


class ConditionalRequestTests(StaticRootTestCase):
    def setUp(self) -> None:
        super().setUp()
        os.utime(self.root / "css/site.css", (1_700_000_000, 1_700_000_000))
        self.etag = f'"{1_700_000_000:x}-{len(CSS):x}"'

    async def status(self, **headers: str) -> int:
        return (await self.get("/static/css/site.css", **headers)).status_code

    async def test_if_none_match(self) -> None:
        response = await self.get("/static/css/site.css", if_none_match=self.etag)
        self.assertEqual(response.status_code, 304)
        self.assertEqual(response.content, b"")
        self.assertEqual(response.headers["ETag"], self.etag)
        self.assertEqual(response.headers["Cache-Control"], "public, max-age=60")
        self.assertNotIn("Content-Length", response.headers)
        self.assertEqual(await self.status(if_none_match=f'"other", W/{self.etag}'), 304)
        self.assertEqual(await self.status(if_none_match="*"), 304)
        self.assertEqual(await self.status(if_none_match='"other"'), 200)

    async def test_if_modified_since(self) -> None:
        self.assertEqual(await self.status(if_modified_since=http_date(1_700_000_000)), 304)
        self.assertEqual(await self.status(if_modified_since=http_date(1_700_000_001)), 304)
        self.assertEqual(await self.status(if_modified_since=http_date(1_699_999_999)), 200)
        self.assertEqual(await self.status(if_modified_since="not a date"), 200)

    async def test_if_none_match_outranks_if_modified_since(self) -> None:
        late = http_date(1_800_000_000)
        self.assertEqual(await self.status(if_none_match='"other"', if_modified_since=late), 200)

    async def test_if_match(self) -> None:
        self.assertEqual(await self.status(if_match=self.etag), 200)
        self.assertEqual(await self.status(if_match="*"), 200)
        self.assertEqual(await self.status(if_match='"other"'), 412)
        # If-Match compares strongly: a weak tag never matches.
        self.assertEqual(await self.status(if_match=f"W/{self.etag}"), 412)

    async def test_if_unmodified_since(self) -> None:
        self.assertEqual(await self.status(if_unmodified_since=http_date(1_700_000_000)), 200)
        self.assertEqual(await self.status(if_unmodified_since=http_date(1_699_999_999)), 412)
        # If-Match, when present, decides alone.
        early = http_date(1_600_000_000)
        self.assertEqual(await self.status(if_match=self.etag, if_unmodified_since=early), 200)

    async def test_head_is_conditional_too(self) -> None:
        response = await self.client.head(
            "/static/css/site.css", headers={"if-none-match": self.etag}
        )
        self.assertEqual(response.status_code, 304)


class RangeTests(StaticRootTestCase):
    async def test_one_range(self) -> None:
        cases = {
            "bytes=0-9": (0, 9),
            "bytes=10-": (10, len(BIG) - 1),
            "bytes=-100": (len(BIG) - 100, len(BIG) - 1),
            "bytes=5-99999999": (5, len(BIG) - 1),
            "bytes=-99999999": (0, len(BIG) - 1),
            "BYTES = 70000-70010": (70000, 70010),
            f"bytes=7-{'9' * 5000}": (7, len(BIG) - 1),
            f"bytes=-{'9' * 5000}": (0, len(BIG) - 1),
        }
        for value, (start, end) in cases.items():
            with self.subTest(value):
                response = await self.get("/static/big.bin", range=value)
                self.assertEqual(response.status_code, 206)
                self.assertEqual(
                    response.headers["Content-Range"], f"bytes {start}-{end}/{len(BIG)}"
                )
                self.assertEqual(response.headers["Content-Length"], str(end - start + 1))
                self.assertEqual(response.content, BIG[start : end + 1])

    async def test_a_range_of_a_small_file_kept_in_memory(self) -> None:
        await self.get("/static/css/site.css")
        response = await self.get("/static/css/site.css", range="bytes=5-9")
        self.assertEqual(response.status_code, 206)
        self.assertEqual(response.content, CSS[5:10])

    async def test_unsatisfiable(self) -> None:
        for value in (
            f"bytes={len(BIG)}-",
            "bytes=-0",
            f"bytes={len(BIG) + 5}-{len(BIG) + 9}",
            f"bytes={'9' * 5000}-",  # Past Python's int() digit limit: no 500.
        ):
            with self.subTest(value):
                response = await self.get("/static/big.bin", range=value)
                self.assertEqual(response.status_code, 416)
                self.assertEqual(response.headers["Content-Range"], f"bytes */{len(BIG)}")

    async def test_invalid_ranges_are_ignored(self) -> None:
        for value in (
            "bytes=9-5",
            "bytes=a-b",
            "items=0-5",
            "bytes=",
            "bytes=--5",
            "0-5",
            "bytes=1-2-3",
            # Latin-1 superscripts are digits to str.isdigit() but not to int().
            "bytes=\u00b2-",
            "bytes=0-\u00b3",
            "bytes=-\u00b9",
        ):
            with self.subTest(value):
                response = await self.get("/static/css/site.css", range=value)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.content, CSS)

    async def test_several_ranges_as_multipart_byteranges(self) -> None:
        response = await self.get("/static/big.bin", range="bytes=0-4, 100000-100009, -3")
        self.assertEqual(response.status_code, 206)
        parts = parse_multipart(response)
        self.assertEqual(
            parts,
            [
                (f"bytes 0-4/{len(BIG)}", BIG[0:5]),
                (f"bytes 100000-100009/{len(BIG)}", BIG[100000:100010]),
                (f"bytes {len(BIG) - 3}-{len(BIG) - 1}/{len(BIG)}", BIG[-3:]),
            ],
        )
        self.assertEqual(response.headers["Content-Length"], str(len(response.content)))

    async def test_overlapping_and_nearby_ranges_are_merged(self) -> None:
        response = await self.get("/static/big.bin", range="bytes=0-99, 50-149, 160-170")
        self.assertEqual(response.status_code, 206)
        self.assertEqual(response.headers["Content-Range"], f"bytes 0-170/{len(BIG)}")
        self.assertEqual(response.content, BIG[:171])

    async def test_many_ranges_get_the_whole_file(self) -> None:
        many = ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(17))
        response = await self.get("/static/big.bin", range=f"bytes={many}")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, BIG)
        sixteen = ", ".join(f"{n * 1000}-{n * 1000 + 1}" for n in range(16))
        self.assertEqual(
            (await self.get("/static/big.bin", range=f"bytes={sixteen}")).status_code, 206
        )

    async def test_if_range(self) -> None:
        whole = await self.get("/static/big.bin")
        etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
        for if_range, status in (
            (etag, 206),
            (modified, 206),
            ('"other"', 200),
            (f"W/{etag}", 200),
            (http_date(1_000_000_000), 200),
        ):
            with self.subTest(if_range):
                response = await self.get("/static/big.bin", range="bytes=0-9", if_range=if_range)
                self.assertEqual(response.status_code, status)

    async def test_head_ignores_range(self) -> None:
        response = await self.client.head("/static/big.bin", headers={"range": "bytes=0-9"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Length"], str(len(BIG)))

    @override_settings(ASGI_BRIDGE={"STATIC_FILES": True, "STATIC_MAX_RANGES": 2})
    async def test_the_cap_on_ranges_is_a_setting(self) -> None:
        client = ASGIClient(ASGIHandler())
        response = await client.get("/static/big.bin", headers={"range": "bytes=0-1,9-10,20-21"})
        self.assertEqual(response.status_code, 200)


def parse_multipart(response: ClientResponse) -> list[tuple[str, bytes]]:
    """The (Content-Range, body) of each part of a multipart/byteranges response."""
    content_type = response.headers["Content-Type"]
    self_check = content_type.startswith("multipart/byteranges; boundary=")
    assert self_check, content_type
    message = BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + response.content
    )
    return [
        (part["Content-Range"], part.get_payload(decode=True)) for part in message.get_payload()
    ]


class VariantTests(StaticRootTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.gzipped = gzip.compress(CSS, mtime=0)
        self.brotli = b"fake brotli, shorter than gzip"
        self.write("css/site.css.gz", self.gzipped)
        self.write("css/site.css.br", self.brotli)

    async def test_the_variant_the_client_accepts(self) -> None:
        cases = {
            "gzip": ("gzip", self.gzipped),
            "gzip, deflate, br": ("br", self.brotli),
            "br;q=0.5, gzip": ("gzip", self.gzipped),
            "x-gzip": ("gzip", self.gzipped),
            "*": ("br", self.brotli),
            "deflate": (None, CSS),
            "gzip;q=0, br;q=0": (None, CSS),
            "identity;q=1, gzip;q=0.5": (None, CSS),
            "gzip;q=x": (None, CSS),
        }
        for accept, (coding, body) in cases.items():
            with self.subTest(accept):
                response = await self.get("/static/css/site.css", accept_encoding=accept)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.headers.get("Content-Encoding"), coding)
                self.assertEqual(response.headers["Content-Type"], "text/css; charset=utf-8")
                self.assertEqual(response.headers["Vary"], "Accept-Encoding")
                self.assertEqual(response.content, body)

    async def test_without_accept_encoding_the_file_goes_as_it_is(self) -> None:
        response = await self.get("/static/css/site.css")
        self.assertEqual(response.content, CSS)
        self.assertEqual(response.headers["Vary"], "Accept-Encoding")

    async def test_each_variant_has_its_own_etag(self) -> None:
        plain = await self.get("/static/css/site.css")
        zipped = await self.get("/static/css/site.css", accept_encoding="gzip")
        self.assertNotEqual(plain.headers["ETag"], zipped.headers["ETag"])
        again = await self.get(
            "/static/css/site.css", accept_encoding="gzip", if_none_match=zipped.headers["ETag"]
        )
        self.assertEqual(again.status_code, 304)
        self.assertEqual(again.headers["Vary"], "Accept-Encoding")

    async def test_a_range_of_a_variant(self) -> None:
        response = await self.get("/static/css/site.css", accept_encoding="gzip", range="bytes=0-9")
        self.assertEqual(response.status_code, 206)
        self.assertEqual(response.headers["Content-Encoding"], "gzip")
        self.assertEqual(response.content, self.gzipped[:10])

    async def test_a_variant_older_than_its_file_is_not_used(self) -> None:
        os.utime(self.root / "css/site.css.gz", (1_000_000_000, 1_000_000_000))
        os.utime(self.root / "css/site.css.br", (1_000_000_000, 1_000_000_000))
        response = await self.get("/static/css/site.css", accept_encoding="gzip, br")
        self.assertNotIn("Content-Encoding", response.headers)
        self.assertEqual(response.content, CSS)

    async def test_variants_written_later_beside_an_unchanged_file_are_found(self) -> None:
        """compress_static run on a live server: found once the lookup is VARIANTS_RECHECK old."""
        self.write("late.css", CSS)
        self.assertNotIn(
            "Content-Encoding", (await self.get("/static/late.css", accept_encoding="gzip")).headers
        )
        self.write("late.css.gz", self.gzipped)
        with mock.patch("asgi_bridge.static.files.VARIANTS_RECHECK", 0.0):
            response = await self.get("/static/late.css", accept_encoding="gzip")
        self.assertEqual(response.headers["Content-Encoding"], "gzip")
        self.assertEqual(response.content, self.gzipped)

    async def test_a_variant_removed_meanwhile_falls_back_to_the_file(self) -> None:
        self.assertEqual(
            (await self.get("/static/css/site.css", accept_encoding="br")).content, self.brotli
        )
        (self.root / "css/site.css.br").unlink()
        response = await self.get("/static/css/site.css", accept_encoding="br")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, CSS)


class HostilePathTests(StaticRootTestCase):
    def setUp(self) -> None:
        super().setUp()
        (self.directory / "secret.txt").write_bytes(b"secret")
        self.write(".env", b"SECRET=1")

    async def test_dot_segments_nul_and_backslashes_are_refused(self) -> None:
        for path in (
            "/static/../secret.txt",
            "/static/%2e%2e/secret.txt",
            "/static/css/%2E%2E/%2e%2e/secret.txt",
            "/static/./css/site.css",
            "/static/css/site.css%00.png",
            "/static/..%5csecret.txt",
            "/static/css%5c..%5c..%5csecret.txt",
        ):
            with self.subTest(path), self.assertLogs("django.security.SuspiciousFileOperation"):
                response = await self.get(path)
                self.assertEqual(response.status_code, 400)
                self.assertNotIn(b"secret", response.content)

    async def test_what_names_no_served_file_is_djangos_404(self) -> None:
        for path in (
            "/static/%252e%252e/secret.txt",  # Double-encoded: a literal name no file has.
            "/static/.env",
            "/static/css/",
            "/static/css",
            "/static/",
            "/static//css/site.css",
            "/static/css//site.css",
            "/static/" + "a" * 300,
        ):
            with self.subTest(path):
                response = await self.get(path)
                self.assertEqual(response.status_code, 404)
                self.assertNotIn(b"SECRET", response.content)

    async def test_links_out_of_the_root_are_not_followed(self) -> None:
        (self.root / "out.txt").symlink_to(self.directory / "secret.txt")
        (self.root / "outdir").symlink_to(self.directory)
        (self.root / "in.css").symlink_to(self.root / "css/site.css")
        self.assertEqual((await self.get("/static/out.txt")).status_code, 404)
        self.assertEqual((await self.get("/static/outdir/secret.txt")).status_code, 404)
        inside = await self.get("/static/in.css")
        self.assertEqual((inside.status_code, inside.content), (200, CSS))

    async def test_links_out_of_the_root_when_the_setting_allows_them(self) -> None:
        (self.root / "out.txt").symlink_to(self.directory / "secret.txt")
        with override_settings(ASGI_BRIDGE={"STATIC_FILES": True, "STATIC_FOLLOW_SYMLINKS": True}):
            client = ASGIClient(ASGIHandler())
            response = await client.get("/static/out.txt")
        self.assertEqual((response.status_code, response.content), (200, b"secret"))


class CacheControlTests(StaticRootTestCase):
    async def test_hashed_names_of_the_manifest_are_immutable(self) -> None:
        self.write("css/site.0123456789ab.css", CSS)
        manifest = {"paths": {"css/site.css": "css/site.0123456789ab.css"}, "version": "1.1"}
        self.write("staticfiles.json", json.dumps(manifest).encode())
        storages = {
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
            }
        }
        with override_settings(STORAGES=storages):
            client = ASGIClient(ASGIHandler())
            hashed = await client.get("/static/css/site.0123456789ab.css")
            plain = await client.get("/static/css/site.css")
        self.assertEqual(hashed.headers["Cache-Control"], "public, max-age=31536000, immutable")
        self.assertEqual(plain.headers["Cache-Control"], "public, max-age=60")

    @override_settings(ASGI_BRIDGE={"STATIC_FILES": True, "STATIC_MAX_AGE": None})
    async def test_no_max_age(self) -> None:
        response = await ASGIClient(ASGIHandler()).get("/static/css/site.css")
        self.assertNotIn("Cache-Control", response.headers)

    @override_settings(SECURE_CONTENT_TYPE_NOSNIFF=False)
    async def test_nosniff_follows_djangos_setting(self) -> None:
        response = await ASGIClient(ASGIHandler()).get("/static/css/site.css")
        self.assertNotIn("X-Content-Type-Options", response.headers)


class MediaTests(StaticRootTestCase):
    bridge_settings: ClassVar[dict[str, Any]] = {"MEDIA_FILES": True}

    def setUp(self) -> None:
        self.media = Path(tempfile.mkdtemp(prefix="asgi_bridge-media-"))
        self.addCleanup(shutil.rmtree, self.media, ignore_errors=True)
        settings = override_settings(MEDIA_ROOT=str(self.media), MEDIA_URL="/media/")
        settings.enable()
        self.addCleanup(settings.disable)
        super().setUp()

    async def test_media_files_are_served_without_cache_control(self) -> None:
        (self.media / "uploads").mkdir()
        (self.media / "uploads/photo.jpg").write_bytes(b"\xff\xd8jpeg")
        response = await self.get("/media/uploads/photo.jpg")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, b"\xff\xd8jpeg")
        self.assertEqual(response.headers["Content-Type"], "image/jpeg")
        self.assertNotIn("Cache-Control", response.headers)
        # STATIC_FILES is off: STATIC_URL is Django's.
        self.assertEqual((await self.get("/static/css/site.css")).status_code, 404)


class SettingsTests(SimpleTestCase):
    @override_settings(STATIC_ROOT=None, ASGI_BRIDGE={"STATIC_FILES": True})
    def test_serving_static_files_needs_static_root(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "STATIC_ROOT, which is not set"):
            ASGIHandler()

    @override_settings(
        STATIC_ROOT="/tmp",
        STATIC_URL="https://cdn.example.com/static/",
        ASGI_BRIDGE={"STATIC_FILES": True},
    )
    def test_static_url_must_be_a_path_here(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "must be a path on this site"):
            ASGIHandler()

    @override_settings(MEDIA_ROOT="", ASGI_BRIDGE={"MEDIA_FILES": True})
    def test_serving_media_files_needs_media_root(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "MEDIA_ROOT, which is not set"):
            ASGIHandler()

    def test_values_are_checked(self) -> None:
        for key, value in (
            ("STATIC_FILES", "yes"),
            ("MEDIA_FILES", 1),
            ("STATIC_MAX_AGE", -1),
            ("STATIC_MAX_AGE", 1.5),
            ("STATIC_MAX_RANGES", 0),
            ("STATIC_FOLLOW_SYMLINKS", None),
        ):
            with (
                self.subTest(key=key, value=value),
                override_settings(ASGI_BRIDGE={key: value}),
                self.assertRaisesMessage(ImproperlyConfigured, key),
            ):
                ASGIHandler()
