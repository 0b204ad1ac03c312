"""Precompressed variants of static files: ``<name>.gz``, ``<name>.br`` and ``<name>.zst``
beside each file worth compressing, made once at deploy time (``manage.py compress_static``)
so that serving a compressed response costs nothing per request.

gzip comes with Python; brotli and zstd with the ``brotli`` and ``zstandard`` packages (the
``static`` extra), and are left out without them. A variant is written only where it saves at
least MIN_SAVING of the file, and only when missing or older than the file; a variant that no
longer saves enough is removed. Writes are atomic (a temporary file, then a rename), so a
server never serves half a variant.
"""

from __future__ import annotations

import gzip
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .encodings import VARIANT_SUFFIXES

# Smaller files gain nothing worth a variant: the headers weigh more.
MIN_SIZE = 256
# A variant must be at least this much smaller than its file to be kept.
MIN_SAVING = 0.05
# Types that are compressed already, or compress badly: left alone.
INCOMPRESSIBLE_TYPES = ("image/", "video/", "audio/", "font/woff")
INCOMPRESSIBLE_SUFFIXES = frozenset(
    (".gz", ".br", ".zst", ".zip", ".bz2", ".xz", ".7z", ".woff", ".woff2", ".pdf")
)
# Images that are text, and so compress well.
COMPRESSIBLE_IMAGES = frozenset(
    ("image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "image/bmp")
)

Compressor = Callable[[bytes], bytes]


def gzip_compress(data: bytes) -> bytes:
    # mtime=0: the same file gives the same bytes, whenever it is compressed.
    return gzip.compress(data, compresslevel=9, mtime=0)


def available_compressors() -> dict[str, Compressor]:
    """The codings this Python can make, by content coding."""
    compressors: dict[str, Compressor] = {"gzip": gzip_compress}
    try:
        import brotli  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        compressors["br"] = lambda data: brotli.compress(data, quality=11)
    try:
        import zstandard
    except ImportError:
        pass
    else:
        compressors["zstd"] = zstandard.ZstdCompressor(level=19).compress
    return compressors


def worth_compressing(path: Path) -> bool:
    if path.suffix.lower() in INCOMPRESSIBLE_SUFFIXES:
        return False
    guessed, encoding = mimetypes.guess_type(path.name, strict=False)
    if encoding is not None:
        return False
    if guessed is None:
        return True  # Unknown types are mostly text: source maps, manifests, templates.
    if guessed in COMPRESSIBLE_IMAGES:
        return True
    return not guessed.startswith(INCOMPRESSIBLE_TYPES)


@dataclass
class Outcome:
    """What compressing a tree did."""

    written: int = 0
    current: int = 0
    removed: int = 0
    skipped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def files_under(root: Path) -> Iterator[Path]:
    """The regular files below ``root`` that may get variants (not variants themselves)."""
    suffixes = tuple(VARIANT_SUFFIXES.values())
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(suffixes) or name.startswith("."):
                continue
            path = Path(directory) / name
            if path.is_file():
                yield path


def write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def compress_tree(
    root: Path, compressors: dict[str, Compressor], min_size: int = MIN_SIZE
) -> Outcome:
    """Make or refresh the variants of every file worth compressing under ``root``."""
    outcome = Outcome()
    for path in files_under(root):
        status = path.stat()
        if status.st_size < min_size or not worth_compressing(path):
            outcome.skipped += 1
            continue
        data: bytes | None = None
        for coding, compress in compressors.items():
            variant = path.with_name(path.name + VARIANT_SUFFIXES[coding])
            try:
                if variant.stat().st_mtime_ns >= status.st_mtime_ns:
                    outcome.current += 1
                    continue
            except FileNotFoundError:
                pass
            if data is None:
                data = path.read_bytes()
            compressed = compress(data)
            if len(compressed) > len(data) * (1 - MIN_SAVING):
                if variant.exists():
                    variant.unlink()
                    outcome.removed += 1
                continue
            write_atomically(variant, compressed)
            outcome.written += 1
            outcome.bytes_before += len(data)
            outcome.bytes_after += len(compressed)
    return outcome
