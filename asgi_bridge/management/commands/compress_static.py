"""``manage.py compress_static``: write the precompressed variants asgi_bridge serves beside each
static file (``.gz``, and ``.br``/``.zst`` where the ``brotli``/``zstandard`` packages are
installed). Run it after ``collectstatic``; it only redoes variants older than their file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...static.compression import MIN_SIZE, available_compressors, compress_tree


class Command(BaseCommand):
    help = (
        "Write .gz, .br and .zst variants beside the files of STATIC_ROOT (or the given "
        "directory), for asgi_bridge to serve by Accept-Encoding. Run it after collectstatic."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "root", nargs="?", help="The directory to compress (default: STATIC_ROOT)."
        )
        parser.add_argument(
            "--formats",
            default=None,
            help="Comma-separated codings among gzip, br, zstd (default: all available).",
        )
        parser.add_argument(
            "--min-size",
            type=int,
            default=MIN_SIZE,
            help=f"Leave smaller files alone (default: {MIN_SIZE} bytes).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root = options["root"] or settings.STATIC_ROOT
        if not root:
            raise CommandError("STATIC_ROOT is not set: give the directory to compress.")
        root = Path(root)
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory: run collectstatic first.")
        compressors = available_compressors()
        if options["formats"]:
            wanted = [name.strip() for name in options["formats"].split(",") if name.strip()]
            missing = [name for name in wanted if name not in compressors]
            if missing:
                raise CommandError(
                    f"Cannot make {', '.join(missing)}: install the brotli (br) or zstandard "
                    f"(zstd) package, or leave it out of --formats."
                )
            compressors = {name: compressors[name] for name in wanted}
        unavailable = sorted({"gzip", "br", "zstd"} - set(available_compressors()))
        if unavailable and not options["formats"]:
            self.stderr.write(
                f"Not making {', '.join(unavailable)}: pip install 'asgi-bridge[static]' adds it."
            )
        outcome = compress_tree(root, compressors, options["min_size"])
        saved = outcome.bytes_before - outcome.bytes_after
        self.stdout.write(
            f"{outcome.written} variants written ({', '.join(compressors)}; "
            f"{saved:,} bytes saved), {outcome.current} already current, "
            f"{outcome.removed} removed, {outcome.skipped} files left as they are, in {root}."
        )
