"""Exceptions asgi_bridge raises, each a subclass of the Django exception it refines."""

from django.core.exceptions import RequestAborted, RequestDataTooBig


class ClientDisconnected(RequestAborted):
    """The server refused a message because the client has gone away."""


class RequestBodyTooLarge(RequestDataTooBig):
    """The request body exceeds ``ASGI_BRIDGE["MAX_REQUEST_BODY_SIZE"]``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"Request body exceeded ASGI_BRIDGE['MAX_REQUEST_BODY_SIZE'] ({limit} bytes)."
        )
