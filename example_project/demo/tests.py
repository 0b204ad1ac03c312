"""Tests for the demo views, run through Django's test client (no ASGI server involved).

They pin down the URL contract the end-to-end tests rely on, so a failure here means the
example project is wrong, not asgi_bridge.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, SimpleTestCase, TestCase, override_settings

from asgi_bridge import WebSocketDisconnect
from asgi_bridge.broadcasting import groups
from asgi_bridge.testing import ASGIClient
from demo import views
from demo.bigfile import BIG_FILE_SIZE, big_file_bytes, ensure_big_file
from demo.models import Item
from demo.probes import PROBES

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def events_for(token: str) -> list[list[Any]]:
    return [event for event in PROBES.snapshot()["events"] if event[1] == token]


class HelloTests(SimpleTestCase):
    def test_async_view(self) -> None:
        response = self.client.get("/hello/async/")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("text/plain"))
        self.assertEqual(response.content, b"Hello from an async view")

    def test_sync_view(self) -> None:
        response = self.client.get("/hello/sync/")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("text/plain"))
        self.assertEqual(response.content, b"Hello from a sync view")


class PageTests(TestCase):
    def test_index_links_to_features(self) -> None:
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        for path in ["/hello/async/", "/items/", "/form/", "/upload/", "/stream/async/"]:
            self.assertContains(response, f'href="{path}')
        self.assertContains(response, "/static/demo/style.css")

    def test_item_list_shows_seeded_items(self) -> None:
        response = self.client.get("/items/")
        self.assertContains(response, "Teapot")
        self.assertContains(response, "Kite")

    def test_item_count_is_one_query(self) -> None:
        with self.assertNumQueries(1):
            response = self.client.get("/items/count/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, b"5")

    def test_item_json_is_one_query(self) -> None:
        with self.assertNumQueries(1):
            response = self.client.get("/items/json/")
        self.assertEqual(response.status_code, 200)
        items = response.json()["items"]
        self.assertEqual(
            [item["name"] for item in items], ["Teapot", "Lantern", "Compass", "Notebook", "Kite"]
        )
        self.assertTrue(all(set(item) == {"id", "name"} for item in items))
        self.assertTrue(all(isinstance(item["id"], int) for item in items))

    def test_admin_requires_login(self) -> None:
        response = self.client.get("/admin/")
        self.assertEqual(response.status_code, 302)
        self.assertIn("/admin/login/", response["Location"])


class ItemScratchTests(TestCase):
    """The soak's ORM writes: a row created and deleted, so the table stays as seeded."""

    def test_each_post_writes_a_new_row_and_removes_it(self) -> None:
        for path in ["/items/scratch/sync/", "/items/scratch/async/"]:
            with self.subTest(path=path):
                ids = []
                for _ in range(2):
                    response = self.client.post(path, {"name": "scratch"})
                    self.assertEqual(response.status_code, 200)
                    ids.append(int(response.content))
                self.assertLess(ids[0], ids[1])
                self.assertFalse(Item.objects.filter(pk__in=ids).exists())
                self.assertEqual(Item.objects.count(), 5)

    def test_sync_write_is_one_transaction(self) -> None:
        # SAVEPOINT, INSERT, DELETE, RELEASE (the test's own transaction surrounds it).
        with self.assertNumQueries(4):
            self.client.post("/items/scratch/sync/", {"name": "scratch"})

    def test_get_is_refused_and_csrf_applies(self) -> None:
        for path in ["/items/scratch/sync/", "/items/scratch/async/"]:
            with self.subTest(path=path):
                self.assertEqual(self.client.get(path).status_code, 405)
                strict = Client(enforce_csrf_checks=True)
                self.assertEqual(strict.post(path, {"name": "x"}).status_code, 403)


class FormTests(SimpleTestCase):
    def setUp(self) -> None:
        self.client = Client(enforce_csrf_checks=True)

    def csrf_token_from_page(self, path: str) -> str:
        response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        match = CSRF_INPUT.search(response.content.decode())
        assert match is not None, "page has no csrfmiddlewaretoken input"
        return match.group(1)

    def test_form_page_has_csrf_and_name_field(self) -> None:
        response = self.client.get("/form/")
        self.assertRegex(response.content.decode(), CSRF_INPUT)
        self.assertContains(response, 'name="name"')

    def test_post_with_token_thanks_with_escaped_name(self) -> None:
        token = self.csrf_token_from_page("/form/")
        response = self.client.post("/form/", {"name": "<b>Ada</b>", "csrfmiddlewaretoken": token})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Thanks, &lt;b&gt;Ada&lt;/b&gt;!")

    def test_post_without_token_is_forbidden(self) -> None:
        self.client.get("/form/")
        with self.assertLogs("django.security.csrf", "WARNING"):
            response = self.client.post("/form/", {"name": "Ada"})
        self.assertEqual(response.status_code, 403)

    def test_post_with_wrong_token_is_forbidden(self) -> None:
        self.client.get("/form/")
        with self.assertLogs("django.security.csrf", "WARNING"):
            response = self.client.post("/form/", {"name": "Ada", "csrfmiddlewaretoken": "x" * 64})
        self.assertEqual(response.status_code, 403)


class UploadTests(SimpleTestCase):
    def setUp(self) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.client.get("/upload/")  # sets the csrftoken cookie
        self.csrf_headers = {"X-CSRFToken": self.client.cookies["csrftoken"].value}

    def test_upload_page_is_multipart_form(self) -> None:
        response = self.client.get("/upload/")
        self.assertContains(response, 'enctype="multipart/form-data"')
        self.assertContains(response, 'name="file"')
        self.assertRegex(response.content.decode(), CSRF_INPUT)

    def test_upload_returns_name_size_and_digest(self) -> None:
        data = bytes(range(256)) * 5000
        upload = SimpleUploadedFile("numbers.bin", data)
        response = self.client.post("/upload/", {"file": upload}, headers=self.csrf_headers)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.json(),
            {"name": "numbers.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        )

    def test_upload_without_file_is_400(self) -> None:
        with self.assertLogs("django.request", "WARNING"):
            response = self.client.post("/upload/", {}, headers=self.csrf_headers)
        self.assertEqual(response.status_code, 400)
        self.assertIn("error", response.json())

    def test_upload_without_csrf_is_forbidden(self) -> None:
        upload = SimpleUploadedFile("a.txt", b"a")
        with self.assertLogs("django.security.csrf", "WARNING"):
            response = self.client.post("/upload/", {"file": upload})
        self.assertEqual(response.status_code, 403)


class BodyTests(SimpleTestCase):
    def setUp(self) -> None:
        # The echo views are csrf_exempt, so they must work even with checks enforced.
        self.client = Client(enforce_csrf_checks=True)

    def test_echo_returns_body(self) -> None:
        body = b"\x00binary\xffbody" * 100
        response = self.client.post("/echo/", body, content_type="application/octet-stream")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/octet-stream")
        self.assertEqual(response.content, body)

    def test_echo_digest_reads_whole_body(self) -> None:
        body = bytes(range(256)) * 4000  # several read() chunks
        response = self.client.post("/echo/digest/", body, content_type="application/octet-stream")
        self.assertEqual(
            response.json(), {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        )

    def test_echo_digest_of_empty_body(self) -> None:
        response = self.client.post("/echo/digest/", b"", content_type="application/octet-stream")
        self.assertEqual(response.json(), {"size": 0, "sha256": hashlib.sha256(b"").hexdigest()})

    def test_echo_rejects_get(self) -> None:
        with self.assertLogs("django.request", "WARNING"):
            response = self.client.get("/echo/")
        self.assertEqual(response.status_code, 405)


class MetaTests(SimpleTestCase):
    KEYS = {
        "method", "path", "path_info", "script_name", "query_string", "remote_addr",
        "remote_port", "server_name", "server_port", "scheme", "host", "headers", "get",
        "cookies",
    }  # fmt: skip

    def test_meta_describes_request(self) -> None:
        self.client.cookies["flavour"] = "oat"
        response = self.client.get("/meta/?a=1&a=2&b=3", headers={"X-Demo": "yes"})
        self.assertEqual(response.status_code, 200)
        meta = response.json()
        self.assertEqual(set(meta), self.KEYS)
        self.assertEqual(meta["method"], "GET")
        self.assertEqual(meta["path"], "/meta/")
        self.assertEqual(meta["path_info"], "/meta/")
        self.assertEqual(meta["query_string"], "a=1&a=2&b=3")
        self.assertEqual(meta["get"], {"a": ["1", "2"], "b": ["3"]})
        self.assertEqual(meta["headers"]["X-Demo"], "yes")
        self.assertEqual(meta["cookies"], {"flavour": "oat"})
        self.assertEqual(meta["host"], "testserver")
        self.assertEqual(meta["scheme"], "http")
        self.assertIsInstance(meta["remote_port"], str)

    def test_meta_accepts_any_method_without_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        for method in ["post", "put", "delete", "patch"]:
            with self.subTest(method=method):
                response = getattr(client, method)("/meta/")
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.json()["method"], method.upper())


class StreamTests(SimpleTestCase):
    EXPECTED = b"".join(f"chunk {i}\n".encode() for i in range(5))

    def test_sync_stream(self) -> None:
        response = self.client.get("/stream/sync/?n=5&delay=0")
        self.assertTrue(response.streaming)
        self.assertFalse(response.is_async)
        self.assertEqual(b"".join(response.streaming_content), self.EXPECTED)

    async def test_async_stream(self) -> None:
        response = await self.async_client.get("/stream/async/?n=5&delay=0")
        self.assertTrue(response.streaming)
        self.assertTrue(response.is_async)
        self.assertEqual(
            b"".join([part async for part in response.streaming_content]), self.EXPECTED
        )

    def test_stream_defaults_to_five_chunks(self) -> None:
        response = self.client.get("/stream/sync/")
        self.assertEqual(b"".join(response.streaming_content), self.EXPECTED)

    def test_bad_parameters_are_400(self) -> None:
        for query in ["n=many", "n=-1", "delay=-1", "delay=nan", "delay=inf"]:
            with self.subTest(query=query), self.assertLogs("django.request", "WARNING"):
                response = self.client.get(f"/stream/sync/?{query}")
                self.assertEqual(response.status_code, 400)

    def test_forever_sync_stream_cleans_up_when_closed(self) -> None:
        response = self.client.get("/stream/forever-sync/?token=forever-sync&delay=0")
        parts = iter(response.streaming_content)
        self.assertEqual([next(parts) for _ in range(3)], [b"tick 0\n", b"tick 1\n", b"tick 2\n"])
        self.assertEqual(events_for("forever-sync"), [])
        response.close()  # what a server does when the client goes away
        self.assertEqual(events_for("forever-sync"), [["stream_cleanup", "forever-sync"]])

    async def test_forever_async_stream_ticks(self) -> None:
        response = await self.async_client.get("/stream/forever/?token=forever-view&delay=0")
        self.assertTrue(response.is_async)
        parts = aiter(response.streaming_content)
        self.assertEqual(
            [await anext(parts) for _ in range(3)], [b"tick 0\n", b"tick 1\n", b"tick 2\n"]
        )
        await parts.aclose()

    async def test_forever_async_generator_cleans_up_when_closed(self) -> None:
        # Checked on the generator itself: Django's response wrapper does not aclose() it,
        # a server does that (or cancels it) when the client disconnects.
        ticks = views.tick_forever_async("forever-async", 0)
        self.assertEqual([await anext(ticks) for _ in range(2)], ["tick 0\n", "tick 1\n"])
        await ticks.aclose()
        self.assertEqual(events_for("forever-async"), [["stream_cleanup", "forever-async"]])


def parse_events(body: bytes) -> list[dict[str, str]]:
    """The fields of each event in an event stream body (one value per field is enough here)."""
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line)
        if fields:
            events.append(fields)
    return events


class ServerSentEventTests(SimpleTestCase):
    def test_page_opens_an_event_source_on_the_clock(self) -> None:
        response = self.client.get("/sse/")
        self.assertContains(response, "new EventSource(clockUrl)")
        self.assertContains(response, 'const clockUrl = "/sse/clock/";')
        self.assertContains(response, '<ol id="events">')
        self.assertContains(self.client.get("/sse/?count=3"), '"/sse/clock/?count=3"')
        self.assertContains(self.client.get("/"), 'href="/sse/"')

    async def test_clock_ticks_with_ids_and_a_retry_first(self) -> None:
        response = await self.async_client.get("/sse/clock/?count=3&interval=0&token=clock")
        self.assertEqual(response["Content-Type"], "text/event-stream; charset=utf-8")
        events = parse_events(b"".join([part async for part in response]))
        self.assertEqual([event["id"] for event in events], ["0", "1", "2"])
        self.assertEqual({event["event"] for event in events}, {"tick"})
        self.assertEqual(json.loads(events[1]["data"])["n"], 1)
        self.assertEqual([event.get("retry") for event in events], ["500", None, None])
        self.assertEqual(events_for("clock"), [["sse_closed", "clock"]])

    async def test_clock_numbers_on_from_last_event_id(self) -> None:
        response = await self.async_client.get(
            "/sse/clock/?count=2&interval=0", headers={"Last-Event-ID": "41"}
        )
        events = parse_events(b"".join([part async for part in response]))
        self.assertEqual([event["id"] for event in events], ["42", "43"])

    def test_sync_clock(self) -> None:
        response = self.client.get(
            "/sse/clock-sync/?count=2&interval=0&token=clock-sync",
            headers={"Last-Event-ID": "not a number"},
        )
        with warnings.catch_warnings():
            # The sync test client has to gather the async stream of an EventStreamResponse.
            warnings.filterwarnings("ignore", message=".*must consume asynchronous iterators")
            events = parse_events(b"".join(response))
        self.assertEqual([event["id"] for event in events], ["0", "1"])
        self.assertEqual(events_for("clock-sync"), [["sse_closed", "clock-sync"]])


class DownloadTests(SimpleTestCase):
    big_file_path: Path
    expected_sha256: str

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        temp_dir = tempfile.TemporaryDirectory()
        cls.addClassCleanup(temp_dir.cleanup)
        cls.big_file_path = Path(temp_dir.name) / "big.bin"
        settings_override = override_settings(BIG_FILE_PATH=cls.big_file_path)
        settings_override.enable()
        cls.addClassCleanup(settings_override.disable)
        cls.expected_sha256 = hashlib.sha256(big_file_bytes()).hexdigest()

    def test_download_serves_whole_file_and_closes_it(self) -> None:
        response = self.client.get("/download/?token=dl-get")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Length"], str(BIG_FILE_SIZE))
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="big.bin"')
        self.assertEqual(events_for("dl-get"), [])
        body = b"".join(response.streaming_content)  # closes the response when exhausted
        self.assertEqual(len(body), BIG_FILE_SIZE)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.expected_sha256)
        self.assertEqual(events_for("dl-get"), [["file_closed", "dl-get", BIG_FILE_SIZE]])

    def test_head_sends_headers_and_closes_unread_file(self) -> None:
        response = self.client.head("/download/?token=dl-head")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Length"], str(BIG_FILE_SIZE))
        self.assertEqual(b"".join(response.streaming_content), b"")
        self.assertEqual(events_for("dl-head"), [["file_closed", "dl-head", 0]])

    def test_file_is_created_in_the_configured_place(self) -> None:
        self.client.head("/download/?token=dl-place").close()
        self.assertEqual(self.big_file_path.stat().st_size, BIG_FILE_SIZE)


class BigFileTests(SimpleTestCase):
    def test_missing_or_truncated_file_is_rewritten(self) -> None:
        with tempfile.TemporaryDirectory() as temp_dir:
            path = Path(temp_dir) / "nested" / "big.bin"
            ensure_big_file(path)
            self.assertEqual(path.read_bytes(), big_file_bytes())
            path.write_bytes(b"short")
            ensure_big_file(path)
            self.assertEqual(path.stat().st_size, BIG_FILE_SIZE)
            self.assertEqual(sorted(p.name for p in path.parent.iterdir()), ["big.bin"])

    def test_tracked_download_records_bytes_read_at_close(self) -> None:
        response = self.client.get("/download/", {"token": "tracked"})
        # A plain file, so a pathsend server may send it itself.
        self.assertIs(type(response.tracked_file), io.BufferedReader)
        parts = iter(response.streaming_content)
        first = next(parts)
        self.assertEqual(events_for("tracked"), [])
        # The test client's wrapper closes the response once, as a server does when the client
        # has left (closing the response directly would leave the wrapper to close it again).
        response._iterator.close()
        self.assertEqual(events_for("tracked"), [["file_closed", "tracked", len(first)]])


class ErrorTests(SimpleTestCase):
    def test_boom_is_500_with_template(self) -> None:
        client = Client(raise_request_exception=False)
        with self.assertLogs("django.request", "ERROR"):
            response = client.get("/boom/")
        self.assertEqual(response.status_code, 500)
        self.assertTemplateUsed(response, "500.html")

    def test_unknown_path_is_404_with_template(self) -> None:
        with self.assertLogs("django.request", "WARNING"):
            response = self.client.get("/no-such-page/")
        self.assertEqual(response.status_code, 404)
        self.assertTemplateUsed(response, "404.html")
        self.assertContains(response, "/no-such-page/", status_code=404)


class ProbeTests(SimpleTestCase):
    def probe(self) -> dict[str, Any]:
        response = self.client.get("/probe/events/")
        self.assertEqual(response.status_code, 200)
        data: dict[str, Any] = response.json()
        return data

    def test_counters_move_by_two_around_one_request(self) -> None:
        before = self.probe()
        self.client.get("/hello/sync/")
        after = self.probe()
        self.assertEqual(after["started"], before["started"] + 2)
        self.assertEqual(after["finished"], before["finished"] + 2)
        self.assertEqual(set(after), {"started", "finished", "events"})

    def test_probe_request_has_started_but_not_finished(self) -> None:
        snapshot = self.probe()
        self.assertGreaterEqual(snapshot["started"], snapshot["finished"] + 1)

    def test_thread_probe_reports_its_thread_and_where_the_request_finished(self) -> None:
        response = self.client.get("/probe/thread/", {"token": "t-1"})
        self.assertEqual(
            response.json(), {"thread": threading.current_thread().name, "started_here": True}
        )
        events = self.probe()["events"]
        self.assertIn(["finished_on", "t-1", threading.current_thread().name], events)


class LifespanAndBackgroundTests(TestCase):
    """Through asgi_bridge's test client: the lifespan hook and after_response() work."""

    async def test_the_lifespan_hook_fills_request_state(self) -> None:
        client = ASGIClient()
        async with client.lifespan():
            response = await client.get("/lifespan/")
        self.assertEqual(response.json()["keys"], ["process"])
        self.assertIsInstance(response.json()["process"]["pid"], int)

    async def test_background_work_runs_after_the_response(self) -> None:
        client = ASGIClient()
        token = "background-test"
        response = await client.get("/background/", query_params={"token": token})
        self.assertEqual(response.text, f"queued {token}\n")
        await client.app.background.drain(timeout=5)  # type: ignore[attr-defined]
        self.assertIn(["background_done", token], PROBES.snapshot()["events"])

    def test_without_asgi_bridge_request_state_is_absent(self) -> None:
        # Django's test Client builds a WSGIRequest, which has no request.state.
        self.assertEqual(Client().get("/lifespan/").json(), {"keys": [], "process": None})


class ChatTests(SimpleTestCase):
    """The chat room: its page, and its WebSocket view through asgi_bridge's test client."""

    def test_page_opens_a_websocket_on_its_room(self) -> None:
        response = self.client.get("/chat/lobby/")
        self.assertContains(response, '<script id="socket-path" type="application/json">')
        self.assertContains(response, '"/ws/chat/lobby/"')
        self.assertContains(response, '<ol id="messages"')
        self.assertContains(self.client.get("/chat/"), '"/ws/chat/lobby/"')
        self.assertContains(self.client.get("/"), 'href="/chat/"')

    async def test_every_socket_of_the_room_gets_each_message(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/chat/lobby/") as alice,
            client.websocket("/ws/chat/lobby/") as bob,
            client.websocket("/ws/chat/elsewhere/") as carol,
        ):
            await alice.send("hi")
            self.assertEqual(await alice.receive_json(), {"user": "anonymous", "text": "hi"})
            self.assertEqual(await bob.receive_json(), {"user": "anonymous", "text": "hi"})
            await bob.send("hello")
            self.assertEqual(await alice.receive_json(), {"user": "anonymous", "text": "hello"})
            self.assertEqual(await bob.receive_json(), {"user": "anonymous", "text": "hello"})
            self.assertTrue(await carol.receive_nothing())
        self.assertEqual(groups().member_count(views.chat_group("lobby")), 0)

    async def test_a_socket_that_left_gets_nothing_more(self) -> None:
        client = ASGIClient()
        async with client.websocket("/ws/chat/lobby/") as alice:
            async with client.websocket("/ws/chat/lobby/") as bob:
                self.assertEqual(groups().member_count(views.chat_group("lobby")), 2)
                await bob.send("bye")
                self.assertEqual(await alice.receive_json(), {"user": "anonymous", "text": "bye"})
            self.assertEqual(groups().member_count(views.chat_group("lobby")), 1)
            await alice.send("anyone?")
            self.assertEqual(await alice.receive_json(), {"user": "anonymous", "text": "anyone?"})

    async def test_a_message_over_the_limit_goes_to_no_one(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/chat/lobby/") as alice,
            client.websocket("/ws/chat/lobby/") as bob,
        ):
            await alice.send("x" * (views.CHAT_MESSAGE_MAX_LENGTH + 1))
            self.assertEqual(
                await alice.receive_json(),
                {"error": "Messages are limited to 1,000 characters."},
            )
            await alice.send("   ")
            self.assertTrue(await bob.receive_nothing())
            await alice.send("x" * views.CHAT_MESSAGE_MAX_LENGTH)
            self.assertEqual(len((await bob.receive_json())["text"]), 1000)

    async def test_a_binary_message_closes_the_socket_unsent(self) -> None:
        client = ASGIClient()
        async with (
            client.websocket("/ws/chat/lobby/") as alice,
            client.websocket("/ws/chat/lobby/") as bob,
        ):
            await alice.send(b"\x00\x01")
            with self.assertRaises(WebSocketDisconnect) as closed:
                await alice.receive()
            self.assertEqual(closed.exception.code, 1003)
            self.assertTrue(await bob.receive_nothing())


class ChatUserTests(TestCase):
    async def test_a_message_carries_the_sessions_username(self) -> None:
        user = await User.objects.acreate_user("ada", password="lovelace")
        await self.async_client.aforce_login(user)
        client = ASGIClient()
        # The session cookie of a login through Django's test client.
        client.cookies.update(self.async_client.cookies)
        async with client.websocket("/ws/chat/lobby/") as ws:
            await ws.send("hello")
            self.assertEqual(await ws.receive_json(), {"user": "ada", "text": "hello"})
