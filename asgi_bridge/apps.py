"""The asgi_bridge app: installing it makes ``runserver`` serve through asgi_bridge."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class AsgiBridgeConfig(AppConfig):
    name = "asgi_bridge"
    verbose_name = "asgi_bridge"

    def ready(self) -> None:
        from .checks import (
            check_middleware_runs_in_halves,
            check_runserver_not_shadowed,
            check_settings,
        )

        checks.register(check_settings)
        checks.register(check_runserver_not_shadowed)
        checks.register(check_middleware_runs_in_halves)
