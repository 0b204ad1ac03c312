"""Exceptions asgi_bridge raises, each a subclass of the Django exception it refines."""

from django.core.exceptions import BadRequest, RequestAborted, RequestDataTooBig


class ClientDisconnected(RequestAborted):
    """The server refused a message because the client has gone away."""


class RequestHeaderInvalid(BadRequest):
    """A request header Django cannot parse, such as a ``Content-Type`` past Django's
    ``MAX_HEADER_LENGTH`` (Django 6.0 raises ValueError, 6.1 BadRequest, and neither is caught
    by its create_request()): answered 400, as Django answers a query string that is not
    UTF-8."""


class RequestBodyTimeout(Exception):
    """No part of the request body arrived within ``ASGI_BRIDGE["BODY_RECEIVE_TIMEOUT"]``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"No request body received for {timeout:g} s (ASGI_BRIDGE['BODY_RECEIVE_TIMEOUT'])."
        )


class RequestBodyTooSlow(RequestBodyTimeout):
    """The request body fell below ``ASGI_BRIDGE["BODY_MIN_RATE"]`` bytes a second on average,
    after its grace (``BODY_RECEIVE_TIMEOUT``, or 20 s): a trickle, answered 408 like a gap."""

    def __init__(self, min_rate: int, received: int, elapsed: float) -> None:
        self.min_rate = min_rate
        self.received = received
        self.elapsed = elapsed
        Exception.__init__(
            self,
            f"The request body came at {received / elapsed:.0f} bytes/s on average ({received:,} "
            f"bytes in {elapsed:.1f} s), below {min_rate:,} bytes/s "
            "(ASGI_BRIDGE['BODY_MIN_RATE']).",
        )
        self.timeout = elapsed


class RequestBodyUnstorable(Exception):
    """The request body could not be written to its temporary file (a full disk): answered 503
    with Retry-After, and the partial file deleted."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(
            f"Cannot store the request body in the temporary directory: {error.strerror or error}."
        )


class RequestBodyTooLarge(RequestDataTooBig):
    """The request body exceeds ``ASGI_BRIDGE["MAX_REQUEST_BODY_SIZE"]``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"Request body exceeded ASGI_BRIDGE['MAX_REQUEST_BODY_SIZE'] ({limit} bytes)."
        )


class ThreadUnavailable(Exception):
    """A request got no thread for its sync code: it is answered 503 before Django sees it."""


class ThreadWaitTimeout(ThreadUnavailable):
    """No pooled thread came free within ``ASGI_BRIDGE["THREAD_WAIT_TIMEOUT"]``."""

    def __init__(self, timeout: float, threads: int) -> None:
        self.timeout = timeout
        super().__init__(
            f"No thread came free for {timeout:g} s: all {threads} of ASGI_BRIDGE['THREADS'] "
            "were busy (ASGI_BRIDGE['THREAD_WAIT_TIMEOUT'])."
        )


class ThreadQueueFull(ThreadUnavailable):
    """``ASGI_BRIDGE["THREAD_QUEUE_SIZE"]`` requests were already waiting for a thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(
            f"{size} requests were already waiting for a thread (ASGI_BRIDGE['THREAD_QUEUE_SIZE'])."
        )


class BackgroundQueueFull(Exception):
    """``after_response()`` refused work: ``ASGI_BRIDGE["BACKGROUND_QUEUE_SIZE"]`` jobs wait."""

    def __init__(self, jobs: str, queued: int, queue_size: int) -> None:
        self.jobs = jobs
        self.queue_size = queue_size
        super().__init__(
            f"after_response() refused {jobs}: {queued} jobs already wait to run, and "
            f"ASGI_BRIDGE['BACKGROUND_QUEUE_SIZE'] is {queue_size}. Do the work now or answer "
            "503; if this happens under normal load, raise BACKGROUND_THREADS or "
            "BACKGROUND_QUEUE_SIZE, and move work that must not be lost to a task queue."
        )


class BroadcastError(Exception):
    """A broadcast did not reach the broadcast backend's server (Redis): this process's own
    members have it, other processes' do not."""

    def __init__(self, group: str, location: str, error: BaseException) -> None:
        self.group = group
        self.location = location
        super().__init__(
            f"Broadcast to group {group!r} reached this process's members only: the broadcast "
            f"backend at {location} is unreachable ({error or type(error).__name__}). "
            "Other processes did not get it."
        )
