"""The 10 MiB file behind ``/download/``: deterministic bytes, written on first use.

The contents come from a seeded PRNG, so tests can rebuild them with ``big_file_bytes()`` and
compare digests without the file being checked in.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
from pathlib import Path

BIG_FILE_SIZE = 10 * 1024 * 1024
BIG_FILE_SEED = 20251123

_creation_lock = threading.Lock()


def big_file_bytes() -> bytes:
    """Return the exact contents the big file has (or will have)."""
    return random.Random(BIG_FILE_SEED).randbytes(BIG_FILE_SIZE)


def ensure_big_file(path: Path) -> Path:
    """Create the big file at ``path`` unless a complete one is already there; return ``path``."""
    if not _is_complete(path):
        # The lock only saves duplicate work in this process; the atomic write keeps
        # several processes (one per server under test) from ever seeing a partial file.
        with _creation_lock:
            if not _is_complete(path):
                _write_atomically(path, big_file_bytes())
    return path


def _is_complete(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == BIG_FILE_SIZE


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise
