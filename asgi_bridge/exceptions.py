"""Exceptions asgi_bridge raises, each a subclass of the Django exception it refines."""

from django.core.exceptions import RequestAborted, RequestDataTooBig


class ClientDisconnected(RequestAborted):
    """The server refused a message because the client has gone away."""


class RequestBodyTimeout(Exception):
    """No part of the request body arrived within ``ASGI_BRIDGE["BODY_RECEIVE_TIMEOUT"]``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"No request body received for {timeout:g} s (ASGI_BRIDGE['BODY_RECEIVE_TIMEOUT'])."
        )


class RequestBodyTooLarge(RequestDataTooBig):
    """The request body exceeds ``ASGI_BRIDGE["MAX_REQUEST_BODY_SIZE"]``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"Request body exceeded ASGI_BRIDGE['MAX_REQUEST_BODY_SIZE'] ({limit} bytes)."
        )
