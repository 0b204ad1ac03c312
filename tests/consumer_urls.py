"""A URLconf with Channels consumers beside a WebSocket view, for tests/test_consumers.py."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.urls import path

from . import urls


class RoomConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Joins the room named in the URL; echoes to the sender, or to the whole room."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        if self.room == "closed":
            await self.close()
            return
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        user = self.scope.get("user")
        await self.send_json(
            {
                "room": self.room,
                "user": getattr(user, "username", None) or "anonymous",
                "has_session": "session" in self.scope,
                "cookies": self.scope.get("cookies", {}),
            }
        )

    async def disconnect(self, code: int) -> None:
        if getattr(self, "room", "closed") != "closed":
            await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content.get("to") == "room":
            await self.channel_layer.group_send(
                self.room, {"type": "room.message", "text": content["text"]}
            )
        else:
            await self.send_json({"echo": content["text"]})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"room_message": event["text"]})


urlpatterns = [
    path("ws/rooms/<str:room>/", RoomConsumer.as_asgi()),
    *urls.urlpatterns,
]
