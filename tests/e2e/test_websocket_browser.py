"""WebSockets in a real browser: two headless Chromium tabs on example_project's chat, uvicorn.

Both tabs open /chat/lobby/, whose page talks to the ``@websocket`` view /ws/chat/lobby/; text
typed into one tab must appear in both, and a message from a ``websockets`` client in the same
room too. Then the same page across two uvicorn processes with broadcast groups on a throwaway
redis-server: a tab on each process, and what is typed on one, or announced by a sync view on
the other, shows on both. Chromium is driven over the DevTools protocol with test_sse_browser's
helpers, runs in its own process group and is stopped by it, passed or failed; a missing Chromium
fails the test.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from . import test_sse_browser
from .conftest import RunningServer, ServerEnvironment, start_server
from .redis_server import start_redis
from .test_sse_browser import DevTools, DevToolsError, open_page

# The fixture: a headless Chromium per test class, stopped by its process group.
devtools = test_sse_browser.devtools

# Generous, for a busy machine: on loopback a message takes milliseconds.
MESSAGES_TIMEOUT = 15.0
POLL_INTERVAL = 0.1
# What the page shows: its connection's status and each message as "user: text".
READ_PAGE = """JSON.stringify({
  status: document.getElementById("status")?.value ?? "",
  messages: Array.from(document.querySelectorAll("#messages li"), (li) => li.textContent),
})"""
FOCUS_INPUT = 'document.getElementById("text").focus()'
CLICK_SEND = 'document.querySelector("#send button").click()'


def evaluate(devtools: DevTools, session: str, expression: str) -> Any:
    """The value of ``expression`` in the page; None while there is no page to evaluate it in."""
    try:
        result = devtools.call(
            "Runtime.evaluate", session_id=session, expression=expression, returnByValue=True
        )["result"]
    except DevToolsError as error:
        # Between navigation and the new document, there is no context to evaluate in.
        if "Cannot find default execution context" in str(error):
            return None
        raise
    return result.get("value")


def read_page(devtools: DevTools, session: str) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(evaluate(devtools, session, READ_PAGE) or "{}")
    return page


def wait_for_page(
    devtools: DevTools, session: str, ready: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Read the page until ``ready(page)`` or MESSAGES_TIMEOUT passes; fail with the last read."""
    deadline = time.monotonic() + MESSAGES_TIMEOUT
    page: dict[str, Any] = {}
    while time.monotonic() < deadline:
        page = read_page(devtools, session)
        if page and ready(page):
            return page
        time.sleep(POLL_INTERVAL)
    raise AssertionError(f"the page did not show {what} in {MESSAGES_TIMEOUT:.0f} s: {page}")


def open_chat(devtools: DevTools, url: str) -> str:
    """Open the chat at ``url`` in a new tab and wait until its WebSocket is open."""
    session = open_page(devtools, url)
    wait_for_page(devtools, session, lambda page: page["status"] == "open", "an open socket")
    return session


def type_and_send(devtools: DevTools, session: str, text: str) -> None:
    """Type ``text`` into the page's input as a user would, then press its Send button."""
    evaluate(devtools, session, FOCUS_INPUT)
    devtools.call("Input.insertText", session_id=session, text=text)
    evaluate(devtools, session, CLICK_SEND)


class TestChatInChromiumOnUvicorn:
    server_name = "uvicorn"

    def test_a_message_typed_in_one_tab_shows_in_both(
        self, server: RunningServer, devtools: DevTools
    ) -> None:
        first = open_chat(devtools, f"{server.base_url}/chat/lobby/")
        second = open_chat(devtools, f"{server.base_url}/chat/lobby/")
        type_and_send(devtools, first, "hello from the first tab <b>")
        expected = "anonymous: hello from the first tab <b>"
        for session in (second, first):
            page = wait_for_page(
                devtools, session, lambda page: expected in page["messages"], repr(expected)
            )
            assert page["messages"] == [expected], page
        # The input was emptied once the message went.
        assert evaluate(devtools, first, 'document.getElementById("text").value') == ""

    def test_tabs_and_a_websockets_client_share_the_room(
        self, server: RunningServer, devtools: DevTools
    ) -> None:
        other = open_chat(devtools, f"{server.base_url}/chat/elsewhere/")
        tab = open_chat(devtools, f"{server.base_url}/chat/shared/")
        url = f"ws://{server.host_header}/ws/chat/shared/"
        with connect(url, open_timeout=MESSAGES_TIMEOUT) as client:
            client.send("hello from a websockets client")
            expected = "anonymous: hello from a websockets client"
            wait_for_page(devtools, tab, lambda page: expected in page["messages"], repr(expected))
            sent = json.loads(client.recv(timeout=MESSAGES_TIMEOUT))
            assert sent == {"user": "anonymous", "text": "hello from a websockets client"}
            type_and_send(devtools, tab, "and hello from the tab")
            answer = json.loads(client.recv(timeout=MESSAGES_TIMEOUT))
            assert answer == {"user": "anonymous", "text": "and hello from the tab"}
        # A room of another name, open all along, heard none of it.
        assert read_page(devtools, other)["messages"] == []


@pytest.fixture(scope="class")
def two_processes(server_environment: ServerEnvironment) -> Iterator[list[RunningServer]]:
    """Two uvicorn processes of example_project, broadcasting through one throwaway Redis."""
    redis_server = start_redis()
    environment = dataclasses.replace(
        server_environment, env={**server_environment.env, "EXAMPLE_REDIS_URL": redis_server.url}
    )
    running: list[RunningServer] = []
    try:
        for _ in range(2):
            running.append(start_server("uvicorn", "127.0.0.1", environment))
        yield running
    finally:
        for server in running:
            server.stop()
        redis_server.stop()


def wait_until_subscribed(servers: list[RunningServer], group: str) -> None:
    """Wait until each server's Redis connection is subscribed to ``group``."""

    def subscribed(server: RunningServer) -> bool:
        response = httpx.get(f"{server.base_url}/probe/broadcast/state/", timeout=MESSAGES_TIMEOUT)
        return group in response.json()["subscribed"]

    deadline = time.monotonic() + MESSAGES_TIMEOUT
    while not all(subscribed(server) for server in servers):
        if time.monotonic() > deadline:
            raise AssertionError(f"not every process subscribed to {group!r}")
        time.sleep(POLL_INTERVAL)


class TestChatInChromiumAcrossTwoUvicornProcesses:
    def test_tabs_on_two_processes_share_the_room(
        self, two_processes: list[RunningServer], devtools: DevTools
    ) -> None:
        a, b = two_processes
        on_a = open_chat(devtools, f"{a.base_url}/chat/across/")
        on_b = open_chat(devtools, f"{b.base_url}/chat/across/")
        # The page says "open" once the socket is accepted; the view joins the room right after,
        # and B's first join also connects B to Redis. Messages sent before that miss B.
        wait_until_subscribed(two_processes, "chat-across")
        type_and_send(devtools, on_a, "typed on process A")
        typed = "anonymous: typed on process A"
        for session in (on_b, on_a):
            wait_for_page(devtools, session, lambda page: typed in page["messages"], repr(typed))
        # A sync view on B speaks in the room with broadcast_sync: A's tab hears it too.
        response = httpx.post(
            f"{b.base_url}/chat/across/announce/",
            data={"text": "announced on process B"},
            timeout=MESSAGES_TIMEOUT,
        )
        assert response.json() == {"announced": "announced on process B"}
        announced = "announcer: announced on process B"
        for session in (on_a, on_b):
            page = wait_for_page(
                devtools, session, lambda page: announced in page["messages"], repr(announced)
            )
            assert page["messages"] == [typed, announced], page
