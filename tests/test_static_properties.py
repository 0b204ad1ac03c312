"""Properties of asgi_bridge.static that no list of cases covers, found with Hypothesis: no path
reaches a file outside the root, range parsing always yields parts within the file that add up
to no more than it, and no header value makes the negotiation or the preconditions fail.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgi_bridge.conf import bridge_settings
from asgi_bridge.static import file_servers
from asgi_bridge.static.conditional import precondition_status
from asgi_bridge.static.encodings import choose_coding
from asgi_bridge.static.ranges import Unsatisfiable, parse_range
from asgi_bridge.types import Message

# Pieces hostile paths are made of: separators, dots, encodings the server has decoded or not,
# NUL, backslashes, and the names of the files inside and outside the root.
PATH_PIECES = st.sampled_from(
    [
        "/",
        ".",
        "..",
        "\\",
        "\x00",
        "%2e",
        "%2f",
        "%00",
        "%5c",
        "secret.txt",
        "site.css",
        "css",
        "static",
        "~",
        ":",
    ]
)
HOSTILE_PATHS = st.lists(PATH_PIECES, max_size=12).map("".join)
FILES = {"css/site.css": b"body {}", "index.txt": b"inside"}
SECRET = b"outside the root"


class PathProperties(SimpleTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.directory = Path(tempfile.mkdtemp(prefix="asgi_bridge-static-"))
        cls.addClassCleanup(shutil.rmtree, cls.directory, ignore_errors=True)
        root = cls.directory / "static"
        for name, content in FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        (cls.directory / "secret.txt").write_bytes(SECRET)
        (root / "css/secret.txt").symlink_to(cls.directory / "secret.txt")
        cls.overrides = override_settings(
            STATIC_ROOT=str(root), STATIC_URL="/static/", ASGI_BRIDGE={"STATIC_FILES": True}
        )
        cls.overrides.enable()
        cls.addClassCleanup(cls.overrides.disable)
        servers = file_servers(bridge_settings())
        assert servers is not None
        cls.servers = servers

    def answer(self, path: str) -> tuple[bool, int | None, bytes]:
        """Whether the file servers answered ``path``, with what status and body."""
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "extensions": {}}
        answered = asyncio.run(self.servers(scope, receive, send))
        status = sent[0]["status"] if sent else None
        body = b"".join(message.get("body", b"") for message in sent[1:])
        return answered, status, body

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(HOSTILE_PATHS)
    @example("../secret.txt")
    @example("css/../../secret.txt")
    @example("css/secret.txt")
    def test_no_path_reaches_a_file_outside_the_root(self, tail: str) -> None:
        answered, status, body = self.answer("/static/" + tail)
        if not answered:
            return  # Left to Django, which has no view there: its 404.
        self.assertIn(status, (200, 400))
        if status == 200:
            self.assertIn(body, FILES.values())
        self.assertNotIn(SECRET, body)


class RangeProperties(SimpleTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.text(max_size=60), st.integers(0, 10_000), st.integers(1, 20))
    @example("bytes=0-0,-1", 1, 16)
    @example("bytes=5-,0-4", 10, 16)
    def test_any_header_gives_parts_within_the_file_adding_up_to_no_more(
        self, value: str, size: int, max_ranges: int
    ) -> None:
        try:
            ranges = parse_range(value, size, max_ranges)
        except Unsatisfiable:
            return
        if ranges is None:
            return
        self.assertTrue(1 <= len(ranges) <= max_ranges)
        for part in ranges:
            self.assertTrue(0 <= part.start <= part.end < size, part)
        self.assertLessEqual(sum(part.length for part in ranges), size)

    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, 300), st.integers(0, 300)).map(sorted), min_size=1, max_size=8
        ),
        st.integers(1, 250),
    )
    def test_well_formed_ranges_cover_every_byte_asked_for(
        self, specs: list[list[int]], size: int
    ) -> None:
        value = "bytes=" + ",".join(f"{first}-{last}" for first, last in specs)
        asked = {byte for first, last in specs for byte in range(first, min(last, size - 1) + 1)}
        try:
            ranges = parse_range(value, size, 16)
        except Unsatisfiable:
            self.assertEqual(asked, set())
            return
        assert ranges is not None
        covered = {byte for part in ranges for byte in range(part.start, part.end + 1)}
        self.assertLessEqual(asked, covered)


class HeaderProperties(SimpleTestCase):
    @settings(max_examples=500, deadline=None)
    @given(
        st.text(max_size=80),
        st.dictionaries(st.sampled_from(["br", "gzip", "zstd"]), st.integers(0, 100)),
    )
    def test_any_accept_encoding_chooses_an_offered_variant_or_none(
        self, value: str, sizes: dict[str, int]
    ) -> None:
        chosen = choose_coding(value, sizes)
        self.assertTrue(chosen is None or chosen in sizes)

    @settings(max_examples=500, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(
                [b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"]
            ),
            st.text(max_size=40),
        )
    )
    def test_any_precondition_headers_give_a_status_or_none(
        self, headers: dict[bytes, str]
    ) -> None:
        status = precondition_status(headers, '"5f5e1000-3e8"', 1_600_000_000, True)
        self.assertIn(status, (None, 304, 412))
