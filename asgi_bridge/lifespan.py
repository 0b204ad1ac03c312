"""The ASGI lifespan protocol: startup and shutdown hooks, and the lifespan state they fill.

Hooks come two ways: the ``startup`` and ``shutdown`` signals of ``asgi_bridge.signals``, and
``ASGI_BRIDGE["LIFESPAN"]``, dotted paths to async context managers (called with no argument,
or with the handler if they take one) whose yielded mapping is merged into the lifespan state.
Servers copy that state into every request's scope, where ``request.state`` reads it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import broadcasting, signals
from .conf import bridge_settings
from .garbage import freeze_startup_objects
from .types import Receive, Scope, Send

if TYPE_CHECKING:
    from .handler import ASGIHandler

logger = logging.getLogger("asgi_bridge")

# The scope extension asgi_bridge.testing's client advertises: a test process, whose objects
# are not frozen out of the garbage collector at startup.
TEST_CLIENT_EXTENSION = "asgi_bridge.testing"
# Seconds the lifespan shutdown gives open event streams to end properly (ASGIHandler.
# end_event_streams): each needs a few loop turns, and a thread visit for a sync source.
EVENT_STREAMS_END_TIMEOUT = 2.0

Hook = Callable[..., AbstractAsyncContextManager[Mapping[str, Any] | None]]


def import_hook(path: str) -> Hook:
    """The hook a LIFESPAN dotted path names, or ImproperlyConfigured saying what is wrong."""
    try:
        hook = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"ASGI_BRIDGE['LIFESPAN'] names {path!r}, which cannot be imported: {error}"
        ) from error
    if not callable(hook):
        raise ImproperlyConfigured(
            f"ASGI_BRIDGE['LIFESPAN'] names {path!r}, which is not callable; it must be an "
            "async context manager function (@contextlib.asynccontextmanager)."
        )
    return cast(Hook, hook)


def takes_handler(hook: Hook) -> bool:
    """Whether a hook wants the handler: it accepts one positional argument."""
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return False
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) == 1


def describe_error(error: BaseException) -> str:
    """The message a lifespan.*.failed event carries: the error's type and text."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Lifespan:
    """One application's lifespan: runs its hooks once at startup, unwinds them at shutdown."""

    def __init__(self, handler: ASGIHandler) -> None:
        self.handler = handler
        self.hooks = [(path, import_hook(path)) for path in bridge_settings().lifespan]
        self.state: dict[str, Any] = {}
        self.started = False
        self._exit_stack: AsyncExitStack | None = None
        self._startup_lock: asyncio.Lock | None = None

    async def startup(self, state: dict[str, Any]) -> None:
        """Enter the LIFESPAN hooks in order, then send the startup signal; fill ``state``.

        If any of it fails, the hooks entered so far are exited again before the error is raised.
        """
        stack = AsyncExitStack()
        try:
            for path, hook in self.hooks:
                manager = hook(self.handler) if takes_handler(hook) else hook()
                value = await stack.enter_async_context(manager)
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise TypeError(
                        f"The LIFESPAN hook {path!r} yielded {type(value).__name__}; it must "
                        "yield a mapping of lifespan state, or nothing."
                    )
                state.update(value)
            await signals.startup.asend(sender=self.handler.__class__, state=state)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        self.state = state
        self.started = True

    async def shutdown(self) -> None:
        """End open event streams, wait for after_response() work, send the shutdown signal,
        exit hooks in reverse."""
        stack, self._exit_stack = self._exit_stack, None
        try:
            await self.handler.end_event_streams(EVENT_STREAMS_END_TIMEOUT)
            await self.handler.background.drain(bridge_settings().background_shutdown_timeout)
            await signals.shutdown.asend(sender=self.handler.__class__, state=self.state)
        finally:
            try:
                if stack is not None:
                    await stack.aclose()
            finally:
                # Last, once hooks that broadcast are done: unsubscribe from Redis, if used.
                await broadcasting.close()
                self.started = False

    async def start_without_server(self) -> None:
        """For servers without lifespan (daphne): start once, before the first request.

        Shutdown hooks never run on such servers: nothing tells the application it is stopping.
        """
        if self._startup_lock is None:
            self._startup_lock = asyncio.Lock()
        async with self._startup_lock:
            if not self.started:
                logger.debug("No lifespan.startup from the server: running startup hooks now")
                await self.startup({})

    async def serve_startup(self, scope: Scope, state: dict[str, Any]) -> None:
        """Start for a server; then, before it sends requests, freeze what startup left alive."""
        await self.startup(state)
        extensions = scope.get("extensions") or {}
        if bridge_settings().freeze_gc and TEST_CLIENT_EXTENSION not in extensions:
            freeze_startup_objects()

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the server's lifespan events until shutdown."""
        state = scope.get("state")
        if state is None:
            # A server without lifespan state: request.state then reads the handler's copy.
            state = {}
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup = partial(self.serve_startup, scope, state)
                if not await self.answer("startup", startup, send):
                    return
            elif message["type"] == "lifespan.shutdown":
                await self.answer("shutdown", self.shutdown, send)
                return
            else:
                raise ValueError(
                    "Invalid ASGI lifespan message: %r (expected lifespan.startup or "
                    "lifespan.shutdown)" % message["type"]
                )

    async def answer(self, phase: str, run: Callable[[], Awaitable[None]], send: Send) -> bool:
        """Run startup or shutdown and tell the server how it went; False if it failed."""
        try:
            await run()
        except Exception as error:
            logger.exception("ASGI lifespan %s failed", phase)
            await send({"type": f"lifespan.{phase}.failed", "message": describe_error(error)})
            return False
        await send({"type": f"lifespan.{phase}.complete"})
        return True
