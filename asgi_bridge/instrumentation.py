"""Running requests through instrumentation that wraps Django's ``ASGIHandler.__call__``.

sentry-sdk's Django integration replaces ``django.core.handlers.asgi.ASGIHandler.__call__`` with
a wrapper that gives each request its own isolation scope, its transaction and its request data,
then calls Django's ``__call__``. asgi_bridge's handler overrides ``__call__``, so that wrapper
would never run, while the integration's other patches (``create_request``, ``get_response``,
...) still would, on the scope every request shares. Django's ``__call__`` ends in
``self.handle()``: the handler calls the wrapper instead of ``handle()``, and the request reaches
asgi_bridge's ``handle()`` through it, whether the wrapper was installed before asgi_bridge was
imported or after the handler was built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.handlers import asgi as django_asgi

# The class asgi_bridge's handler subclasses. Taken now, not looked up on the module for each
# request: Django's test suite run with asgi_bridge swapped in rebinds the module's name to
# asgi_bridge's class, whose __call__ must not be mistaken for a wrapper.
DjangoASGIHandler = django_asgi.ASGIHandler

# How many wrappers deep Django's own __call__ is looked for: sentry-sdk wraps it once.
_SEARCH_DEPTH = 8


def is_django_call(function: object) -> bool:
    """Whether ``function`` is Django's own ``ASGIHandler.__call__``, not a wrapper around it.

    A wrapper made with ``functools.wraps`` copies the name and module, not the globals of the
    module that defined the function.
    """
    return (
        getattr(function, "__globals__", None) is vars(django_asgi)
        and getattr(function, "__name__", None) == "__call__"
    )


def find_django_call(function: object) -> Callable[..., Any] | None:
    """Django's own ``ASGIHandler.__call__``: ``function`` itself, or what it wraps.

    Wrappers keep the function they wrap in ``__wrapped__`` (``functools.wraps``) or in their
    closure (sentry-sdk's); None if it is not found there.
    """
    candidates = [function]
    for _ in range(_SEARCH_DEPTH):
        inner: list[object] = []
        for candidate in candidates:
            if is_django_call(candidate):
                return candidate  # type: ignore[return-value]
            wrapped = getattr(candidate, "__wrapped__", None)
            if wrapped is not None:
                inner.append(wrapped)
            for cell in getattr(candidate, "__closure__", None) or ():
                try:
                    inner.append(cell.cell_contents)
                except ValueError:  # An empty cell.
                    continue
        candidates = [candidate for candidate in inner if callable(candidate)]
        if not candidates:
            break
    return None


# When DjangoASGIHandler.__call__ is not this, instrumentation has wrapped it. If it was wrapped
# before this import and Django's function is not found inside, every request goes through
# whatever __call__ is then: a wrapper, or Django's own, which also ends in handle().
DJANGO_CALL: Callable[..., Any] | None = find_django_call(DjangoASGIHandler.__call__)


def middleware_inside(instance: object) -> object:
    """The middleware itself, when ``instance`` is sentry-sdk's wrapper around it adding
    nothing to ``__call__``; else ``instance``.

    sentry-sdk wraps every middleware (``SentryWrappingMiddleware``). Without
    ``middleware_spans`` its ``__call__`` only calls the middleware's own, so the chain may run
    the middleware in halves (asgi_bridge.chain) and an async view behind it holds no thread.
    With middleware spans on, the wrapper times the whole call, which cannot be split: the
    chain is then kept whole, and Sentry sees the spans it sees under Django's sync chain.
    """
    # The wrapper class takes the middleware's names; its __call__ keeps sentry-sdk's.
    call = vars(type(instance)).get("__call__")
    if not getattr(call, "__qualname__", "").endswith(
        "SentryWrappingMiddleware.__call__"
    ) or not getattr(call, "__module__", "").startswith("sentry_sdk."):
        return instance
    inner = getattr(instance, "_inner", None)
    if inner is None or sentry_middleware_spans():
        return instance
    return inner


def sentry_middleware_spans() -> bool:
    """Whether sentry-sdk's Django integration is active with ``middleware_spans`` on."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
    except ImportError:
        return False
    integration = sentry_sdk.get_client().get_integration(DjangoIntegration)
    return bool(getattr(integration, "middleware_spans", False))
