"""Django system checks for asgi_bridge's configuration (``manage.py check``).

- ``asgi_bridge.E001``: ``ASGI_BRIDGE`` is not a dict, or has a key asgi_bridge does not know.
- ``asgi_bridge.E002``: a key's value is not what the key takes.
- ``asgi_bridge.E003``: ``STATIC_FILES``/``MEDIA_FILES`` without a root or URL to serve.
- ``asgi_bridge.E004``: the ``BROADCAST`` backend cannot be imported or is not installed.
- ``asgi_bridge.W001``: another app's ``runserver`` shadows asgi_bridge's.
- ``asgi_bridge.W002``: a sync middleware with a ``__call__`` of its own.
- ``asgi_bridge.W003``: ``MAX_REQUEST_BODY_SIZE`` refuses bodies ``DATA_UPLOAD_MAX_MEMORY_SIZE``
  allows.
- ``asgi_bridge.W004``: ``STATIC_ROOT`` or ``MEDIA_ROOT`` is not a directory yet.

The handler validates the same settings when it starts, raising ImproperlyConfigured; the checks
report every problem at once, with ids that ``SILENCED_SYSTEM_CHECKS`` can name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import get_commands
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from .chain import middleware_hops_in_async_mode
from .conf import _KEYS, SETTING_NAME, BridgeSettings, parse_settings


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


def check_settings(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every problem of the ``ASGI_BRIDGE`` setting: unknown keys, wrong values, and values
    that contradict each other or other settings."""
    raw = getattr(settings, SETTING_NAME, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return [
            checks.Error(
                f"The {SETTING_NAME} setting must be a dict, not {type(raw).__name__}.",
                id="asgi_bridge.E001",
            )
        ]
    messages: list[checks.CheckMessage] = [
        checks.Error(
            f"Unknown key {key!r} in the {SETTING_NAME} setting.",
            hint=f"Valid keys are: {', '.join(sorted(_KEYS))}.",
            obj=SETTING_NAME,
            id="asgi_bridge.E001",
        )
        for key in sorted(set(raw) - set(_KEYS))
    ]
    for key, (_, validate) in _KEYS.items():
        if key in raw:
            try:
                validate(key, raw[key])
            except ImproperlyConfigured as error:
                messages.append(checks.Error(str(error), obj=SETTING_NAME, id="asgi_bridge.E002"))
    if messages:
        return messages
    config = parse_settings(raw)
    return [
        *file_serving_problems(config),
        *body_size_problems(config),
        *broadcast_problems(config),
    ]


def file_serving_problems(config: BridgeSettings) -> list[checks.CheckMessage]:
    from .static import media_files, static_files

    messages: list[checks.CheckMessage] = []
    for wanted, build, root_setting in (
        (config.static_files, static_files, "STATIC_ROOT"),
        (config.media_files, media_files, "MEDIA_ROOT"),
    ):
        if not wanted:
            continue
        try:
            build(config)
        except ImproperlyConfigured as error:
            messages.append(checks.Error(str(error), obj=SETTING_NAME, id="asgi_bridge.E003"))
            continue
        root = str(getattr(settings, root_setting))
        if not os.path.isdir(root):
            messages.append(
                checks.Warning(
                    f"{root_setting} ({root}) is not a directory, so there is nothing to serve.",
                    hint="Run manage.py collectstatic."
                    if root_setting == "STATIC_ROOT"
                    else f"Create {root}, or set MEDIA_FILES to False.",
                    obj=SETTING_NAME,
                    id="asgi_bridge.W004",
                )
            )
    return messages


def body_size_problems(config: BridgeSettings) -> list[checks.CheckMessage]:
    cap = config.max_request_body_size
    form_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if cap is None or form_limit is None or cap >= form_limit:
        return []
    return [
        checks.Warning(
            f"{SETTING_NAME}['MAX_REQUEST_BODY_SIZE'] ({cap:,} bytes) is below "
            f"DATA_UPLOAD_MAX_MEMORY_SIZE ({form_limit:,} bytes): form posts Django would accept "
            "are answered 413.",
            hint="Raise MAX_REQUEST_BODY_SIZE to at least DATA_UPLOAD_MAX_MEMORY_SIZE, or lower "
            "DATA_UPLOAD_MAX_MEMORY_SIZE to the cap you mean.",
            obj=SETTING_NAME,
            id="asgi_bridge.W003",
        )
    ]


def broadcast_problems(config: BridgeSettings) -> list[checks.CheckMessage]:
    path = config.broadcast.backend_path
    try:
        import_string(path)
    except ImportError as error:
        return [
            checks.Error(
                f"{SETTING_NAME}['BROADCAST']['BACKEND'] cannot be imported: {error}.",
                obj=SETTING_NAME,
                id="asgi_bridge.E004",
            )
        ]
    if path == "asgi_bridge.broadcasting.redis.RedisBackend":
        from .broadcasting import redis as redis_backend

        if redis_backend.redis_import_error is not None:
            return [
                checks.Error(
                    "The Redis broadcast backend needs the redis package, which is not installed.",
                    hint='pip install "asgi-bridge[redis]"',
                    obj=SETTING_NAME,
                    id="asgi_bridge.E004",
                )
            ]
        if not config.broadcast.location:
            return [
                checks.Error(
                    f"{SETTING_NAME}['BROADCAST'] uses Redis but has no LOCATION.",
                    hint="Set it to a URL such as 'redis://127.0.0.1:6379/0'.",
                    obj=SETTING_NAME,
                    id="asgi_bridge.E004",
                )
            ]
    return []
