"""The example project's lifespan hook: a resource opened once per server process.

A real project would open an HTTP client or a connection pool here. This one keeps a small
record of the process, which ``/lifespan/`` shows through ``request.state``, and, when
``EXAMPLE_LIFESPAN_LOG`` names a file, writes "startup" and "shutdown" lines to it so that the
end-to-end tests can see the hooks run (and in which order with after_response() work).
``EXAMPLE_LIFESPAN_FAIL`` makes startup fail with that message.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def write_lifespan_log(line: str) -> None:
    """Append a line to EXAMPLE_LIFESPAN_LOG, if set; one write, so lines never interleave."""
    path = os.environ.get("EXAMPLE_LIFESPAN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@asynccontextmanager
async def process_record() -> AsyncIterator[dict[str, Any]]:
    failure = os.environ.get("EXAMPLE_LIFESPAN_FAIL")
    if failure:
        # For the end-to-end test of a startup failure: the server must stop, saying why.
        raise RuntimeError(failure)
    write_lifespan_log(f"startup {os.getpid()}")
    try:
        yield {"process": {"pid": os.getpid(), "started": time.time()}}
    finally:
        write_lifespan_log(f"shutdown {os.getpid()}")
