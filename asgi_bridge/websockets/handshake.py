"""A WebSocket handshake as Django sees it: a GET request, its origin check, and its denial."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host
from django.http.response import HttpResponseBase

from ..conf import bridge_settings
from ..sending import response_headers
from ..types import Scope, Send

# Where the handler puts the connection's WebSocket in the request's scope.
SOCKET_KEY = "asgi_bridge.websocket"
DENIAL_EXTENSION = "websocket.http.response"
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def request_scope(scope: Scope, socket: Any) -> dict[str, Any]:
    """The handshake as an HTTP GET scope for Django, carrying the socket."""
    return {
        **scope,
        "type": "http",
        "method": "GET",
        "scheme": _HTTP_SCHEMES.get(scope.get("scheme", "ws"), "http"),
        SOCKET_KEY: socket,
    }


def origin_allowed(request: HttpRequest) -> bool:
    """Whether the handshake's ``Origin`` may open a socket: the request's own host,
    ``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS`` or ``ASGI_BRIDGE["WEBSOCKET_ALLOWED_ORIGINS"]``.
    A handshake without one (not a browser) is allowed unless
    ``WEBSOCKET_ALLOW_NO_ORIGIN`` is False."""
    config = bridge_settings()
    if not config.websocket_origin_check:
        return True
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return config.websocket_allow_no_origin
    if origin == "null":
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS or origin in config.websocket_allowed_origins:
        return True
    parts = urlsplit(origin)
    if not parts.hostname:
        return False
    for trusted in [*settings.CSRF_TRUSTED_ORIGINS, *config.websocket_allowed_origins]:
        trusted_parts = urlsplit(trusted)
        # CSRF_TRUSTED_ORIGINS' wildcard: "https://*.example.com".
        if (
            trusted_parts.scheme == parts.scheme
            and trusted_parts.netloc.startswith("*.")
            and parts.netloc.endswith(trusted_parts.netloc[1:])
        ):
            return True
    origin_host, _ = split_domain_port(parts.netloc)
    request_host, _ = split_domain_port(request.get_host())
    if origin_host == request_host:
        return True
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    return validate_host(origin_host, allowed_hosts)


async def send_denial(scope: Scope, send: Send, response: HttpResponseBase) -> None:
    """Refuse the handshake with ``response``, where the server can send one; else close,
    which the server answers with 403."""
    if DENIAL_EXTENSION not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1000})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": response.status_code,
            "headers": response_headers(response),
        }
    )
    body = b"" if response.streaming else response.content  # type: ignore[attr-defined]
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
