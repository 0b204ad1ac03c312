"""manage.py compress_static: the .gz, .br and .zst variants asgi_bridge.static serves, written
only where they save enough and only when missing or older than their file."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import zstandard
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.test import SimpleTestCase, override_settings

from asgi_bridge.handler import ASGIHandler
from asgi_bridge.management.commands.compress_static import Command
from asgi_bridge.testing import ASGIClient

SCRIPT = b"function greet(name) { return 'Hello, ' + name + '!'; }\n" * 200


class CompressStaticTests(SimpleTestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="asgi_bridge-compress-"))
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        (self.root / "js").mkdir()
        (self.root / "js/app.js").write_bytes(SCRIPT)
        (self.root / "tiny.css").write_bytes(b"a{}")
        (self.root / "photo.png").write_bytes(os.urandom(4096))
        (self.root / "noise.txt").write_bytes(os.urandom(4096))
        settings = override_settings(
            STATIC_ROOT=str(self.root), STATIC_URL="/static/", ASGI_BRIDGE={"STATIC_FILES": True}
        )
        settings.enable()
        self.addCleanup(settings.disable)

    def compress(self, *arguments: str) -> str:
        output = io.StringIO()
        # A Command object: the test settings do not install the asgi_bridge app.
        call_command(Command(), *arguments, stdout=output, stderr=io.StringIO())
        return output.getvalue()

    def variants(self) -> list[str]:
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.suffix in (".gz", ".br", ".zst")
        )

    def test_every_coding_of_the_files_worth_it(self) -> None:
        output = self.compress()
        self.assertIn("3 variants written (gzip, br, zstd", output)
        # Too small, an image, and data that does not compress: left as they are.
        self.assertEqual(self.variants(), ["js/app.js.br", "js/app.js.gz", "js/app.js.zst"])
        self.assertEqual(gzip.decompress((self.root / "js/app.js.gz").read_bytes()), SCRIPT)
        self.assertEqual(brotli.decompress((self.root / "js/app.js.br").read_bytes()), SCRIPT)
        self.assertEqual(
            zstandard.ZstdDecompressor().decompress((self.root / "js/app.js.zst").read_bytes()),
            SCRIPT,
        )

    def test_current_variants_are_kept_and_stale_ones_redone(self) -> None:
        self.compress()
        self.assertIn("0 variants written", self.compress())
        (self.root / "js/app.js").write_bytes(SCRIPT + b"// more\n")
        os.utime(self.root / "js/app.js", (2_000_000_000, 2_000_000_000))
        self.assertIn("3 variants written", self.compress())
        self.assertEqual(
            gzip.decompress((self.root / "js/app.js.gz").read_bytes()), SCRIPT + b"// more\n"
        )

    def test_a_variant_that_no_longer_saves_enough_is_removed(self) -> None:
        self.compress("--formats", "gzip")
        (self.root / "js/app.js").write_bytes(os.urandom(4096))
        os.utime(self.root / "js/app.js", (2_000_000_000, 2_000_000_000))
        self.assertIn("1 removed", self.compress("--formats", "gzip"))
        self.assertEqual(self.variants(), [])

    def test_formats_and_errors(self) -> None:
        self.compress("--formats", "gzip")
        self.assertEqual(self.variants(), ["js/app.js.gz"])
        with self.assertRaisesMessage(CommandError, "Cannot make lzma"):
            self.compress("--formats", "lzma")
        with self.assertRaisesMessage(CommandError, "is not a directory"):
            self.compress(str(self.root / "missing"))

    async def test_the_variants_are_served(self) -> None:
        await sync_to_async(self.compress)()
        client = ASGIClient(ASGIHandler())
        for accept, coding in (("br", "br"), ("zstd", "zstd"), ("gzip", "gzip"), ("", None)):
            with self.subTest(accept):
                response = await client.get(
                    "/static/js/app.js", headers={"accept-encoding": accept}
                )
                self.assertEqual(response.headers.get("Content-Encoding"), coding)
                self.assertEqual(response.headers["Vary"], "Accept-Encoding")


class DevelopmentStaticFilesTests(SimpleTestCase):
    """runserver's static files in DEBUG: through the finders, with ranges and no caching."""

    async def test_finders_serve_app_static_files(self) -> None:
        from asgi_bridge.static import DevelopmentStaticFiles

        async def project(scope: object, receive: object, send: object) -> None:
            raise AssertionError("a static file reached the project")

        temporary = Path(tempfile.mkdtemp(prefix="asgi_bridge-finders-"))
        self.addCleanup(shutil.rmtree, temporary, ignore_errors=True)
        (temporary / "extra.css").write_bytes(b"p { color: red }")
        with override_settings(STATIC_URL="/static/", STATICFILES_DIRS=[str(temporary)]):
            client = ASGIClient(DevelopmentStaticFiles(project))  # type: ignore[arg-type]
            response = await client.get("/static/extra.css", headers={"range": "bytes=0-0"})
            missing = client.get("/static/missing.css")
            with self.assertRaisesMessage(AssertionError, "reached the project"):
                await missing
        self.assertEqual((response.status_code, response.content), (206, b"p"))
        self.assertEqual(response.headers["Cache-Control"], "no-cache")
