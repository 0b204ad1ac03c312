"""Byte ranges (RFC 9110, section 14): parsing Range, and the parts of a 206 response."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

# Parts closer than this are sent as one: a part's own headers cost about as much.
COALESCE_GAP = 80


class Unsatisfiable(ValueError):
    """No range of the request lies within the file: answered 416."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a file, both included, as Content-Range counts them."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(value: str, size: int, max_ranges: int) -> list[ByteRange] | None:
    """The ranges a Range header asks for, in order, overlapping and nearby ones merged.

    None when the header is to be ignored and the whole file sent: it is not a valid ``bytes``
    range set (RFC 9110 lets a server ignore such a header) or it asks for more than
    ``max_ranges`` ranges. Raises Unsatisfiable when none of its ranges lies within the file.
    """
    unit, equals, specs = value.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    ranges: list[ByteRange] = []
    count = 0
    for spec in specs.split(","):
        spec = spec.strip(" \t")
        if not spec:
            continue  # Lists may hold empty elements.
        count += 1
        if count > max_ranges:
            return None
        first, dash, last = spec.partition("-")
        if not dash or not (is_digits(first) or (not first and is_digits(last))):
            return None
        if last and not is_digits(last):
            return None
        if not first:
            suffix = byte_position(last)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(size - suffix, 0), size - 1))
            continue
        start = byte_position(first)
        end = byte_position(last) if last else size - 1
        if last and end < start:
            return None  # An invalid range-spec makes the whole header invalid.
        if start < size:
            ranges.append(ByteRange(start, min(end, size - 1)))
    if count == 0:
        return None
    if not ranges:
        raise Unsatisfiable(f"no range within {size} bytes")
    return coalesce(ranges)


# Past any file's size; longer digit strings are read as this, so that a header of thousands of
# digits costs no big-number arithmetic (and passes Python's int() digit limit).
FAR_BEYOND = 10**18


def byte_position(digits: str) -> int:
    return int(digits) if len(digits) < 19 else FAR_BEYOND


def is_digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge ranges that overlap or lie within COALESCE_GAP of each other, so that the parts
    never add up to more than the file (RFC 9110 lets a server merge them, in any order)."""
    if len(ranges) == 1:
        return ranges
    ordered = sorted(ranges, key=lambda each: each.start)
    merged = [ordered[0]]
    for each in ordered[1:]:
        last = merged[-1]
        if each.start <= last.end + 1 + COALESCE_GAP:
            merged[-1] = ByteRange(last.start, max(last.end, each.end))
        else:
            merged.append(each)
    if len(merged) < len(ranges):
        return merged
    return ranges  # Nothing merged: the order asked for is kept.


class Multipart:
    """The framing of a ``multipart/byteranges`` body: each part's head, and the end."""

    def __init__(self, content_type: str, size: int) -> None:
        self.boundary = secrets.token_hex(16)
        self.content_type = content_type
        self.size = size

    @property
    def header(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def part_head(self, part: ByteRange) -> bytes:
        return (
            f"\r\n--{self.boundary}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Range: {part.content_range(self.size)}\r\n\r\n"
        ).encode("latin-1")

    @property
    def end(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode("latin-1")

    def content_length(self, parts: list[ByteRange]) -> int:
        return sum(len(self.part_head(part)) + part.length for part in parts) + len(self.end)
