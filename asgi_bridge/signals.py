"""Signals sent at ASGI lifespan startup and shutdown.

Receivers get ``sender`` (the handler class) and ``state``, the lifespan state dict: what a
startup receiver puts there is copied into every request's ``request.state``. Async receivers
run on the event loop; sync receivers run in a thread, off it, as ``Signal.asend`` does.
"""

from django.dispatch import Signal

startup = Signal()
shutdown = Signal()

__all__ = ["shutdown", "startup"]
