"""Broadcast groups: every member of a group gets the message, in its frame type, from async
and sync code; members leave when they close; a slow reader is closed, not waited for."""

from __future__ import annotations

import asyncio
from typing import Any

from django.test import SimpleTestCase

from asgi_bridge import broadcast, broadcast_sync
from asgi_bridge.broadcasting import encode, groups
from asgi_bridge.testing import ASGIClient

from .asgi import ServedLikeByAServer
from .test_websockets import slow_socket


class GroupTests(ServedLikeByAServer, SimpleTestCase):
    async def test_a_message_reaches_every_other_member_of_its_group_only(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/room/lobby/") as alice,
            client.websocket("/ws/room/lobby/") as bob,
            client.websocket("/ws/room/lobby/") as carol,
            client.websocket("/ws/room/hall/") as dave,
        ):
            for ws in (alice, bob, carol, dave):
                self.assertEqual(await ws.receive_text(), "joined")
            self.assertEqual(groups().member_count("lobby"), 3)
            await alice.send("say:hello")
            self.assertEqual(await bob.receive_text(), "hello")
            self.assertEqual(await carol.receive_text(), "hello")
            # The sender left itself out; the other group heard nothing.
            self.assertTrue(await alice.receive_nothing())
            self.assertTrue(await dave.receive_nothing())
            await bob.send("json:hi")
            for ws in (alice, bob, carol):
                self.assertEqual(await ws.receive_json(), {"said": "hi"})
            await carol.send("bytes:raw")
            for ws in (alice, bob, carol):
                self.assertEqual(await ws.receive_bytes(), b"raw")
            await carol.send("leave")
            self.assertEqual(await carol.receive_text(), "left")
            self.assertEqual(groups().member_count("lobby"), 2)
        # Everyone closed: no group is left behind.
        self.assertEqual(groups().member_count("lobby"), 0)
        self.assertEqual(groups().group_count(), 0)

    async def test_a_sync_view_broadcasts_with_broadcast_sync(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/room/news/") as first,
            client.websocket("/ws/room/news/") as second,
        ):
            for ws in (first, second):
                await ws.receive_text()
            response = await client.get("/announce/news/", {"text": "extra!"})
            self.assertEqual(response.text, "announced")
            self.assertEqual(await first.receive_text(), "extra!")
            self.assertEqual(await second.receive_text(), "extra!")

    async def test_broadcast_to_an_empty_group_reaches_nobody(self) -> None:
        self.assertEqual(await broadcast("nobody-here", "hello"), 0)


class EncodeTests(SimpleTestCase):
    def test_frames(self) -> None:
        self.assertEqual(encode("text"), "text")
        self.assertEqual(encode(b"\x00"), b"\x00")
        self.assertEqual(encode({"n": [1, 2]}), '{"n":[1,2]}')


class DeliverTests(SimpleTestCase):
    """deliver() queues without waiting; a client that does not read is closed with 1013."""

    def test_delivered_messages_are_written_in_order_by_a_task(self) -> None:
        async def scenario() -> list[dict[str, Any]]:
            socket, sent, reading = slow_socket()
            self.assertTrue(socket.deliver("one"))
            self.assertTrue(socket.deliver("two"))
            await asyncio.sleep(0)
            self.assertEqual(sent, [])
            reading.set()
            assert socket._writer is not None
            await socket._writer
            return sent

        self.assertEqual([message["text"] for message in asyncio.run(scenario())], ["one", "two"])

    def test_a_member_that_does_not_read_is_closed_with_1013(self) -> None:
        async def scenario() -> tuple[list[bool], list[dict[str, Any]]]:
            socket, sent, reading = slow_socket()
            with self.assertLogs("asgi_bridge", "WARNING"):
                taken = [socket.deliver(f"m{n}") for n in range(5)]
            reading.set()
            assert socket._writer is not None
            await socket._writer
            return taken, sent

        taken, sent = asyncio.run(scenario())
        # One written at once, two queued (the queue holds 2), then the socket gives up.
        self.assertEqual(taken, [True, True, True, False, False])
        self.assertEqual(
            sent,
            [
                {"type": "websocket.send", "text": "m0"},
                {"type": "websocket.close", "code": 1013, "reason": "Try Again Later"},
            ],
        )


class BurstTests(ServedLikeByAServer, SimpleTestCase):
    """A burst of broadcasts, far past WEBSOCKET_SEND_QUEUE_SIZE, reaches readers that keep up:
    each broadcast gives the sockets' writers a turn before the next is queued."""

    BURST = 500

    async def test_a_burst_from_a_thread_reaches_every_socket_in_order(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/room/burst/") as first,
            client.websocket("/ws/room/burst/") as second,
        ):
            for ws in (first, second):
                self.assertEqual(await ws.receive_text(), "joined")

            def burst() -> None:
                for n in range(self.BURST):
                    broadcast_sync("burst", str(n))

            await asyncio.to_thread(burst)
            for ws in (first, second):
                received = [await ws.receive_text() for _ in range(self.BURST)]
                self.assertEqual(received, [str(n) for n in range(self.BURST)])

    async def test_a_burst_from_async_code_reaches_every_socket_in_order(self) -> None:
        client = ASGIClient()
        async with client.websocket("/ws/room/burst/") as ws:
            self.assertEqual(await ws.receive_text(), "joined")
            for n in range(self.BURST):
                await broadcast("burst", str(n))
            received = [await ws.receive_text() for _ in range(self.BURST)]
            self.assertEqual(received, [str(n) for n in range(self.BURST)])


class SubscriptionTests(ServedLikeByAServer, SimpleTestCase):
    """An event stream subscribed to a group: what WebSockets in the group get, it gets too."""

    async def wait_for_members(self, group: str, count: int) -> None:
        for _ in range(500):
            if groups().member_count(group) == count:
                return
            await asyncio.sleep(0.01)
        self.fail(f"{group} never had {count} members")

    async def test_an_event_stream_gets_the_groups_broadcasts(self) -> None:
        client = ASGIClient()
        response = await client.get("/group-events/news/", stream=True)
        self.assertEqual(response.status_code, 200)
        parts = response.stream()
        async with client.websocket("/ws/room/news/") as socket:
            self.assertEqual(await socket.receive_text(), "joined")
            await self.wait_for_members("news", 2)
            await socket.send("json:extra")
            self.assertEqual(await socket.receive_json(), {"said": "extra"})
            self.assertEqual(await anext(parts), b'data: {"said":"extra"}\n\n')
            await broadcast("news", "plain text")
            self.assertEqual(await anext(parts), b"data: plain text\n\n")
        await self.wait_for_members("news", 1)
        await response.disconnect()
        # The stream's client left: its subscription left the group.
        await self.wait_for_members("news", 0)
        self.assertEqual(groups().group_count(), 0)

    async def test_a_subscriber_that_does_not_keep_up_ends(self) -> None:
        from asgi_bridge.broadcasting import subscribe

        subscription = subscribe("slow", queue_size=2)
        first = asyncio.ensure_future(anext(subscription))
        await self.wait_for_members("slow", 1)
        with self.assertLogs("asgi_bridge", "WARNING"):
            self.assertEqual(await broadcast("slow", "one"), 1)
            self.assertEqual(await first, "one")
            delivered = [await broadcast("slow", f"m{n}") for n in range(4)]
        self.assertEqual(delivered, [1, 1, 0, 0])
        with self.assertRaises(StopAsyncIteration):
            await anext(subscription)
        self.assertEqual(groups().member_count("slow"), 0)
