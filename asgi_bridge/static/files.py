"""The files a root serves: finding them safely, what each looks like to HTTP, and reading them
without blocking the event loop.

A name is looked up once and remembered (``FileIndex``): the file's real path, checked to lie
within the root, its content type and the precompressed variants beside it. Each request then
checks with one ``stat`` that the file is still the one remembered; a file that changed, or a
lookup older than VARIANTS_RECHECK seconds, is looked up again. Files of up to SMALL_FILE
bytes are kept in memory once read, up to MEMORY_CACHE_BYTES in all, and used again while their
``stat`` is unchanged; larger ones are opened for each response and read in CHUNK_SIZE pieces.
"""

from __future__ import annotations

import asyncio
import errno
import mimetypes
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .conditional import entity_tag, last_modified
from .encodings import VARIANT_SUFFIXES

SMALL_FILE = 64 * 1024
MEMORY_CACHE_BYTES = 32 * 1024 * 1024
CHUNK_SIZE = 64 * 1024
# Names remembered per root; past it the index starts over (a deployment's static files fit).
INDEX_SIZE = 10_000
# Seconds a name's lookup (its real path and variants) is trusted while its file is unchanged:
# variants written beside an unchanged file (compress_static after collectstatic, on a running
# server) are served from then on.
VARIANTS_RECHECK = 10.0
# Threads that read from disk what the page cache does not hold; shared by every response.
READ_THREADS = 4
# Text types that get "; charset=utf-8", as Django's own responses do.
TEXT_TYPES = frozenset(
    (
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "application/xml",
        "image/svg+xml",
        "text/javascript",
    )
)
# What a file named with a compression suffix is, when asked for by its own name.
ENCODED_TYPES = {
    "gzip": "application/gzip",
    "br": "application/x-brotli",
    "zstd": "application/zstd",
}
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)

FileKey = tuple[int, int, int, int]


def file_key(status: os.stat_result) -> FileKey:
    """What tells one version of a file from another: device, inode, size and mtime (ns)."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def content_type(name: str) -> str:
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return ENCODED_TYPES.get(encoding, "application/octet-stream")
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in TEXT_TYPES:
        return f"{guessed}; charset=utf-8"
    return guessed


@dataclass(frozen=True)
class Representation:
    """One version of a file on disk as HTTP sees it: the file itself or a compressed variant."""

    path: str
    coding: str | None
    key: FileKey
    size: int
    modified: int
    etag: str
    last_modified: str

    @classmethod
    def of(cls, path: str, coding: str | None, status: os.stat_result) -> Representation:
        modified = int(status.st_mtime)
        return cls(
            path,
            coding,
            file_key(status),
            status.st_size,
            modified,
            entity_tag(modified, status.st_size),
            last_modified(modified),
        )


@dataclass
class FileEntry:
    """What is remembered of a name: its file, content type, and variants (coding to path and
    size) no older than the file."""

    name: str
    path: str
    key: FileKey
    content_type: str
    variants: dict[str, tuple[str, int]] = field(default_factory=dict)
    # When the name was looked up (time.monotonic()): past VARIANTS_RECHECK, it is looked up
    # again, so that variants compress_static wrote since are found.
    indexed: float = field(default_factory=time.monotonic)

    @property
    def variant_sizes(self) -> dict[str, int]:
        return {coding: size for coding, (_, size) in self.variants.items()}


class OpenedFile:
    """A representation opened for one response: its bytes in memory, or an open descriptor
    that ``close()`` closes."""

    __slots__ = ("content", "descriptor", "representation")

    def __init__(
        self, representation: Representation, content: bytes | None, descriptor: int | None
    ) -> None:
        self.representation = representation
        self.content = content
        self.descriptor = descriptor

    def close(self) -> None:
        if self.descriptor is not None:
            descriptor, self.descriptor = self.descriptor, None
            os.close(descriptor)

    def at_its_path(self) -> bool:
        """Whether the path leads, right now, to the very file opened, unchanged: what a server
        sending it by path will send."""
        try:
            return not self.changed() and (
                file_key(os.stat(self.representation.path)) == self.representation.key
            )
        except OSError:
            return False

    def changed(self) -> bool:
        """Whether the open file is no longer what its headers described (written meanwhile)."""
        if self.descriptor is None:
            return False
        return file_key(os.fstat(self.descriptor)) != self.representation.key


Locate = Callable[[str], "str | None"]


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def directory_locator(root: str, follow_symlinks: bool) -> Locate:
    """Where a name's regular file is under ``root``, following links only within ``root``
    unless ``follow_symlinks``; None where there is none to serve."""
    real_root = os.path.realpath(root)

    def locate(name: str) -> str | None:
        path = os.path.realpath(os.path.join(real_root, name))
        if not follow_symlinks and not within(path, real_root):
            return None
        return path

    return locate


class FileIndex:
    """The files of one root, by name, and the small ones' bytes."""

    def __init__(self, locate: Locate) -> None:
        self.locate = locate
        self.entries: dict[str, FileEntry] = {}
        self.memory: OrderedDict[str, tuple[Representation, bytes]] = OrderedDict()
        self.memory_bytes = 0

    def find(self, name: str) -> FileEntry | None:
        """The entry for ``name``, checked against the file now on disk; None if no regular
        file is to be served under that name."""
        entry = self.entries.get(name)
        if entry is not None:
            try:
                unchanged = file_key(os.stat(entry.path)) == entry.key
            except OSError:
                unchanged = False
            if unchanged and time.monotonic() - entry.indexed < VARIANTS_RECHECK:
                return entry
            del self.entries[name]
        entry = self.index(name)
        if entry is not None:
            if len(self.entries) >= INDEX_SIZE:
                self.entries.clear()
            self.entries[name] = entry
        return entry

    def index(self, name: str) -> FileEntry | None:
        path = self.regular_file(name)
        if path is None:
            return None
        try:
            status = os.stat(path)
        except OSError:
            return None
        entry = FileEntry(name, path, file_key(status), content_type(name))
        for coding, suffix in VARIANT_SUFFIXES.items():
            variant = self.regular_file(name + suffix)
            if variant is None:
                continue
            try:
                variant_status = os.stat(variant)
            except OSError:
                continue
            # A variant older than its file was made from an earlier version of it.
            if variant_status.st_mtime_ns >= status.st_mtime_ns:
                entry.variants[coding] = (variant, variant_status.st_size)
        return entry

    def regular_file(self, name: str) -> str | None:
        try:
            path = self.locate(name)
            if path is None or not stat.S_ISREG(os.stat(path).st_mode):
                return None
        except (OSError, ValueError):
            return None  # Missing, a name too long, a component that is a file.
        return path

    async def open(self, entry: FileEntry, coding: str | None) -> OpenedFile:
        """The representation of ``entry`` in ``coding`` (None: the file itself), opened;
        ``entry`` is one find() has just checked against the file on disk.

        Raises OSError when it is gone or not a regular file any more."""
        path = entry.path if coding is None else entry.variants[coding][0]
        remembered = self.memory.get(path)
        if remembered is not None:
            representation, content = remembered
            if coding is None:
                current: FileKey | None = entry.key  # find() has just checked it.
            else:
                try:
                    current = file_key(os.stat(path))
                except OSError:
                    current = None
            if current == representation.key:
                self.memory.move_to_end(path)
                return OpenedFile(representation, content, None)
            self.forget(path)
        descriptor = os.open(path, OPEN_FLAGS)
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise OSError(errno.ENOENT, "not a regular file", path)
            representation = Representation.of(path, coding, status)
            if representation.size > SMALL_FILE:
                return OpenedFile(representation, None, descriptor)
            content = await read_chunk(descriptor, representation.size, 0)
            if len(content) == representation.size and file_key(os.fstat(descriptor)) == (
                representation.key
            ):
                self.remember(path, representation, content)
                os.close(descriptor)
                return OpenedFile(representation, content, None)
            return OpenedFile(representation, None, descriptor)
        except BaseException:
            os.close(descriptor)
            raise

    def remember(self, path: str, representation: Representation, content: bytes) -> None:
        self.memory[path] = (representation, content)
        self.memory_bytes += len(content)
        while self.memory_bytes > MEMORY_CACHE_BYTES:
            self.forget(next(iter(self.memory)))

    def forget(self, path: str) -> None:
        remembered = self.memory.pop(path, None)
        if remembered is not None:
            self.memory_bytes -= len(remembered[1])


_read_threads: ThreadPoolExecutor | None = None
# Whether reads may first try the page cache without blocking (RWF_NOWAIT); turned off for
# good on a file system or kernel that refuses it.
_nowait_reads = hasattr(os, "preadv") and hasattr(os, "RWF_NOWAIT")


def read_threads() -> ThreadPoolExecutor:
    global _read_threads
    if _read_threads is None:
        _read_threads = ThreadPoolExecutor(
            READ_THREADS, thread_name_prefix="asgi_bridge static read"
        )
    return _read_threads


async def read_chunk(descriptor: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``: straight from the page cache when it holds them
    (a read that cannot block), else on one of READ_THREADS threads, so that a slow disk never
    stalls the event loop. Fewer bytes only at the end of the file."""
    global _nowait_reads
    if _nowait_reads:
        buffer = bytearray(size)
        try:
            count = os.preadv(descriptor, [buffer], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            pass  # Not in the page cache: read on a thread.
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _nowait_reads = False
        else:
            if count == size:
                return bytes(buffer)
            if count == 0:
                return b""
            # Part was cached: the rest is read below.
            rest = await read_chunk(descriptor, size - count, offset + count)
            return bytes(buffer[:count]) + rest
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(read_threads(), os.pread, descriptor, size, offset)
