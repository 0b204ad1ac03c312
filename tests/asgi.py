"""Drive an ASGI application in-process for the unit tests: scopes, inputs, recorded outputs."""

from __future__ import annotations

import asyncio
import functools
import inspect
import unittest
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import AsyncToSync
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started

from asgi_bridge.types import Message, Scope


def http_scope(path: str = "/", method: str = "GET", **extra: Any) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


async def collect_response(communicator: ApplicationCommunicator) -> list[Message]:
    """Read messages until the response is complete."""
    messages = [await communicator.receive_output(timeout=5)]
    while True:
        message = await communicator.receive_output(timeout=5)
        messages.append(message)
        if message["type"] == "http.response.pathsend" or not message.get("more_body", False):
            return messages


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


class ScriptedReceive:
    """A ``receive`` that replays messages, then waits (like a client that stays connected)."""

    def __init__(self, *messages: Message) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class RecordingSend:
    """A ``send`` that records messages and can fail like a server whose client has gone."""

    def __init__(self, fail_on: Callable[[Message], BaseException | None] | None = None) -> None:
        self.messages: list[Message] = []
        self.fail_on = fail_on

    async def __call__(self, message: Message) -> None:
        if self.fail_on is not None and (error := self.fail_on(message)) is not None:
            raise error
        self.messages.append(message)


Receive = Callable[[], Awaitable[Message]]


def served_like_by_a_server(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Run an async test's requests as a server would, on the handler's pooled threads.

    Django runs async test methods inside async_to_sync, and there, as Django's own handler
    does, asgi_bridge runs a request's sync code on the test's thread (inside its database
    transaction). Servers never call the application that way; hiding the waiting thread from
    the event loop lets these tests see what happens under a server.
    """

    @functools.wraps(method)
    async def run(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        caller = AsyncToSync.loop_thread_executors.pop(loop, None)
        try:
            return await method(*args, **kwargs)
        finally:
            if caller is not None:
                AsyncToSync.loop_thread_executors[loop] = caller

    return run


class ServedLikeByAServer:
    """A test case mixin: every async test method runs ``served_like_by_a_server``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if name.startswith("test") and inspect.iscoroutinefunction(value):
                setattr(cls, name, served_like_by_a_server(value))


async def started_lifespan(application: Any, state: dict[str, Any] | None = None) -> Any:
    """Run the lifespan startup of ``application``; return the communicator to shut it down."""
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    scope["state"] = {} if state is None else state
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "lifespan.startup"})
    message = await communicator.receive_output(timeout=5)
    if message != {"type": "lifespan.startup.complete"}:
        raise AssertionError(f"lifespan startup answered {message!r}")
    return communicator


def record_signals(test: unittest.TestCase) -> list[str]:
    """ "started" and "finished" for each request_started and request_finished, in order, for
    as long as ``test`` runs."""
    seen: list[str] = []

    def started(**kwargs: object) -> None:
        seen.append("started")

    def finished(**kwargs: object) -> None:
        seen.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    test.addCleanup(request_started.disconnect, started)
    test.addCleanup(request_finished.disconnect, finished)
    return seen
