"""Drive an ASGI application in-process for the unit tests: scopes, inputs, recorded outputs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.testing import ApplicationCommunicator

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
