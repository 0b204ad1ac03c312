"""ASGIClient.websocket(): WebSocket sessions in tests, with the client's cookies and login."""

from __future__ import annotations

import threading

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import SimpleTestCase, TestCase, override_settings

from asgi_bridge import WebSocketDisconnect
from asgi_bridge.testing import ASGIClient, SyncWebSocketSession, WebSocketDenied

from .asgi import ServedLikeByAServer

LOOP_THREAD = "asgi_bridge test WebSocket loop"


class WebSocketClientTests(ServedLikeByAServer, SimpleTestCase):
    async def test_echo_of_text_bytes_and_json(self) -> None:
        async with ASGIClient().websocket("/ws/echo/") as ws:
            await ws.send("hello")
            self.assertEqual(await ws.receive_text(), "hello")
            await ws.send(b"\x00\xff")
            self.assertEqual(await ws.receive_bytes(), b"\x00\xff")
            await ws.send_json({"n": 1})
            self.assertEqual(await ws.receive_json(), {"n": 1})

    async def test_subprotocol_and_a_close_from_the_view(self) -> None:
        async with ASGIClient().websocket("/ws/chat/lobby/", subprotocols=["chat.v2"]) as ws:
            self.assertEqual(ws.subprotocol, "chat.v2")
            self.assertEqual(await ws.receive_json(), {"room": "lobby", "subprotocol": "chat.v2"})
            with self.assertRaises(WebSocketDisconnect) as closed:
                await ws.receive()
            self.assertEqual(closed.exception.code, 1000)

    async def test_a_denied_handshake_raises_with_the_response(self) -> None:
        with self.assertRaises(WebSocketDenied) as denied:
            async with ASGIClient().websocket("/ws/denied/"):
                pass
        self.assertEqual(denied.exception.status_code, 403)
        self.assertEqual(denied.exception.content, b"not for you")
        with self.assertRaises(WebSocketDenied) as denied:
            async with ASGIClient().websocket("/"):
                pass
        self.assertEqual(denied.exception.status_code, 404)

    async def test_the_clients_cookies_go_with_the_handshake(self) -> None:
        client = ASGIClient()
        client.cookies["flavour"] = "mint"
        async with client.websocket("/ws/cookie/") as ws:
            self.assertEqual(await ws.receive_text(), "mint")

    async def test_receive_nothing_keeps_what_it_finds(self) -> None:
        async with ASGIClient().websocket("/ws/echo/") as ws:
            self.assertTrue(await ws.receive_nothing())
            await ws.send("late")
            self.assertFalse(await ws.receive_nothing(timeout=5))
            self.assertEqual(await ws.receive_text(), "late")

    async def test_an_error_in_the_view_closes_with_1011(self) -> None:
        with self.assertLogs("django.request", "ERROR"):
            async with ASGIClient().websocket("/ws/fails/") as ws:
                await ws.send("go")
                with self.assertRaises(WebSocketDisconnect) as closed:
                    await ws.receive()
        self.assertEqual(closed.exception.code, 1011)


@override_settings(
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
)
class LoginTests(TestCase):
    """force_login(), login() and logout() on ASGIClient, for HTTP and WebSockets alike; and the
    TestCase's rows are visible to the socket's view (it runs inside the test's transaction)."""

    async def whoami(self, client: ASGIClient) -> tuple[str, str]:
        response = await client.get("/whoami/")
        async with client.websocket("/ws/whoami/") as ws:
            over_websocket = await ws.receive_text()
        return response.text, over_websocket

    async def test_force_login_login_and_logout(self) -> None:
        user = await User.objects.acreate_user("ada", password="lovelace")
        client = ASGIClient()
        self.assertEqual(await self.whoami(client), ("anonymous", "anonymous"))
        await client.aforce_login(user)
        self.assertEqual(await self.whoami(client), ("ada", "ada"))
        await client.alogout()
        self.assertEqual(await self.whoami(client), ("anonymous", "anonymous"))
        self.assertTrue(await client.alogin(username="ada", password="lovelace"))
        self.assertEqual(await self.whoami(client), ("ada", "ada"))
        self.assertFalse(await client.alogin(username="ada", password="wrong"))

    def test_sync_force_login(self) -> None:
        user = User.objects.create_user("grace")
        client = ASGIClient()
        client.force_login(user)
        self.assertEqual(async_to_sync(self.whoami)(client), ("grace", "grace"))


class SyncSessionTests(ServedLikeByAServer, SimpleTestCase):
    """``with client.websocket(...)``: the same session for sync test code."""

    def test_echo_of_text_bytes_and_json(self) -> None:
        with ASGIClient().websocket("/ws/echo/") as ws:
            self.assertIsInstance(ws, SyncWebSocketSession)
            ws.send("hello")
            self.assertEqual(ws.receive_text(), "hello")
            ws.send(b"\x00\xff")
            self.assertEqual(ws.receive_bytes(), b"\x00\xff")
            ws.send_json({"n": 1})
            self.assertEqual(ws.receive_json(), {"n": 1})
            self.assertTrue(ws.receive_nothing())
        self.assertTrue(ws.closed)

    def test_subprotocol_and_a_close_from_the_view(self) -> None:
        with ASGIClient().websocket("/ws/chat/lobby/", subprotocols=["chat.v2"]) as ws:
            self.assertEqual(ws.subprotocol, "chat.v2")
            self.assertEqual(ws.receive_json(), {"room": "lobby", "subprotocol": "chat.v2"})
            with self.assertRaises(WebSocketDisconnect) as closed:
                ws.receive()
            self.assertEqual(closed.exception.code, 1000)
            self.assertEqual(ws.close_code, 1000)

    def loop_threads(self) -> list[threading.Thread]:
        return [each for each in threading.enumerate() if each.name == LOOP_THREAD]

    def test_a_denied_handshake_raises_and_leaves_no_thread(self) -> None:
        with self.assertRaises(WebSocketDenied) as denied, ASGIClient().websocket("/ws/denied/"):
            pass
        self.assertEqual(denied.exception.status_code, 403)
        self.assertEqual(denied.exception.content, b"not for you")
        self.assertEqual(self.loop_threads(), [])

    def test_an_error_in_the_test_still_closes_the_socket(self) -> None:
        with self.assertRaises(ZeroDivisionError), ASGIClient().websocket("/ws/echo/") as ws:
            self.assertEqual(len(self.loop_threads()), 1)
            ws.send("hi")
            1 / 0
        self.assertTrue(ws.closed)
        self.assertEqual(self.loop_threads(), [])

    def test_broadcast_between_two_sync_sessions(self) -> None:
        client = ASGIClient()
        with client.websocket("/ws/room/sync/") as first:
            self.assertEqual(first.receive_text(), "joined")
            with client.websocket("/ws/room/sync/") as second:
                self.assertEqual(second.receive_text(), "joined")
                second.send("say:hello")
                self.assertEqual(first.receive_text(), "hello")
                self.assertTrue(second.receive_nothing())


@override_settings(
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
)
class SyncSessionInATestCaseTests(TestCase):
    """A plain TestCase: the socket's view sees the rows the test created in its transaction
    (the logged-in user, a count), because its sync code runs on the test's thread."""

    def test_the_view_sees_the_test_cases_rows(self) -> None:
        user = User.objects.create_user("hedy")
        client = ASGIClient()
        client.force_login(user)
        with client.websocket("/ws/whoami/") as ws:
            self.assertEqual(ws.receive_text(), "hedy")
        with client.websocket("/ws/count-users/") as ws:
            self.assertEqual(ws.receive_json(), {"users": 1, "thread": threading.get_ident()})


def test_a_websocket_through_the_asgi_client_fixture(asgi_client: ASGIClient) -> None:
    async def echo() -> str:
        async with asgi_client.websocket("/ws/echo/") as ws:
            await ws.send("through the fixture")
            return await ws.receive_text()

    assert async_to_sync(echo)() == "through the fixture"
