"""Django system checks for asgi_bridge's configuration (``manage.py check``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks
from django.core.management import get_commands
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from .chain import middleware_hops_in_async_mode


def check_runserver_not_shadowed(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn when an app listed before asgi_bridge provides the ``runserver`` that Django runs."""
    if not apps.is_installed("asgi_bridge"):
        return []
    # Django takes each command from the first app in INSTALLED_APPS that provides it.
    provider = get_commands().get("runserver")
    if provider in (None, "asgi_bridge"):
        return []
    return [
        checks.Warning(
            f"runserver is {provider}'s, not asgi_bridge's: it does not serve through asgi_bridge.",
            hint=f"Put 'asgi_bridge' before {provider!r} in INSTALLED_APPS.",
            id="asgi_bridge.W001",
        )
    ]


def check_middleware_runs_in_halves(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn about sync middleware that asgi_bridge cannot split around an async view.

    asgi_bridge runs a sync chain's MiddlewareMixin halves (process_request, process_response)
    in short visits to a thread, and awaits an async view between them with no thread held. A
    middleware with a ``__call__`` of its own runs the rest of the chain inside that call, so
    its thread waits for every async view behind it.
    """
    paths = list(settings.MIDDLEWARE)
    if not middleware_hops_in_async_mode(paths):
        return []  # Django's async chain serves them: no sync chain to split.
    warnings: list[checks.CheckMessage] = []
    for path in paths:
        middleware = import_string(path)
        if (
            isinstance(middleware, type)
            and issubclass(middleware, MiddlewareMixin)
            and middleware.__call__ is MiddlewareMixin.__call__
        ):
            continue
        warnings.append(
            checks.Warning(
                f"{path} has a __call__ of its own, which asgi_bridge cannot split: every async "
                "view, async stream and server-sent events response behind it holds a pooled "
                "thread (ASGI_BRIDGE['THREADS']) for as long as it awaits.",
                hint="Write it as a django.utils.deprecation.MiddlewareMixin subclass with "
                "process_request()/process_response() hooks, and no __call__ of its own.",
                obj=path,
                id="asgi_bridge.W002",
            )
        )
    return warnings
