"""ASGIClient.websocket(): WebSocket sessions in tests, with the client's cookies."""

from __future__ import annotations

from django.test import SimpleTestCase

from asgi_bridge import WebSocketDisconnect
from asgi_bridge.testing import ASGIClient, WebSocketDenied

from .asgi import ServedLikeByAServer


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
