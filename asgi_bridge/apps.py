"""The asgi_bridge app: installing it makes ``runserver`` serve through asgi_bridge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.management import get_commands


class AsgiBridgeConfig(AppConfig):
    name = "asgi_bridge"
    verbose_name = "asgi_bridge"

    def ready(self) -> None:
        checks.register(check_runserver_not_shadowed)


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
