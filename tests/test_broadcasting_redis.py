"""RedisBackend on a real redis-server of this test run: one PUBLISH per broadcast, one
subscription per group per process, messages from other processes in order, groups unsubscribed
when their last member leaves, faults (Redis killed and restarted) logged and survived, Channels
consumers reached through their layer.

"Another process" is a second RedisBackend (its own origin id, its own connections) or a real
second Python process; tests/e2e/test_broadcast_servers.py runs two real uvicorn processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from django.test import SimpleTestCase, override_settings

from asgi_bridge import broadcast, broadcasting
from asgi_bridge.broadcasting import groups
from asgi_bridge.broadcasting.redis import RedisBackend
from asgi_bridge.exceptions import BroadcastError
from asgi_bridge.testing import ASGIClient, WebSocketSession

from .asgi import ServedLikeByAServer
from .e2e.redis_server import RedisServer, start_redis

# A bound on waits that only turns a hang into a failure.
WAIT = 10.0
# HEALTH_CHECK_INTERVAL for HealthCheckTests: many checks pass in a moment.
QUICK_HEALTH_CHECK = 0.05


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.01)


class RedisTestCase(ServedLikeByAServer, SimpleTestCase):
    """A redis-server for the class; ASGI_BRIDGE["BROADCAST"] points at it in each test."""

    redis: ClassVar[RedisServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.redis = start_redis()
        cls.addClassCleanup(cls.redis.stop)

    def setUp(self) -> None:
        settings = override_settings(
            ASGI_BRIDGE={
                "BROADCAST": {
                    "BACKEND": "asgi_bridge.broadcast.RedisBackend",
                    "LOCATION": self.redis.url,
                }
            }
        )
        settings.enable()
        self.addCleanup(settings.disable)

    def backend(self) -> RedisBackend:
        backend = groups()
        assert isinstance(backend, RedisBackend)
        return backend

    @asynccontextmanager
    async def other_process(self) -> AsyncIterator[RedisBackend]:
        """A second process's backend: its own origin and connections to the same Redis."""
        other = RedisBackend(self.redis.url)
        try:
            yield other
        finally:
            await other.close()

    @asynccontextmanager
    async def room(self, name: str, count: int) -> AsyncIterator[list[WebSocketSession]]:
        """``count`` sockets in group ``name`` (tests/urls.py's websocket_room), and the
        backend closed (unsubscribed) at the end, as lifespan shutdown does."""
        client = ASGIClient()
        sockets: list[WebSocketSession] = []
        try:
            for _ in range(count):
                socket = client.websocket(f"/ws/room/{name}/")
                sockets.append(await socket.__aenter__())
                self.assertEqual(await socket.receive_text(), "joined")
            yield sockets
        finally:
            for socket in sockets:
                await socket.close()
            await broadcasting.close()

    def publish_calls(self) -> int:
        with self.redis.client() as client:
            stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_publish", {}).get("calls", 0))


class RedisGroupTests(RedisTestCase):
    async def test_one_publish_and_one_subscription_for_a_group_of_fifty(self) -> None:
        async with self.room("crowd", 50) as sockets:
            self.assertEqual(self.redis.channels(), ["asgi_bridge:crowd"])
            with self.redis.client() as client:
                self.assertEqual(
                    client.pubsub_numsub("asgi_bridge:crowd"), [(b"asgi_bridge:crowd", 1)]
                )
            published = self.publish_calls()
            self.assertEqual(await broadcast("crowd", {"n": 1}), 50)
            self.assertEqual(self.publish_calls(), published + 1)
            for socket in sockets:
                self.assertEqual(await socket.receive_json(), {"n": 1})
                # Its own process's message came back from Redis, and was skipped.
                self.assertTrue(await socket.receive_nothing(0.05))

    async def test_another_processs_broadcasts_arrive_in_order_in_their_frame_types(self) -> None:
        async with self.room("ordered", 3) as sockets, self.other_process() as other:
            for n in range(300):
                await other.broadcast("ordered", f"m{n}")
            await other.broadcast("ordered", b"\x00bytes")
            await other.broadcast("ordered", {"json": ["é"]})
            for socket in sockets:
                self.assertEqual(
                    [await socket.receive_text() for _ in range(300)], [f"m{n}" for n in range(300)]
                )
                self.assertEqual(await socket.receive_bytes(), b"\x00bytes")
                self.assertEqual(await socket.receive_json(), {"json": ["é"]})

    async def test_a_burst_read_at_once_from_redis_reaches_readers_that_keep_up(self) -> None:
        """500 messages published in one pipeline arrive in the subscriber's buffer together,
        far past WEBSOCKET_SEND_QUEUE_SIZE (64): none of the sockets is closed for it."""
        async with self.room("burst", 3) as sockets, self.other_process() as other:
            with self.redis.client() as client, client.pipeline(transaction=False) as pipeline:
                for n in range(500):
                    pipeline.publish(other.channel("burst"), other.payload(str(n)))
                pipeline.execute()
            for socket in sockets:
                received = [await socket.receive_text() for _ in range(500)]
                self.assertEqual(received, [str(n) for n in range(500)])

    async def test_exclude_leaves_the_sender_out(self) -> None:
        async with self.room("chat", 2) as (alice, bob):
            await alice.send("say:hi")
            self.assertEqual(await bob.receive_text(), "hi")
            self.assertTrue(await alice.receive_nothing())

    async def test_a_group_is_unsubscribed_when_its_last_member_leaves(self) -> None:
        async with self.room("short", 2) as (first, second):
            await first.close()
            self.assertEqual(self.redis.channels(), ["asgi_bridge:short"])
            await second.send("leave")
            self.assertEqual(await second.receive_text(), "left")
            await eventually(lambda: self.redis.channels() == [], "the group was unsubscribed")
            self.assertEqual(self.backend().group_count(), 0)

    async def test_groups_that_come_and_go_leave_nothing_behind(self) -> None:
        async with self.room("anchor", 1):
            backend = self.backend()
            client = ASGIClient()
            for n in range(200):
                async with client.websocket(f"/ws/room/passing-{n}/") as socket:
                    self.assertEqual(await socket.receive_text(), "joined")
            await eventually(
                lambda: self.redis.channels() == ["asgi_bridge:anchor"], "only the anchor"
            )
            subscriber = backend.subscriber()
            self.assertEqual(backend.group_count(), 1)
            self.assertEqual(subscriber.wanted, {b"asgi_bridge:anchor"})
            self.assertEqual((subscriber.waiting, subscriber.in_flight), ({}, {}))

    async def test_shutdown_unsubscribes_and_closes_the_connections(self) -> None:
        async with self.room("closing", 2):
            self.assertEqual(self.redis.client_count("pubsub"), 1)
        # room() closed the backend, as lifespan shutdown does.
        self.assertEqual(self.redis.channels(), [])
        self.assertEqual(self.redis.client_count("pubsub"), 0)

    async def test_lifespan_shutdown_closes_the_backend(self) -> None:
        client = ASGIClient()
        async with client.lifespan(), client.websocket("/ws/room/lifespan/") as socket:
            self.assertEqual(await socket.receive_text(), "joined")
            self.assertEqual(self.redis.client_count("pubsub"), 1)
        self.assertEqual(self.redis.client_count("pubsub"), 0)

    async def test_a_sync_view_broadcasts_to_every_process(self) -> None:
        async with self.room("news", 1) as (socket,), self.other_process() as other:
            listener = Listener()
            await other.join("news", listener)
            response = await ASGIClient().get("/announce/news/", {"text": "extra!"})
            self.assertEqual(response.text, "announced")
            self.assertEqual(await socket.receive_text(), "extra!")
            await eventually(lambda: listener.frames == ["extra!"], "the other process got it")


class Listener:
    """A member of a group that keeps what it gets."""

    def __init__(self) -> None:
        self.groups: set[str] = set()
        self.frames: list[str | bytes] = []

    def deliver(self, data: str | bytes) -> bool:
        self.frames.append(data)
        return True


class ManagementCommandTests(RedisTestCase):
    async def test_a_process_without_a_server_broadcasts_with_broadcast_sync(self) -> None:
        """What a management command or a worker does: broadcast_sync() with no event loop."""
        script = (
            "import django; django.setup(); "
            "from django.test.utils import override_settings; "
            "from asgi_bridge import broadcast_sync; "
            f"override_settings(ASGI_BRIDGE={{'BROADCAST': {{'BACKEND': "
            f"'asgi_bridge.broadcast.RedisBackend', 'LOCATION': {self.redis.url!r}}}}}).enable(); "
            "[broadcast_sync('jobs', {'done': n}) for n in range(3)]"
        )
        async with self.room("jobs", 2) as sockets:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script,
                cwd=Path(__file__).resolve().parent.parent,
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            )
            self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
            for socket in sockets:
                self.assertEqual(
                    [await socket.receive_json() for _ in range(3)], [{"done": n} for n in range(3)]
                )


class FaultTests(RedisTestCase):
    """Redis killed under open sockets, then restarted on the same port."""

    async def test_redis_down_and_back(self) -> None:
        async with self.room("survivors", 2) as sockets, self.other_process() as other:
            backend = self.backend()
            listener = Listener()
            await other.join("survivors", listener)
            with self.assertLogs("asgi_bridge", "WARNING") as logs:
                self.redis.kill()
                await eventually(lambda: not backend.subscriber().connected, "the loss was seen")
                # A broadcast while Redis is down reaches this process's members and raises.
                with self.assertRaises(BroadcastError) as failed:
                    await broadcast("survivors", "while down")
                self.assertIn("reached this process's members only", str(failed.exception))
                for socket in sockets:
                    self.assertEqual(await socket.receive_text(), "while down")
                # The sockets stay open; a join meanwhile waits for nothing.
                async with ASGIClient().websocket("/ws/room/late-joiner/") as late:
                    self.assertEqual(await late.receive_text(), "joined")
                self.redis.start()
                await eventually(
                    lambda: (
                        "survivors" in backend.subscribed_groups()
                        and "survivors" in other.subscribed_groups()
                    ),
                    "both processes resubscribed",
                )
                self.assertEqual(await broadcast("survivors", "after"), 2)
            messages = [record.getMessage() for record in logs.records]
            self.assertEqual(sum("Lost the broadcast connection" in each for each in messages), 2)
            self.assertEqual(sum("Reconnected to Redis" in each for each in messages), 2)
            self.assertEqual(sum("Cannot broadcast through Redis" in each for each in messages), 1)
            self.assertEqual(sum("1 broadcasts failed meanwhile" in each for each in messages), 1)
            for socket in sockets:
                self.assertEqual(await socket.receive_text(), "after")
            # The other process lost what was sent while Redis was down, and nothing else.
            await eventually(lambda: listener.frames == ["after"], "the other process got it")
            self.assertEqual(self.redis.channels(), ["asgi_bridge:survivors"])

    async def test_a_sync_broadcast_while_redis_is_down_raises(self) -> None:
        from asgiref.sync import sync_to_async

        from asgi_bridge import broadcast_sync

        async with self.room("sync-down", 1):
            self.redis.kill()
            try:
                with self.assertLogs("asgi_bridge", "WARNING"), self.assertRaises(BroadcastError):
                    await sync_to_async(broadcast_sync)("sync-down", "x")
            finally:
                self.redis.start()


@mock.patch("asgi_bridge.broadcasting.redis.HEALTH_CHECK_INTERVAL", QUICK_HEALTH_CHECK)
class HealthCheckTests(RedisTestCase):
    """The subscribing connection's PINGs, with a short HEALTH_CHECK_INTERVAL."""

    def subscribers(self) -> list[str]:
        """The ids of Redis's subscribing clients."""
        with self.redis.client() as client:
            return [entry["id"] for entry in client.client_list(_type="pubsub")]

    def ping_calls(self) -> int:
        with self.redis.client() as client:
            stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_ping", {}).get("calls", 0))

    async def test_a_quiet_healthy_connection_is_kept(self) -> None:
        """Nothing broadcast for forty intervals: PINGs keep proving the connection alive, and
        it is never dropped."""
        await self.check_kept_while(asyncio.sleep(40 * QUICK_HEALTH_CHECK))

    async def test_a_quiet_healthy_connection_is_kept_by_a_busy_event_loop(self) -> None:
        """The same on an event loop that other work keeps busy, so that every timer wakes
        late: the connection was once dropped when a check woke after twice the interval without
        having sent a PING."""

        async def busy() -> None:
            deadline = time.monotonic() + 40 * QUICK_HEALTH_CHECK
            while time.monotonic() < deadline:
                time.sleep(0.6 * QUICK_HEALTH_CHECK)  # Blocks the loop, as heavy work does.
                await asyncio.sleep(0)

        await self.check_kept_while(busy())

    async def check_kept_while(self, quiet: Coroutine[Any, Any, None]) -> None:
        async with self.room("quiet", 1) as sockets, self.other_process() as other:
            subscribers, pings = self.subscribers(), self.ping_calls()
            self.assertEqual(len(subscribers), 1)
            with self.assertNoLogs("asgi_bridge", "WARNING"):
                await quiet
            self.assertEqual(self.subscribers(), subscribers)
            # Checked again and again: several PINGs went out, and each was answered in time.
            self.assertGreaterEqual(self.ping_calls() - pings, 4)
            self.assertEqual(await other.broadcast("quiet", "still here"), 0)
            self.assertEqual(await sockets[0].receive_text(), "still here")

    async def test_a_frozen_redis_is_given_up_on_and_rejoined_when_it_thaws(self) -> None:
        """A host that keeps the connection open but answers nothing (SIGSTOP): the unanswered
        PING ends the connection, reconnecting waits a bounded time, and when Redis answers
        again the group is subscribed anew on a fresh connection."""
        async with self.room("frozen", 1) as sockets, self.other_process() as other:
            backend = self.backend()
            before = self.subscribers()
            with self.assertLogs("asgi_bridge", "WARNING") as logs:
                self.redis.pause()
                try:
                    await eventually(
                        lambda: not backend.subscriber().connected, "the frozen host given up on"
                    )
                finally:
                    self.redis.resume()
                await eventually(
                    lambda: "frozen" in backend.subscribed_groups(), "subscribed again"
                )
            messages = [record.getMessage() for record in logs.records]
            self.assertIn("did not answer a PING", messages[0])
            self.assertIn("Reconnected to Redis", messages[-1])
            await eventually(
                lambda: len(self.subscribers()) == 1 and self.subscribers() != before,
                "the old connection closed, the new one subscribed",
            )
            self.assertEqual(await other.broadcast("frozen", "thawed"), 0)
            self.assertEqual(await sockets[0].receive_text(), "thawed")


@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}})
class ChannelsInteropTests(RedisTestCase):
    def setUp(self) -> None:
        super().setUp()
        settings = override_settings(
            ASGI_BRIDGE={
                "BROADCAST": {
                    "BACKEND": "asgi_bridge.broadcast.RedisBackend",
                    "LOCATION": self.redis.url,
                    "CHANNEL_LAYER": "default",
                }
            }
        )
        settings.enable()
        self.addCleanup(settings.disable)

    async def test_a_broadcast_reaches_channels_consumers_in_the_group(self) -> None:
        from channels.layers import get_channel_layer  # type: ignore[import-untyped]

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("mixed", channel)
        async with self.room("mixed", 1) as (socket,):
            await broadcast("mixed", {"n": 1})
            self.assertEqual(await socket.receive_json(), {"n": 1})
            self.assertEqual(
                await asyncio.wait_for(layer.receive(channel), WAIT),
                {"type": "broadcast.message", "group": "mixed", "text": '{"n":1}'},
            )
            await broadcast("mixed", b"raw")
            self.assertEqual(
                await asyncio.wait_for(layer.receive(channel), WAIT),
                {"type": "broadcast.message", "group": "mixed", "bytes": b"raw"},
            )
            # A name Channels cannot have is not sent to the layer (nor refused).
            await broadcast("not a channels name!", "x")
