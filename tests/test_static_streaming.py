"""asgi_bridge.static's bodies as a server sees them: ``http.response.pathsend`` where offered,
pieces read without a thread held, a client that leaves mid-file, and a file written while it is
being sent. Driven with raw ASGI messages, to see each one the application sends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from django.test import SimpleTestCase, override_settings

from asgi_bridge.handler import ASGIHandler
from asgi_bridge.static.files import CHUNK_SIZE, SMALL_FILE
from asgi_bridge.types import Message

from .asgi import http_scope

BIG = os.urandom(5 * CHUNK_SIZE + 123)


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class RawStaticTestCase(SimpleTestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="asgi_bridge-static-"))
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        (self.root / "big.bin").write_bytes(BIG)
        (self.root / "small.txt").write_bytes(b"small")
        settings = override_settings(
            STATIC_ROOT=str(self.root), STATIC_URL="/static/", ASGI_BRIDGE={"STATIC_FILES": True}
        )
        settings.enable()
        self.addCleanup(settings.disable)
        self.app = ASGIHandler()

    async def call(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        extensions: dict[str, Any] | None = None,
        on_send: Callable[[Message], Awaitable[None]] | None = None,
        disconnect: asyncio.Event | None = None,
    ) -> list[Message]:
        """The messages the application sends for one request."""
        scope = http_scope(path, method, headers=headers or [], extensions=extensions or {})
        sent: list[Message] = []
        body_given = False

        async def receive() -> Message:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await (disconnect or asyncio.Event()).wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if on_send is not None:
                await on_send(message)

        await asyncio.wait_for(self.app(scope, receive, send), 10)
        return sent


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def complete(messages: list[Message]) -> bool:
    last = messages[-1]
    return last["type"] == "http.response.pathsend" or (
        last["type"] == "http.response.body" and not last.get("more_body", False)
    )


class PathsendTests(RawStaticTestCase):
    async def test_a_large_file_goes_by_path_where_the_server_offers_it(self) -> None:
        messages = await self.call("/static/big.bin", extensions={"http.response.pathsend": {}})
        self.assertEqual(messages[0]["status"], 200)
        self.assertIn((b"content-length", str(len(BIG)).encode()), messages[0]["headers"])
        self.assertEqual(
            messages[1:],
            [{"type": "http.response.pathsend", "path": str((self.root / "big.bin").resolve())}],
        )

    async def test_ranges_small_files_and_head_do_not(self) -> None:
        pathsend = {"http.response.pathsend": {}}
        ranged = await self.call(
            "/static/big.bin", headers=[(b"range", b"bytes=0-9")], extensions=pathsend
        )
        self.assertEqual(body_of(ranged), BIG[:10])
        small = await self.call("/static/small.txt", extensions=pathsend)
        self.assertEqual(body_of(small), b"small")
        head = await self.call("/static/big.bin", method="HEAD", extensions=pathsend)
        self.assertEqual([m["type"] for m in head], ["http.response.start", "http.response.body"])
        self.assertEqual(body_of(head), b"")

    async def test_the_test_client_offers_pathsend_on_request(self) -> None:
        from asgi_bridge.testing import ASGIClient

        response = await ASGIClient(self.app, pathsend=True).get("/static/big.bin")
        self.assertEqual(response.pathsent, str((self.root / "big.bin").resolve()))
        self.assertEqual(response.content, BIG)
        plain = await ASGIClient(self.app).get("/static/big.bin")
        self.assertIsNone(plain.pathsent)
        self.assertEqual(plain.content, BIG)

    async def test_without_pathsend_the_file_goes_in_pieces(self) -> None:
        messages = await self.call("/static/big.bin")
        bodies = [m for m in messages if m["type"] == "http.response.body"]
        self.assertEqual(body_of(messages), BIG)
        self.assertTrue(all(len(m["body"]) <= CHUNK_SIZE for m in bodies))
        self.assertEqual(len(bodies), -(-len(BIG) // CHUNK_SIZE))
        self.assertTrue(complete(messages))


class ChangedFileTests(RawStaticTestCase):
    async def test_a_file_cut_short_while_sent_leaves_the_response_unfinished(self) -> None:
        path = self.root / "big.bin"

        async def truncate_after_first_piece(message: Message) -> None:
            if message["type"] == "http.response.body":
                os.truncate(path, CHUNK_SIZE + 10)

        with self.assertLogs("asgi_bridge", "WARNING") as logs:
            messages = await self.call("/static/big.bin", on_send=truncate_after_first_piece)
        self.assertFalse(complete(messages))
        self.assertIn("changed while it was being sent", logs.output[0])

    async def test_a_file_rewritten_in_place_while_sent_leaves_it_unfinished(self) -> None:
        path = self.root / "big.bin"

        async def rewrite_same_size(message: Message) -> None:
            if message["type"] == "http.response.body" and message["body"][:10] == BIG[:10]:
                with path.open("r+b") as file:
                    file.write(b"X" * 10)
                os.utime(path, (2_000_000_000, 2_000_000_000))

        with self.assertLogs("asgi_bridge", "WARNING"):
            messages = await self.call("/static/big.bin", on_send=rewrite_same_size)
        self.assertFalse(complete(messages))

    async def test_a_file_replaced_by_rename_is_sent_as_it_was_opened(self) -> None:
        path = self.root / "big.bin"

        async def replace(message: Message) -> None:
            if message["type"] == "http.response.start":
                replacement = self.root / "new.bin"
                replacement.write_bytes(b"new")
                os.replace(replacement, path)

        messages = await self.call("/static/big.bin", on_send=replace)
        self.assertTrue(complete(messages))
        self.assertEqual(body_of(messages), BIG)
        # The next request sees the new file.
        self.assertEqual(body_of(await self.call("/static/big.bin")), b"new")

    async def test_pathsend_is_not_used_for_a_file_replaced_since_it_was_opened(self) -> None:
        # Opened and measured, then replaced before the response starts: the path leads to
        # another file now, so the bytes go from the open file.
        path = self.root / "big.bin"
        index = self.app.file_servers.servers[0].index  # type: ignore[union-attr]
        original_open = index.open

        async def open_then_replace(entry: Any, coding: Any) -> Any:
            opened = await original_open(entry, coding)
            replacement = self.root / "new.bin"
            replacement.write_bytes(b"new")
            os.replace(replacement, path)
            return opened

        index.open = open_then_replace  # type: ignore[method-assign]
        messages = await self.call("/static/big.bin", extensions={"http.response.pathsend": {}})
        self.assertNotIn("http.response.pathsend", [m["type"] for m in messages])
        self.assertEqual(body_of(messages), BIG)


class DisconnectTests(RawStaticTestCase):
    async def test_a_client_that_leaves_mid_file_stops_the_reading_and_frees_the_file(self) -> None:
        before = open_descriptors()
        gone = asyncio.Event()
        pieces = 0

        async def leave_after_two_pieces(message: Message) -> None:
            nonlocal pieces
            if message["type"] == "http.response.body":
                pieces += 1
                if pieces == 2:
                    gone.set()
                    await asyncio.sleep(0.5)  # The server is slow to take the rest.

        messages = await self.call(
            "/static/big.bin", on_send=leave_after_two_pieces, disconnect=gone
        )
        self.assertEqual(pieces, 2)
        self.assertFalse(complete(messages))
        self.assertEqual(open_descriptors(), before)

    async def test_every_file_is_closed_after_the_responses(self) -> None:
        before = open_descriptors()
        for headers in ([], [(b"range", b"bytes=0-9,-9")], [(b"if-none-match", b"*")]):
            await self.call("/static/big.bin", headers=headers)
            await self.call("/static/small.txt", headers=headers)
        await self.call("/static/big.bin", extensions={"http.response.pathsend": {}})
        self.assertEqual(open_descriptors(), before)


class NoThreadTests(RawStaticTestCase):
    async def test_many_downloads_at_once_hold_no_request_thread(self) -> None:
        """Two hundred concurrent downloads of a file larger than SMALL_FILE, each held open by
        a slow client: they all progress, and the request threads stay as they were."""
        import threading

        (self.root / "medium.bin").write_bytes(BIG[: SMALL_FILE + 1])
        release = asyncio.Event()
        started = 0

        async def slow(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started += 1
                await release.wait()

        threads_before = {thread.name for thread in threading.enumerate()}
        downloads = [
            asyncio.create_task(self.call("/static/medium.bin", on_send=slow)) for _ in range(200)
        ]
        while started < 200:
            await asyncio.sleep(0.01)
        threads_during = {thread.name for thread in threading.enumerate()}
        release.set()
        results = await asyncio.gather(*downloads)
        self.assertTrue(all(body_of(messages) == BIG[: SMALL_FILE + 1] for messages in results))
        new_threads = threads_during - threads_before
        self.assertFalse(
            [name for name in new_threads if not name.startswith("asgi_bridge static read")],
            new_threads,
        )
