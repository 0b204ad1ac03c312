"""Channels consumers in the URLconf: the scope they get, channel layers, denial."""

from __future__ import annotations

import json
from importlib.util import find_spec
from unittest import skipIf

from asgiref.testing import ApplicationCommunicator
from django.test import SimpleTestCase, override_settings

from asgi_bridge import get_asgi_application
from asgi_bridge.testing import ASGIClient, WebSocketDenied

from .asgi import ServedLikeByAServer
from .test_chain import STARTPROJECT_MIDDLEWARE
from .test_websockets import TIMEOUT, assert_cancelling_closes_with_1001, websocket_scope

CHANNELS = find_spec("channels") is not None


@skipIf(not CHANNELS, "channels is not installed")
@override_settings(
    ROOT_URLCONF="tests.consumer_urls",
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    MIDDLEWARE=STARTPROJECT_MIDDLEWARE,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "channels",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
)
class ConsumerTests(ServedLikeByAServer, SimpleTestCase):
    async def test_the_consumer_gets_url_route_cookies_session_and_user(self) -> None:
        client = ASGIClient()
        client.cookies["flavour"] = "mint"
        async with client.websocket("/ws/rooms/lobby/") as ws:
            hello = await ws.receive_json()
            self.assertEqual(hello["room"], "lobby")
            self.assertEqual(hello["user"], "anonymous")
            self.assertTrue(hello["has_session"])
            self.assertEqual(hello["cookies"], {"flavour": "mint"})
            await ws.send_json({"text": "hi"})
            self.assertEqual(await ws.receive_json(), {"echo": "hi"})

    async def test_a_group_message_reaches_every_consumer_in_the_room(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/rooms/kitchen/") as first,
            client.websocket("/ws/rooms/kitchen/") as second,
            client.websocket("/ws/rooms/hall/") as elsewhere,
        ):
            for ws in (first, second, elsewhere):
                await ws.receive_json()
            await first.send_json({"to": "room", "text": "dinner"})
            self.assertEqual(await first.receive_json(), {"room_message": "dinner"})
            self.assertEqual(await second.receive_json(), {"room_message": "dinner"})
            self.assertTrue(await elsewhere.receive_nothing())

    async def test_a_consumer_that_closes_before_accepting_denies_the_handshake(self) -> None:
        with self.assertRaises(WebSocketDenied) as denied:
            async with ASGIClient().websocket("/ws/rooms/closed/"):
                pass
        self.assertEqual(denied.exception.status_code, 403)

    async def test_websocket_views_still_work_beside_consumers(self) -> None:
        async with ASGIClient().websocket("/ws/echo/") as ws:
            await ws.send("hello")
            self.assertEqual(await ws.receive_text(), "hello")

    async def test_a_consumer_cancelled_by_the_server_closes_with_1001(self) -> None:
        # As hypercorn cancels the application at the end of its graceful timeout.
        communicator = ApplicationCommunicator(
            get_asgi_application(), websocket_scope("/ws/rooms/lobby/")
        )
        await communicator.send_input({"type": "websocket.connect"})
        self.assertEqual((await communicator.receive_output(TIMEOUT))["type"], "websocket.accept")
        hello = await communicator.receive_output(TIMEOUT)
        self.assertEqual(json.loads(hello["text"])["room"], "lobby")
        await assert_cancelling_closes_with_1001(self, communicator)
