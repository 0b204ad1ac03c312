"""asgi_bridge.testing: ASGIClient against asgi_bridge's handler and small raw ASGI apps."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.test import SimpleTestCase, TestCase, override_settings

from asgi_bridge import ASGIHandler
from asgi_bridge.testing import (
    ApplicationTimeout,
    ASGIClient,
    ASGIProtocolError,
    DisconnectedError,
    LifespanFailed,
)
from asgi_bridge.types import ASGIApp, Message, Receive, Scope, Send

from . import urls
from .testing_urls import observed


def recording_receive(app: ASGIApp, messages: list[Message]) -> ASGIApp:
    """``app`` with every message it receives recorded in ``messages``."""

    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording() -> Message:
            message = await receive()
            messages.append(message)
            return message

        await app(scope, recording, send)

    return recorded


async def plain_response(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def lifespan_app(events: list[str], startup_error: str = "") -> ASGIApp:
    """Fills the lifespan state at startup; answers requests with the state it was given."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup" and startup_error:
                    await send({"type": "lifespan.startup.failed", "message": startup_error})
                    return
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        state = scope.get("state")
        body = repr(sorted(state.items()) if state is not None else None).encode()
        if state is not None:
            # A request writing to its state must not change what the next request sees.
            state["written_by_request"] = True
        await receive()
        await plain_response(send, body, [(b"content-type", b"text/plain")])

    return app


class ClientTestCase(SimpleTestCase):
    def setUp(self) -> None:
        observed.clear()
        self.client_ = ASGIClient()


@override_settings(ROOT_URLCONF="tests.testing_urls")
class RequestTests(ClientTestCase):
    async def test_get_sends_query_params_and_headers_to_the_view(self) -> None:
        response = await self.client_.get(
            "/echo/",
            query_params={"q": "a b", "tag": ["x", "y"]},
            headers={"Accept": "application/json", "X-Trace": "t1"},
        )
        self.assertEqual(response.status_code, 200)
        seen = response.json()
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["query"], {"q": ["a b"], "tag": ["x", "y"]})
        self.assertEqual(seen["accept"], "application/json")
        self.assertEqual(seen["x_trace"], "t1")
        self.assertEqual(seen["host"], "testserver")
        self.assertEqual(seen["remote_addr"], "127.0.0.1")
        self.assertIs(seen["secure"], False)

    async def test_query_comes_from_data_params_or_the_path_as_in_django(self) -> None:
        by_data = await self.client_.get("/echo/", {"a": "1"})
        self.assertEqual(by_data.json()["query"], {"a": ["1"]})
        in_path = await self.client_.get("/echo/?z=2&z=3")
        self.assertEqual(in_path.json()["query"], {"z": ["2", "3"]})
        with self.assertRaisesMessage(ValueError, "mutually exclusive"):
            await self.client_.get("/echo/", {"a": "1"}, query_params={"b": "2"})

    async def test_scope_is_a_complete_http_scope(self) -> None:
        scopes: list[Scope] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scopes.append(scope)
            await plain_response(send, b"", [])

        client = ASGIClient(app, headers={"User-Agent": "tests"})
        await client.get("/caf\u00e9/a%2Fb", query_params={"x": "1 2"}, secure=True)
        self.assertEqual(
            scopes[0],
            {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "https",
                "path": "/caf\u00e9/a/b",
                "raw_path": b"/caf%C3%A9/a%2Fb",
                "query_string": b"x=1+2",
                "root_path": "",
                "headers": [(b"host", b"testserver"), (b"user-agent", b"tests")],
                "client": ("127.0.0.1", 50000),
                "server": ("testserver", 443),
            },
        )

    async def test_post_form_data_is_encoded_as_multipart(self) -> None:
        response = await self.client_.post("/form/", {"name": "Ada", "langs": ["py", "c"]})
        self.assertEqual(response.json(), {"name": ["Ada"], "langs": ["py", "c"]})
        headers = dict(response.scope["headers"])
        self.assertEqual(headers[b"content-type"], b"multipart/form-data; boundary=BoUnDaRyStRiNg")

    async def test_post_json_encodes_with_djangos_encoder(self) -> None:
        response = await self.client_.post(
            "/json/", {"when": datetime.date(2024, 1, 2), "n": 1}, content_type="application/json"
        )
        self.assertEqual(
            response.json(),
            {"content_type": "application/json", "data": {"when": "2024-01-02", "n": 1}},
        )

    async def test_every_method_reaches_the_view(self) -> None:
        for method in ("put", "patch", "delete", "options"):
            with self.subTest(method=method):
                response = await getattr(self.client_, method)("/echo/", b"x")
                self.assertEqual(response.json()["method"], method.upper())
        response = await self.client_.request("PROPFIND", "/echo/")
        self.assertEqual(response.json()["method"], "PROPFIND")
        head = await self.client_.head("/echo/")
        self.assertEqual((head.status_code, head.content), (200, b""))

    async def test_json_refuses_a_response_that_is_not_json(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await plain_response(send, b"<p>hi</p>", [(b"content-type", b"text/html")])

        response = await ASGIClient(app).get("/")
        self.assertEqual(response.text, "<p>hi</p>")
        with self.assertRaisesMessage(ValueError, 'Content-Type header is "text/html"'):
            response.json()

    async def test_headers_are_case_insensitive_and_keep_every_value(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            headers = [(b"X-Part", b"a"), (b"x-part", b"b"), (b"Set-Cookie", b"one=1; Path=/")]
            headers.append((b"Set-Cookie", b"two=2; Max-Age=60"))
            await plain_response(send, b"", headers)

        response = await ASGIClient(app).get("/")
        self.assertEqual(response.headers["X-PART"], "a, b")
        self.assertEqual(response.headers.getlist("x-part"), ["a", "b"])
        self.assertEqual(
            response.headers.getlist("set-cookie"), ["one=1; Path=/", "two=2; Max-Age=60"]
        )
        self.assertEqual(response.headers.raw[0], (b"X-Part", b"a"))
        self.assertEqual(
            {name: m.value for name, m in response.cookies.items()}, {"one": "1", "two": "2"}
        )
        self.assertNotIn("content-type", response.headers)


@override_settings(ROOT_URLCONF="tests.testing_urls")
class CookieTests(ClientTestCase):
    async def test_cookies_are_kept_across_requests(self) -> None:
        await self.client_.get("/cookie/set/")
        self.assertEqual(self.client_.cookies["flavour"].value, "ginger")
        response = await self.client_.get("/echo/")
        self.assertEqual(response.json()["cookies"], {"flavour": "ginger", "other": "kept"})

    async def test_a_deleted_cookie_is_no_longer_sent(self) -> None:
        await self.client_.get("/cookie/set/")
        await self.client_.get("/cookie/delete/")
        response = await self.client_.get("/echo/")
        self.assertEqual(response.json()["cookies"], {"other": "kept"})


@override_settings(ROOT_URLCONF="tests.testing_urls")
class StreamingTests(ClientTestCase):
    async def test_each_chunk_arrives_before_the_next_is_produced(self) -> None:
        observed["gate"] = threading.Event()
        async with self.client_.stream("GET", "/stream/gated/") as response:
            parts = response.stream()
            self.assertEqual(await anext(parts), b"first")
            self.assertEqual(observed["produced"], ["first"])
            observed["gate"].set()
            self.assertEqual(await anext(parts), b"second")
            self.assertEqual([part async for part in parts], [])
        self.assertEqual(response.content, b"firstsecond")
        self.assertTrue(response.app_ended)

    async def test_endless_event_stream_is_read_event_by_event_then_left(self) -> None:
        response = await self.client_.get("/events/", stream=True)
        self.assertEqual(response.headers["content-type"], "text/event-stream")
        events = response.stream()
        received = [await anext(events) for _ in range(3)]
        self.assertEqual(received, [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"])
        self.assertIs(observed["events_closed"], False)
        self.assertTrue(await response.disconnect())
        self.assertIs(observed["events_closed"], True)

    async def test_after_a_disconnect_receive_says_so_and_send_raises(self) -> None:
        seen: list[Any] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            seen.append(await receive())
            try:
                await send({"type": "http.response.body", "body": b"late", "more_body": True})
            except OSError as error:
                seen.append(error)

        response = await ASGIClient(app).get("/", stream=True)
        self.assertEqual(await anext(response.stream()), b"part")
        self.assertTrue(await response.disconnect())
        self.assertEqual(seen[0], {"type": "http.disconnect"})
        self.assertIsInstance(seen[1], DisconnectedError)

    async def test_receive_waits_after_the_body_until_the_response_is_complete(self) -> None:
        seen: dict[str, Any] = {}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen["body"] = await receive()
            waiting = asyncio.ensure_future(receive())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            for _ in range(5):
                await asyncio.sleep(0)
            seen["answered_mid_response"] = waiting.done()
            await send({"type": "http.response.body", "body": b"b"})
            seen["after_response"] = await waiting

        response = await ASGIClient(app).get("/")
        self.assertEqual(response.content, b"ab")
        self.assertEqual(seen["body"], {"type": "http.request", "body": b"", "more_body": False})
        self.assertIs(seen["answered_mid_response"], False)
        self.assertEqual(seen["after_response"], {"type": "http.disconnect"})

    async def test_async_iterable_body_arrives_as_one_message_per_part(self) -> None:
        messages: list[Message] = []

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"ab", b"cd", b"ef"):
                yield part

        client = ASGIClient(recording_receive(ASGIHandler(), messages))
        response = await client.post("/body-size/", parts(), content_type="text/plain")
        self.assertEqual(response.content, b"6")
        bodies = [(m["body"], m["more_body"]) for m in messages if m["type"] == "http.request"]
        self.assertEqual(bodies, [(b"ab", True), (b"cd", True), (b"ef", True), (b"", False)])
        self.assertIn((b"transfer-encoding", b"chunked"), response.scope["headers"])


@override_settings(ROOT_URLCONF="tests.testing_urls")
class ServerExceptionTests(ClientTestCase):
    async def test_a_view_exception_propagates(self) -> None:
        with self.assertRaisesMessage(ValueError, "the view failed"):
            await self.client_.get("/failing/")

    async def test_without_raising_a_view_exception_is_a_500(self) -> None:
        response = await ASGIClient(raise_server_exceptions=False).get("/failing/")
        self.assertEqual(response.status_code, 500)

    async def test_an_application_exception_propagates(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raise RuntimeError("broken app")

        with self.assertRaisesMessage(RuntimeError, "broken app"):
            await ASGIClient(app).get("/")
        response = await ASGIClient(app, raise_server_exceptions=False).get("/")
        self.assertEqual((response.status_code, response.content), (500, b""))

    async def test_a_message_out_of_order_is_a_protocol_error(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.body", "body": b"too early"})

        with self.assertRaisesMessage(ASGIProtocolError, "Expected 'http.response.start'"):
            await ASGIClient(app).get("/")

    async def test_an_application_that_never_answers_times_out(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await asyncio.Event().wait()

        with self.assertRaisesMessage(ApplicationTimeout, "did not send 'http.response.start'"):
            await ASGIClient(app, timeout=0.05).get("/")


@override_settings(ROOT_URLCONF="tests.urls")
class DjangoTestCaseTests(TestCase):
    """In a TestCase, requests see the rows the test created inside its transaction."""

    async def test_views_see_the_tests_rows_whatever_the_middleware(self) -> None:
        await User.objects.acreate(username="ada")
        client = ASGIClient()
        for middleware in (
            [],
            ["tests.middleware.RecordingMiddleware"],
            ["tests.middleware.AsyncOnlyMiddleware"],
        ):
            with self.subTest(middleware=middleware), override_settings(MIDDLEWARE=middleware):
                response = await client.get("/users/count/")
                self.assertEqual(response.content, b"1")
        # As with Django's own handler: on the thread that waits for this async test.
        self.assertEqual(urls.observed["view_thread"], threading.main_thread().ident)
        # The test's transaction is intact: Django's request signals did not close it.
        self.assertEqual(await User.objects.acount(), 1)


class LifespanTests(SimpleTestCase):
    async def test_state_filled_at_startup_reaches_every_request_as_a_copy(self) -> None:
        events: list[str] = []
        client = ASGIClient(lifespan_app(events))
        async with client.lifespan() as state:
            self.assertEqual(state, {"greeting": "hello"})
            first = await client.get("/")
            second = await client.get("/")
        self.assertEqual(first.text, "[('greeting', 'hello')]")
        self.assertEqual(second.text, first.text)
        self.assertEqual(events, ["lifespan.startup", "lifespan.shutdown"])
        outside = await client.get("/")
        self.assertEqual(outside.text, "None")

    async def test_startup_failure_raises_with_the_apps_message(self) -> None:
        client = ASGIClient(lifespan_app([], startup_error="no database"))
        with self.assertRaisesMessage(LifespanFailed, "Lifespan startup failed: no database"):
            async with client.lifespan():
                self.fail("the block must not run")

    async def test_an_application_without_lifespan_support_is_reported(self) -> None:
        client = ASGIClient(DjangoASGIHandler())
        with self.assertRaisesMessage(LifespanFailed, "does not support the lifespan protocol"):
            async with client.lifespan():
                self.fail("the block must not run")


def test_asgi_client_fixture_serves_the_project(asgi_client: ASGIClient, settings: Any) -> None:
    # A sync test: each async_to_sync call runs in its own event loop.
    settings.ROOT_URLCONF = "tests.testing_urls"
    async_to_sync(asgi_client.get)("/cookie/set/")
    response = async_to_sync(asgi_client.get)("/echo/")
    assert response.json()["cookies"] == {"flavour": "ginger", "other": "kept"}


def test_plugin_is_registered_and_imports_no_django() -> None:
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins["asgi_bridge"] == "asgi_bridge.pytest_plugin"
    code = "import sys, asgi_bridge.pytest_plugin; print([m for m in sys.modules if 'django' in m])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@override_settings(ROOT_URLCONF="tests.testing_urls")
class FollowTests(ClientTestCase):
    async def test_redirects_are_followed_as_a_get(self) -> None:
        for status in (301, 302, 303):
            with self.subTest(status):
                response = await self.client_.post(
                    f"/redirect/{status}/?to=/echo/%3Fq%3D1", {"a": "b"}, follow=True
                )
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.json()["method"], "GET")
                self.assertEqual(response.json()["query"], {"q": ["1"]})
                self.assertEqual(response.redirect_chain, [("/echo/?q=1", status)])

    async def test_307_and_308_keep_the_method_and_body(self) -> None:
        for status in (307, 308):
            with self.subTest(status):
                response = await self.client_.post(f"/redirect/{status}/", {"a": "b"}, follow=True)
                seen = response.json()
                self.assertEqual(seen["method"], "POST")
                self.assertEqual(seen["content_type"], "multipart/form-data")

    async def test_a_chain_of_redirects_relative_and_absolute(self) -> None:
        response = await self.client_.get(
            "/redirect/302/?to=http://testserver/redirect/301/", follow=True
        )
        self.assertEqual(
            response.redirect_chain,
            [("http://testserver/redirect/301/", 302), ("/echo/", 301)],
        )
        self.assertEqual(response.json()["path"], "/echo/")

    async def test_without_follow_the_redirect_is_the_response(self) -> None:
        response = await self.client_.get("/redirect/302/")
        self.assertEqual((response.status_code, response.redirect_chain), (302, []))
        self.assertEqual(response.headers["Location"], "/echo/")

    async def test_a_redirect_loop_raises(self) -> None:
        from django.test.client import RedirectCycleError

        with self.assertRaisesMessage(RedirectCycleError, "Redirect loop detected."):
            await self.client_.get("/redirect/loop/", follow=True)

    async def test_a_redirect_to_https_is_followed_securely(self) -> None:
        response = await self.client_.get("/redirect/302/?to=https://testserver/echo/", follow=True)
        self.assertTrue(response.json()["secure"])
