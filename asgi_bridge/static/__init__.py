"""Static and media files served ahead of Django's middleware, as a good web server serves them.

``ASGI_BRIDGE = {"STATIC_FILES": True}`` serves ``STATIC_URL`` from ``STATIC_ROOT`` (after
``collectstatic``) and ``"MEDIA_FILES": True`` serves ``MEDIA_URL`` from ``MEDIA_ROOT``:

- strong ``ETag`` and ``Last-Modified``; ``If-None-Match``/``If-Modified-Since`` answered 304 and
  ``If-Match``/``If-Unmodified-Since`` 412 (``conditional``);
- ``Range`` answered 206, several ranges as ``multipart/byteranges``, at most
  ``STATIC_MAX_RANGES`` of them; 416 when none fits; ``If-Range`` (``ranges``);
- precompressed variants beside a file (``.br``, ``.zst``, ``.gz``, from ``manage.py
  compress_static``) chosen by ``Accept-Encoding`` (``encodings``);
- hashed names of ``ManifestStaticFilesStorage`` cached for a year as immutable, others for
  ``STATIC_MAX_AGE`` seconds;
- no dot segments, NUL or backslashes (400), no dotfiles, no directories, no links out of the
  root unless ``STATIC_FOLLOW_SYMLINKS`` (``paths``, ``files``);
- bodies from memory for small files, by ``http.response.pathsend`` where the server offers
  it, else read in pieces without blocking the event loop (``responses``, ``files``).

A path that names no file is left to Django, which answers it with the project's 404.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import SETTING_NAME, BridgeSettings, bridge_settings
from ..types import ASGIApp, Receive, Scope, Send
from .files import directory_locator
from .responses import StaticFiles

__all__ = ["DevelopmentStaticFiles", "FileServers", "StaticFiles", "file_servers"]

# Cache-Control of a file whose name carries its content's hash: it never changes.
IMMUTABLE = "public, max-age=31536000, immutable"


class FileServers:
    """The StaticFiles of a project (static, media), tried in turn."""

    def __init__(self, servers: list[StaticFiles]) -> None:
        self.servers = servers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if it is for one of the files served; True if it was."""
        for server in self.servers:
            if await server(scope, receive, send):
                return True
        return False


def url_prefix(setting: str, value: str | None) -> str:
    """The path part of STATIC_URL or MEDIA_URL, which must be a path on this site."""
    if not value:
        raise ImproperlyConfigured(f"{SETTING_NAME} serves files at {setting}, which is not set.")
    parts = urlsplit(value)
    if parts.netloc or not parts.path.startswith("/") or not parts.path.endswith("/"):
        raise ImproperlyConfigured(
            f"{SETTING_NAME} serves files at {setting}, which must be a path on this site such "
            f"as '/static/', not {value!r}."
        )
    return parts.path


def hashed_names() -> frozenset[str]:
    """The names ManifestStaticFilesStorage gave files after their content, if it is used."""
    if "django.contrib.staticfiles" not in settings.INSTALLED_APPS:
        return frozenset()
    from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage

    storage = getattr(staticfiles_storage, "_wrapped", None)
    if storage is None or not isinstance(storage, ManifestFilesMixin):
        storage = staticfiles_storage
    if not isinstance(storage, ManifestFilesMixin):
        return frozenset()
    return frozenset(storage.hashed_files.values())


def static_files(config: BridgeSettings) -> StaticFiles:
    """The StaticFiles for STATIC_URL, from STATIC_ROOT."""
    prefix = url_prefix("STATIC_URL", settings.STATIC_URL)
    if not settings.STATIC_ROOT:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['STATIC_FILES'] serves STATIC_ROOT, which is not set: set it and "
            "run manage.py collectstatic."
        )
    locate = directory_locator(str(settings.STATIC_ROOT), config.static_follow_symlinks)
    hashed = hashed_names()
    others = None if config.static_max_age is None else f"public, max-age={config.static_max_age}"

    def cache_control(name: str) -> str | None:
        return IMMUTABLE if name in hashed else others

    return StaticFiles(
        prefix,
        locate,
        cache_control=cache_control,
        max_ranges=config.static_max_ranges,
        nosniff=settings.SECURE_CONTENT_TYPE_NOSNIFF,
    )


def found_file(name: str) -> str | None:
    """Where the staticfiles finders find ``name`` (the apps' static/ folders and
    STATICFILES_DIRS), as runserver looks for static files in development."""
    from django.contrib.staticfiles import finders

    path = finders.find(name)
    return os.path.realpath(path) if isinstance(path, str) else None


class DevelopmentStaticFiles:
    """An ASGI application that serves STATIC_URL through the staticfiles finders, then hands
    everything else to ``application``: what ``runserver`` serves in DEBUG, in place of
    Django's ASGIStaticFilesHandler, with the same ranges and validators as in production.
    Responses say ``Cache-Control: no-cache``, so that an edited file shows at once."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application
        self.files = StaticFiles(
            url_prefix("STATIC_URL", settings.STATIC_URL),
            found_file,
            cache_control=lambda name: "no-cache",
            max_ranges=bridge_settings().static_max_ranges,
            nosniff=settings.SECURE_CONTENT_TYPE_NOSNIFF,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await self.files(scope, receive, send):
            return
        await self.application(scope, receive, send)


def media_files(config: BridgeSettings) -> StaticFiles:
    """The StaticFiles for MEDIA_URL, from MEDIA_ROOT; uploads may change, so no Cache-Control
    is sent and browsers revalidate with the validators."""
    prefix = url_prefix("MEDIA_URL", settings.MEDIA_URL)
    if not settings.MEDIA_ROOT:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['MEDIA_FILES'] serves MEDIA_ROOT, which is not set."
        )
    return StaticFiles(
        prefix,
        directory_locator(str(settings.MEDIA_ROOT), config.static_follow_symlinks),
        cache_control=lambda name: None,
        max_ranges=config.static_max_ranges,
        nosniff=settings.SECURE_CONTENT_TYPE_NOSNIFF,
    )


def file_servers(config: BridgeSettings) -> FileServers | None:
    """What ASGI_BRIDGE's STATIC_FILES and MEDIA_FILES ask to serve, or None for neither."""
    servers = []
    if config.static_files:
        servers.append(static_files(config))
    if config.media_files:
        servers.append(media_files(config))
    return FileServers(servers) if servers else None
