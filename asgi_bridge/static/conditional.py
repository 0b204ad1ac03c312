"""Validators and conditional requests (RFC 9110, sections 8.8 and 13): ETag, Last-Modified,
If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since, evaluated in the RFC's order.
"""

from __future__ import annotations

import re

from django.utils.http import http_date, parse_http_date_safe

# An entity tag in a list, weak or strong; what lies between tags (commas, spaces) is skipped.
ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def entity_tag(modified: int, size: int) -> str:
    """A file's strong ETag from its modification time (seconds) and size, as nginx makes it,
    so that servers of one deployment agree on it and nginx's tags stay valid after a move."""
    return f'"{modified:x}-{size:x}"'


def last_modified(modified: int) -> str:
    return http_date(modified)


def parse_entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """The (weak, opaque tag) pairs of an If-Match or If-None-Match value; None for ``*``."""
    if value.strip() == "*":
        return None
    return [(bool(weak), tag) for weak, tag in ENTITY_TAG.findall(value)]


def strong_match(value: str, etag: str) -> bool:
    """Whether a list of tags holds ``etag`` by strong comparison (``*`` holds any)."""
    tags = parse_entity_tags(value)
    if tags is None:
        return True
    opaque = etag[1:-1]
    return any(not weak and tag == opaque for weak, tag in tags)


def weak_match(value: str, etag: str) -> bool:
    """Whether a list of tags holds ``etag`` by weak comparison (``*`` holds any)."""
    tags = parse_entity_tags(value)
    if tags is None:
        return True
    opaque = etag[1:-1]
    return any(tag == opaque for _, tag in tags)


def precondition_status(
    headers: dict[bytes, str], etag: str, modified: int, safe_method: bool
) -> int | None:
    """The status that the request's preconditions call for, or None to go on with it.

    412 when If-Match or If-Unmodified-Since fails, 304 when If-None-Match or If-Modified-Since
    finds the client's copy current (GET and HEAD), in the order of RFC 9110 section 13.2.2.
    ``headers`` holds the request's header values by lowercase name, repeated fields joined.
    """
    if_match = headers.get(b"if-match")
    if if_match is not None:
        if not strong_match(if_match, etag):
            return 412
    else:
        since = headers.get(b"if-unmodified-since")
        if since is not None:
            date = parse_http_date_safe(since)
            if date is not None and modified > date:
                return 412
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        if weak_match(if_none_match, etag):
            return 304 if safe_method else 412
    elif safe_method:
        since = headers.get(b"if-modified-since")
        if since is not None:
            date = parse_http_date_safe(since)
            if date is not None and modified <= date:
                return 304
    return None


def if_range_holds(value: str, etag: str, modified: int) -> bool:
    """Whether If-Range lets a Range apply: its strong ETag is the current one, or its date is
    exactly the current Last-Modified (RFC 9110 section 13.1.5)."""
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return not value.startswith("W/") and value == etag
    date = parse_http_date_safe(value)
    return date is not None and date == modified
