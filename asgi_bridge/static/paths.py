"""From a request's path to the name of a file under a root, refusing what no file name has."""

from __future__ import annotations

# Characters no served name may hold: NUL ends a C string early, and a backslash is a separator
# on Windows, so either one in a URL is an attempt to reach another file than the one named.
FORBIDDEN_CHARACTERS = ("\x00", "\\")
DOT_SEGMENTS = frozenset((".", ".."))


class HostilePath(ValueError):
    """A path that tries to step outside the name it gives: a dot segment, NUL or backslash.

    Answered 400: browsers resolve dot segments before sending, so only a hand-made request
    carries one.
    """


def file_name(path: str, prefix: str) -> str | None:
    """The name, relative to the root, of the file that ``path`` asks for under ``prefix``.

    ``path`` is the ASGI scope's, already percent-decoded once by the server; it is not decoded
    again, so ``%2e%2e`` sent double-encoded stays a literal name that no file has. None if the
    path is not under ``prefix`` or cannot name a file that is served: a directory (empty
    segment or trailing slash) or a dotfile. Raises HostilePath for a dot segment, NUL or
    backslash.
    """
    if not path.startswith(prefix):
        return None
    name = path[len(prefix) :]
    if not name:
        return None
    for character in FORBIDDEN_CHARACTERS:
        if character in name:
            raise HostilePath(f"the path holds {character!r}")
    segments = name.split("/")
    for segment in segments:
        if segment in DOT_SEGMENTS:
            raise HostilePath(f"the path holds the segment {segment!r}")
    for segment in segments:
        if not segment or segment[0] == ".":
            return None  # A directory, or a dotfile: neither is served.
    return name
