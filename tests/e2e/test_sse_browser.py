"""Server-sent events in a real browser: headless Chromium on example_project's /sse/ page, uvicorn.

The page's EventSource appends each tick of /sse/clock/ to ``<ol id="events">``; the test opens
it in Chromium, driven over the DevTools protocol, and reads that list until enough ticks have
arrived. Chromium runs in its own process group and is stopped by it, passed or failed; a
missing Chromium fails the test (``scripts/test`` installs Debian's ``chromium`` when it can).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.sync.client import ClientConnection, connect

from .conftest import read_log_tail, stop_process_group

if TYPE_CHECKING:
    from .conftest import RunningServer

CHROMIUM_NAMES = ("chromium", "chromium-browser")
STARTUP_TIMEOUT = 30.0
# Ticks come every 0.3 s; this leaves room for a busy machine.
EVENTS_TIMEOUT = 30.0
POLL_INTERVAL = 0.2
CDP_TIMEOUT = 10.0
# What the page shows: each tick's id and text, and how many connections its EventSource opened.
READ_PAGE = """JSON.stringify({
  ids: Array.from(document.querySelectorAll("#events li"), (li) => li.dataset.id),
  texts: Array.from(document.querySelectorAll("#events li"), (li) => li.textContent),
  connections: Number(document.getElementById("connections")?.value ?? 0),
})"""


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "Chromium is not installed (looked for %s on PATH): the browser test needs it. "
        "Install it with `apt-get install chromium`; scripts/test does so when run as root."
        % ", ".join(CHROMIUM_NAMES)
    )


class DevToolsError(AssertionError):
    """A DevTools command failed; the message holds Chromium's answer."""


class DevTools:
    """A minimal Chrome DevTools protocol client: one command at a time, events ignored."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)

    def call(self, method: str, session_id: str | None = None, **params: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        self._websocket.send(json.dumps(message))
        while True:
            reply = json.loads(self._websocket.recv(timeout=CDP_TIMEOUT))
            if reply.get("id") == message["id"]:
                break
        if "error" in reply:
            raise DevToolsError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result


class Browser:
    """Headless Chromium in its own process group, with a DevTools connection to it."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.log_path = profile.parent / "chromium.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    find_chromium(),
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    f"--user-data-dir={profile}",
                    # 0: Chromium picks a free port and writes it to DevToolsActivePort.
                    "--remote-debugging-port=0",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def devtools_url(self) -> str:
        """The browser's DevTools WebSocket address, once Chromium has written it."""
        active_port = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Chromium exited with code {self.process.returncode}\n{self.log()}")
            lines = active_port.read_text().split() if active_port.exists() else []
            if len(lines) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.1)
        pytest.fail(
            f"Chromium did not open its DevTools port in {STARTUP_TIMEOUT:.0f} s\n{self.log()}"
        )

    def log(self) -> str:
        return f"Chromium log {self.log_path}:\n{read_log_tail(self.log_path)}"

    def stop(self) -> None:
        stop_process_group(self.process, lambda: os.killpg(self.process.pid, signal.SIGTERM))


@pytest.fixture(scope="class")
def devtools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    browser = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        with connect(browser.devtools_url(), max_size=None) as websocket:
            yield DevTools(websocket)
    finally:
        browser.stop()


def open_page(devtools: DevTools, url: str) -> str:
    """Open ``url`` in a new tab; return the DevTools session attached to it."""
    target = devtools.call("Target.createTarget", url=url)["targetId"]
    session: str = devtools.call("Target.attachToTarget", targetId=target, flatten=True)[
        "sessionId"
    ]
    return session


def read_page(devtools: DevTools, session: str) -> dict[str, Any]:
    """What the page shows now; nothing while it is still loading."""
    try:
        result = devtools.call(
            "Runtime.evaluate", session_id=session, expression=READ_PAGE, returnByValue=True
        )["result"]
    except DevToolsError as error:
        # Between navigation and the new document, there is no context to evaluate in.
        if "Cannot find default execution context" in str(error):
            return {}
        raise
    page: dict[str, Any] = json.loads(result.get("value") or "{}")
    return page


def wait_for_ticks(devtools: DevTools, session: str, count: int) -> dict[str, Any]:
    """Read the page until it shows ``count`` ticks or EVENTS_TIMEOUT passes; the last read."""
    deadline = time.monotonic() + EVENTS_TIMEOUT
    page: dict[str, Any] = {}
    while time.monotonic() < deadline:
        page = read_page(devtools, session)
        if len(page.get("ids", [])) >= count:
            break
        time.sleep(POLL_INTERVAL)
    return page


class TestServerSentEventsInChromiumOnUvicorn:
    server_name = "uvicorn"

    def test_page_shows_ticks_as_they_arrive(
        self, server: RunningServer, devtools: DevTools
    ) -> None:
        session = open_page(devtools, f"{server.base_url}/sse/")
        page = wait_for_ticks(devtools, session, 3)
        ids = [int(tick_id) for tick_id in page.get("ids", [])]
        assert len(ids) >= 3, f"fewer than 3 ticks in {EVENTS_TIMEOUT:.0f} s: {page}"
        assert ids == sorted(set(ids)), f"tick ids not increasing: {page}"
        assert page["texts"][0].startswith(f"tick {ids[0]} at "), page
        assert page["connections"] == 1, page

    def test_reconnection_resumes_from_last_event_id(
        self, server: RunningServer, devtools: DevTools
    ) -> None:
        # Each connection ends after 2 ticks; the browser comes back with Last-Event-ID and the
        # clock numbers on from it, so the ticks run on without a gap or a repeat.
        session = open_page(devtools, f"{server.base_url}/sse/?count=2")
        page = wait_for_ticks(devtools, session, 5)
        ids = [int(tick_id) for tick_id in page.get("ids", [])]
        assert ids[:5] == [0, 1, 2, 3, 4], f"ticks did not resume across reconnections: {page}"
        assert page["connections"] >= 3, page
