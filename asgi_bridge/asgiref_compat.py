"""Every asgiref internal asgi_bridge touches, checked once at import, with the public fallback.

asgiref documents ``sync_to_async``, ``async_to_sync``, ``ThreadSensitiveContext``, ``Local``
and ``ApplicationCommunicator``; everything below is outside that, so any release may rename or
remove it. Each internal is looked up here, once, and kept only if it still has the shape we rely
on. Where one is missing, the callers take the public path instead, which costs more per request;
the one difference a request can see is noted under ``AsyncToSync.executors``.

Tested with asgiref 3.8.1 (the oldest Django 5.2 accepts), 3.9.2, 3.10.0, 3.11.1, 3.12.1 and
3.13.0 (the newest release), each of which has every internal below. CI runs the oldest and the
newest (tox.ini: ``asgiref38``, ``asgiref313``). pyproject.toml caps asgiref below the next minor
release: asgiref changes these internals in minor releases (3.12 made ``_restore_context``
re-home ``Local`` data, 3.13 added ``ThreadSensitiveContext(executor=...)``).

The internals, the name each is kept under here, what it is for, and the fallback:

``asgiref.sync._restore_context`` (``restore_context``)
    ``hop`` copies the context variables between the loop and a request's thread with it (from
    3.12 it also re-homes the ``Local`` data in them), as ``sync_to_async`` and ``async_to_sync``
    do. Missing:
    ``CALL_ON_THREAD_AVAILABLE`` and ``CALL_ON_LOOP_AVAILABLE`` are false, and
    ``sync_to_async(executor=...)`` and ``async_to_sync`` make those trips.
``SyncToAsync.threadlocal`` (``sync_to_async_threadlocal``)
    ``hop.call_on_thread`` sets its ``main_event_loop``, ``main_event_loop_pid`` and
    ``task_context`` as ``sync_to_async`` does, so that ``async_to_sync`` in the function finds
    the loop; ``from_request_thread`` reads the loop there. Missing: as for ``_restore_context``.
    The attribute names cannot be checked before use; tests/test_asgiref_compat.py pins them.
``AsyncToSync.executors`` (``async_to_sync_executors``)
    ``hop.call_on_loop`` and ``threads.sync_calls_on_request_thread`` set its ``current`` to send
    thread-sensitive calls to the request's thread, as ``async_to_sync`` does;
    ``threads.caller_thread_executor`` reads it to find a thread waiting in ``async_to_sync``.
    Missing: ``CALL_ON_LOOP_AVAILABLE`` is false (``async_to_sync`` instead),
    ``caller_thread_executor`` finds no thread, ``LegacyExecutorContext`` is unavailable, and
    ``sync_calls_on_request_thread`` enters a ``ThreadSensitiveContext`` for the request's
    executor instead (dearer, same outcome).
``AsyncToSync.loop_thread_executors`` (``loop_thread_executors``)
    ``threads.caller_thread_executor``: a cheap test that the running loop is not one that
    ``async_to_sync`` started. Missing: ``AsyncToSync.executors`` is read on every request.
``SyncToAsync.thread_sensitive_context`` (``thread_sensitive_context``)
    ``context_executor``, for ``threads.request_thread_context``: whether the context it would
    enter is entered already. Missing: it enters one of its own each time.
``SyncToAsync.context_to_thread_executor`` (``context_to_thread_executor``)
    The same; and ``LegacyExecutorContext`` registers its executor there. Missing: as for
    ``thread_sensitive_context``, and ``LegacyExecutorContext`` is unavailable.
``ThreadSensitiveContext().token`` (``CONTEXT_HAS_TOKEN``)
    ``LegacyExecutorContext``: whether entering it set the context. Missing: it is unavailable.

``ThreadSensitiveContext(executor=...)`` (``CONTEXT_TAKES_EXECUTOR``) is public, but only from
asgiref 3.13; before it, ``LegacyExecutorContext`` does the same through the internals above.
Where neither can be had (``EXECUTOR_CONTEXT_AVAILABLE`` false), asgiref cannot be told which
thread a context's calls use, so ``threads`` lets asgiref pick the thread of the request's own
sync calls too, as it does for Django's: all of a request's sync code still shares one thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from asgiref import sync as asgiref_sync
from asgiref.local import Local
from asgiref.sync import AsyncToSync, SyncToAsync, ThreadSensitiveContext

__all__ = [
    "CALL_ON_LOOP_AVAILABLE",
    "CALL_ON_THREAD_AVAILABLE",
    "CONTEXT_HAS_TOKEN",
    "CONTEXT_TAKES_EXECUTOR",
    "EXECUTOR_CONTEXT_AVAILABLE",
    "LEGACY_EXECUTOR_CONTEXT_AVAILABLE",
    "MISSING",
    "TESTED_VERSIONS",
    "LegacyExecutorContext",
    "async_to_sync_executors",
    "context_executor",
    "context_to_thread_executor",
    "loop_thread_executors",
    "restore_context",
    "sync_to_async_threadlocal",
    "thread_sensitive_context",
]

T = TypeVar("T")

TESTED_VERSIONS = ("3.8.1", "3.9.2", "3.10.0", "3.11.1", "3.12.1", "3.13.0")


def _internal(owner: object, name: str, kind: type[T]) -> T | None:
    """``owner.name`` if it is there and still a ``kind``; None otherwise."""
    value = getattr(owner, name, None)
    return value if isinstance(value, kind) else None


def _takes_one_argument(func: object) -> bool:
    try:
        inspect.signature(func).bind(None)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _restore_context_if_usable() -> Callable[[contextvars.Context], None] | None:
    func = getattr(asgiref_sync, "_restore_context", None)
    return func if callable(func) and _takes_one_argument(func) else None


def _context_takes_executor() -> bool:
    try:
        parameters = inspect.signature(ThreadSensitiveContext).parameters
    except (TypeError, ValueError):
        return False
    executor = parameters.get("executor")
    return executor is not None and executor.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def _context_has_token() -> bool:
    try:
        # Creating one only sets attributes, in every release: entering it is what acts.
        # Untyped before asgiref 3.13.
        context = ThreadSensitiveContext()  # type: ignore[no-untyped-call,unused-ignore]
        return hasattr(context, "token")
    except TypeError:
        return False


restore_context = _restore_context_if_usable()
sync_to_async_threadlocal = _internal(SyncToAsync, "threadlocal", threading.local)
async_to_sync_executors = _internal(AsyncToSync, "executors", Local)
loop_thread_executors: Mapping[asyncio.AbstractEventLoop, Executor] | None = _internal(
    AsyncToSync, "loop_thread_executors", dict
)
thread_sensitive_context: contextvars.ContextVar[ThreadSensitiveContext] | None = _internal(
    SyncToAsync, "thread_sensitive_context", contextvars.ContextVar
)
context_to_thread_executor: MutableMapping[ThreadSensitiveContext, Executor] | None = _internal(
    SyncToAsync,
    "context_to_thread_executor",
    MutableMapping,  # type: ignore[type-abstract]
)
CONTEXT_TAKES_EXECUTOR = _context_takes_executor()
CONTEXT_HAS_TOKEN = _context_has_token()

# hop.call_on_thread: what sync_to_async does on both sides of the hop.
CALL_ON_THREAD_AVAILABLE = restore_context is not None and sync_to_async_threadlocal is not None
# hop.call_on_loop: what async_to_sync does, including where thread-sensitive calls go meanwhile.
CALL_ON_LOOP_AVAILABLE = CALL_ON_THREAD_AVAILABLE and async_to_sync_executors is not None
LEGACY_EXECUTOR_CONTEXT_AVAILABLE = (
    context_to_thread_executor is not None
    and async_to_sync_executors is not None
    and CONTEXT_HAS_TOKEN
)
# Whether thread-sensitive calls in a context can be sent to an executor of ours.
EXECUTOR_CONTEXT_AVAILABLE = CONTEXT_TAKES_EXECUTOR or LEGACY_EXECUTOR_CONTEXT_AVAILABLE

# The internals this asgiref lacks, by the names used above; ThreadSensitiveContext(executor=...)
# is public, and missing before 3.13 by design: see CONTEXT_TAKES_EXECUTOR.
MISSING: tuple[str, ...] = tuple(
    name
    for name, found in (
        ("asgiref.sync._restore_context", restore_context is not None),
        ("SyncToAsync.threadlocal", sync_to_async_threadlocal is not None),
        ("AsyncToSync.executors", async_to_sync_executors is not None),
        ("AsyncToSync.loop_thread_executors", loop_thread_executors is not None),
        ("SyncToAsync.thread_sensitive_context", thread_sensitive_context is not None),
        ("SyncToAsync.context_to_thread_executor", context_to_thread_executor is not None),
        ("ThreadSensitiveContext().token", CONTEXT_HAS_TOKEN),
    )
    if not found
)


def context_executor() -> Executor | None:
    """The executor that thread-sensitive calls in the current ThreadSensitiveContext use;
    None outside one, before its first call, or where asgiref does not say."""
    if thread_sensitive_context is None or context_to_thread_executor is None:
        return None
    current = thread_sensitive_context.get(None)
    if current is None:
        return None
    return context_to_thread_executor.get(current)


class LegacyExecutorContext(ThreadSensitiveContext):
    """``ThreadSensitiveContext(executor=...)`` for asgiref before 3.13.

    Older versions look a context's executor up in ``SyncToAsync.context_to_thread_executor``,
    so registering it there works the same way; they also shut it down on exit, which would end
    the request early when the context covers only part of it, so the registration is taken back
    first: the caller owns the executor, as on 3.13. Only for LEGACY_EXECUTOR_CONTEXT_AVAILABLE.
    """

    def __init__(self, executor: Executor) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._given_executor = executor
        self._hidden_executor: Any = None

    async def __aenter__(self) -> ThreadSensitiveContext:
        assert context_to_thread_executor is not None and async_to_sync_executors is not None
        await super().__aenter__()  # type: ignore[no-untyped-call]
        if self.token is not None:
            context_to_thread_executor[self] = self._given_executor
            # As asgiref 3.13 does: an enclosing async_to_sync's thread would take precedence.
            self._hidden_executor = getattr(async_to_sync_executors, "current", None)
            async_to_sync_executors.current = None
        return self

    async def __aexit__(self, exc: object, value: object, tb: object) -> None:
        assert context_to_thread_executor is not None and async_to_sync_executors is not None
        if self.token is not None:
            async_to_sync_executors.current = self._hidden_executor
            context_to_thread_executor.pop(self, None)
        await super().__aexit__(exc, value, tb)  # type: ignore[no-untyped-call]
