"""What a process holds from startup, taken out of the cyclic garbage collector's way.

A Django process imports tens of thousands of long-lived objects: modules, classes, functions,
settings, URL patterns. Every full collection walks all of them. Under concurrent load, objects
of requests still in flight outlive the young collections and are promoted, which sets off full
collections that a WSGI worker, serving one request at a time, rarely needs. ``gc.freeze()``
moves everything alive at startup to a generation the collector never visits, so a full
collection walks only what was made since.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("asgi_bridge")

_frozen = False
# False in a test run: a test process's objects are its tests', not a server's for its lifetime.
_allowed = True


def freeze_startup_objects() -> bool:
    """Collect garbage, then exempt every object still alive from later collections.

    Runs once per process; False if it had already run, the process is a test run, or the
    interpreter has no gc.freeze(). Objects frozen stay alive even if they later become
    unreachable in a reference cycle, so this is for what the process holds for its lifetime,
    at the end of startup.
    """
    global _frozen
    freeze = getattr(gc, "freeze", None)
    if _frozen or not _allowed or freeze is None:
        return False
    _frozen = True
    # Garbage left by imports and startup hooks would otherwise be frozen with the rest.
    gc.collect()
    freeze()
    logger.debug("Froze %d startup objects out of the garbage collector", gc.get_freeze_count())
    return True


def never_freeze() -> None:
    """Keep this process's objects collectable whatever FREEZE_GC says: for test runs."""
    global _allowed
    _allowed = False
