"""ASGIRequest: a Django request built from an ASGI scope, with upstream's newest fixes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, MutableMapping
from functools import cached_property
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig
from django.core.handlers import asgi as django_asgi

from .exceptions import RequestHeaderInvalid
from .types import Scope

# A cookie header split across several HTTP/2 header fields is rejoined with "; " (RFC 9113 8.2.3);
# every other repeated header is joined with "," (RFC 9110 5.3).
_COOKIE_SEPARATOR = "; "
_HEADER_SEPARATOR = ","


def get_script_prefix(scope: Scope) -> str:
    """The script prefix: ``FORCE_SCRIPT_NAME`` if set, else the scope's ``root_path``."""
    if settings.FORCE_SCRIPT_NAME:
        return str(settings.FORCE_SCRIPT_NAME)
    return scope.get("root_path", "") or ""


def split_script_name(path: str, script_prefix: str) -> tuple[str, str]:
    """Split ``path`` into ``(SCRIPT_NAME, PATH_INFO)``, as Django 6.1 does.

    The prefix is removed only on a path-segment boundary, so ``root_path="/app"`` does not eat
    the start of ``/application/``; a trailing slash on the prefix is ignored for matching.
    """
    prefix = script_prefix.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return script_prefix, path[len(prefix) :]
    return script_prefix, path


def header_meta(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Translate ASGI headers to META keys, joining repeats in one pass (linear in header count)."""
    collected: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin1")
        # Underscores would make "X-Auth_User" indistinguishable from "X-Auth-User" in META.
        if "_" in name:
            continue
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        # HTTP/2 allows only ASCII in header values; latin1 never fails to decode.
        value = raw_value.decode("latin1")
        if key == "HTTP_COOKIE":
            # Some clients end each cookie field with ";", which would leave empty pairs.
            value = value.rstrip("; ")
        collected.setdefault(key, []).append(value)
    return {
        key: (_COOKIE_SEPARATOR if key == "HTTP_COOKIE" else _HEADER_SEPARATOR).join(values)
        for key, values in collected.items()
    }


def address_meta(scope: Scope) -> dict[str, Any]:
    """REMOTE_* and SERVER_* META entries from the scope's ``client`` and ``server``."""
    meta: dict[str, Any] = {}
    client = scope.get("client")
    if client:
        meta["REMOTE_ADDR"] = client[0]
        meta["REMOTE_HOST"] = client[0]
        meta["REMOTE_PORT"] = client[1]
    server = scope.get("server")
    if server:
        port = server[1]
        if port is None:
            # A unix socket has no port (ASGI spec 2.2); use the scheme's default, as a URL would.
            port = 443 if scope.get("scheme") in ("https", "wss") else 80
        meta["SERVER_NAME"] = server[0]
        meta["SERVER_PORT"] = str(port)
    else:
        meta["SERVER_NAME"] = "unknown"
        meta["SERVER_PORT"] = "0"
    return meta


def _is_valid_int(value: object) -> bool:
    try:
        int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    return True


class State:
    """A request's copy of the lifespan state, read and written as attributes.

    ``request.state.http_client`` reads ``scope["state"]["http_client"]``; what a request sets
    stays in its own copy, as the ASGI spec has servers copy the state for each request.
    """

    __slots__ = ("_data",)

    def __init__(self, data: MutableMapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {} if data is None else data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            known = ", ".join(sorted(self._data)) or "nothing"
            raise AttributeError(
                f"request.state has no {name!r}; the lifespan state holds {known}."
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __repr__(self) -> str:
        return f"State({self._data!r})"


class ASGIRequest(django_asgi.ASGIRequest):
    """Django's ASGIRequest, built in one pass over the scope.

    Subclasses Django's class so ``isinstance`` checks in third-party code keep working.
    """

    def __init__(self, scope: Scope, body_file: IO[bytes] | None) -> None:
        self.scope = scope
        self._post_parse_error = False
        self._read_started = False
        self.resolver_match = None
        self.path = scope["path"]
        self.script_name, self.path_info = split_script_name(self.path, get_script_prefix(scope))
        self.method = scope["method"].upper()
        query_string = scope.get("query_string", "")
        if isinstance(query_string, bytes):
            # Invalid UTF-8 raises UnicodeDecodeError: the handler answers 400, as Django does.
            query_string = query_string.decode()
        meta: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "QUERY_STRING": query_string,
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": self.path_info,
            # WSGI-expecting code will need these for a while.
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        meta.update(address_meta(scope))
        meta.update(header_meta(scope.get("headers", ())))
        # Assigned once so that subclasses instrumenting META see a single write.
        self.META = meta
        try:
            self._set_content_type_params(self.META)  # type: ignore[attr-defined]
        except (ValueError, BadRequest) as error:
            # Django 6.0+ refuses a Content-Type longer than MAX_HEADER_LENGTH (6.0 with a
            # ValueError, 6.1 with a BadRequest); its own create_request() lets either through
            # to the server as a 500 and a traceback.
            raise RequestHeaderInvalid(f"Content-Type: {error}") from error
        self._stream = body_file  # type: ignore[assignment]

    @cached_property
    def state(self) -> State:
        """The server's per-request copy of the lifespan state; empty if it gave none."""
        return State(self.scope.get("state"))

    def received_body_size(self) -> int | None:
        """How many body bytes were received, whatever Content-Length said; None if unknown."""
        stream = self._stream
        # The handler's spooled body always seeks, but has no seekable() before Python 3.11.
        spooled = isinstance(stream, tempfile.SpooledTemporaryFile)
        if not (spooled or (hasattr(stream, "seekable") and stream.seekable())):
            return None
        position = stream.tell()
        size = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return size

    @property
    def body(self) -> bytes:
        # CVE-2026-33034 (fixed in Django 5.2.13 and 6.0.4): a missing or understated
        # Content-Length let the whole body into memory past DATA_UPLOAD_MAX_MEMORY_SIZE.
        # Checked here too, on the spooled body's real size, for the earlier 5.2 releases.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if not hasattr(self, "_body") and not self._read_started and limit is not None:
            size = self.received_body_size()
            if size is not None and size > limit:
                raise RequestDataTooBig(
                    "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE."
                )
        declared = self.META.get("CONTENT_LENGTH")
        if hasattr(self, "_body") or declared is None or _is_valid_int(declared):
            return super().body
        # Django ticket #37103: HttpRequest.body passed a malformed CONTENT_LENGTH ("10,20", "abc")
        # to int() unguarded. Read it as 0, like WSGIRequest and MultiPartParser do; the real
        # size of the spooled body is still checked against DATA_UPLOAD_MAX_MEMORY_SIZE.
        self.META["CONTENT_LENGTH"] = "0"
        try:
            return super().body
        finally:
            self.META["CONTENT_LENGTH"] = declared

    def parse_file_upload(self, META: Any, post_data: Any) -> Any:
        # CVE-2026-5766 (fixed in Django 5.2.14 and 6.0.5): an understated Content-Length made
        # MemoryFileUploadHandler keep a large file in memory. The upload handlers are told the
        # received size instead; an absent or zero length still parses as an empty form.
        size = self.received_body_size()
        declared = META.get("CONTENT_LENGTH")
        if size is not None and _is_valid_int(declared) and 0 < int(declared) < size:
            META = {**META, "CONTENT_LENGTH": str(size)}
        return super().parse_file_upload(META, post_data)
