"""ASGI entry point serving the benchmark project the Channels way, for bench/websockets.py and
bench/broadcast.py.

HTTP goes to Django's own ASGI handler; WebSockets to consumers behind the stack the Channels
tutorial deploys: ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))``. The echo
consumer needs no channel layer and no ``"channels"`` in ``INSTALLED_APPS``; the room consumer
uses the layer the settings configure when ``BENCH_CHANNEL_LAYER`` is set.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

from django.core.asgi import get_asgi_application

# Before anything imports models: get_asgi_application() sets Django up.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Send every message back as it came; connect() accepts by default."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """The Channels tutorial's chat room, listening only: joins the URL's group on connect and
    forwards each ``room.message`` event sent to it (``views.broadcast_channels``)."""

    async def connect(self) -> None:
        self.group_name = self.scope["url_route"]["kwargs"]["name"]
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        await self.send(text_data="joined")

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def room_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [
                        path("ws/echo/", EchoConsumer.as_asgi()),
                        path("ws/room/<str:name>/", RoomConsumer.as_asgi()),
                    ]
                )
            )
        ),
    }
)
