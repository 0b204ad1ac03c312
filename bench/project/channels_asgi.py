"""ASGI entry point serving the benchmark project the Channels way, for bench/websockets.py.

HTTP goes to Django's own ASGI handler; WebSockets to an echo consumer behind the stack the
Channels tutorial deploys: ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))``.
No channel layer and no ``"channels"`` in ``INSTALLED_APPS``: a consumer needs neither.
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


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]))
        ),
    }
)
