"""Only code running sync Python holds a pooled thread: a request that awaits holds none.

With ``ASGI_BRIDGE["THREADS"] = 2``, two hundred async views, async streams and event streams
wait at once on an asyncio.Event while no pooled thread is busy; a sync and an async view still
answer meanwhile; behind Django's default middleware an async view still sees the user, the
session, the messages and the CSRF checks as under Django's own handler; and request_started
and request_finished fire once per request throughout. No test measures time: each waits on
counters and events, bounded only so that a hang fails instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import User
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.signals import request_finished, request_started
from django.test import SimpleTestCase, override_settings

from asgi_bridge import get_asgi_application
from asgi_bridge.testing import ASGIClient, ClientResponse
from asgi_bridge.threads import RequestThreadPool
from asgi_bridge.types import ASGIApp

from . import urls
from .asgi import ServedLikeByAServer
from .test_chain import STARTPROJECT_MIDDLEWARE

THREADS = 2
# Requests waiting at once: a hundred times the pool's threads.
CONCURRENT = 200
# A wait that sees no progress for this long has hung, and the test fails. It bounds a hang;
# it measures nothing.
STALL_TIMEOUT = 5.0
# Longer than STALL_TIMEOUT, so that a hang is reported by the test's own wait, which says what
# was stuck, rather than by the client.
CLIENT_TIMEOUT = 60.0
THREAD_NAME_PREFIX = "asgi_bridge-"

ADA_PK = 7
KNOWN_USERS_BACKEND = "tests.test_concurrency.KnownUsers"
# Django's default middleware, with sessions in signed cookies: the test settings install
# neither the sessions nor the messages app, and these tests use no database.
DEFAULT_MIDDLEWARE = override_settings(
    MIDDLEWARE=STARTPROJECT_MIDDLEWARE,
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    AUTHENTICATION_BACKENDS=[KNOWN_USERS_BACKEND],
)


def ada() -> User:
    # An unsaved user with a fixed password field: its session hash is the same every time.
    return User(pk=ADA_PK, username="ada", password="!no-password")


class KnownUsers(BaseBackend):
    """An authentication backend without a database: it knows Ada alone."""

    def get_user(self, user_id: int) -> User | None:
        return ada() if user_id == ADA_PK else None


def ada_session_cookie() -> str:
    """A signed-cookie session in which Ada is logged in, as django.contrib.auth.login leaves it."""
    session = SessionStore()
    session[SESSION_KEY] = str(ADA_PK)
    session[BACKEND_SESSION_KEY] = KNOWN_USERS_BACKEND
    session[HASH_SESSION_KEY] = ada().get_session_auth_hash()
    session.save()
    assert session.session_key is not None
    return session.session_key


class SignalRecorder:
    """A sync receiver, as most are (close_old_connections is one): notes each thread it ran on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __call__(self, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread())


async def wait_for_count(
    count: Callable[[], int], target: int, what: str, pool: RequestThreadPool
) -> None:
    """Wait until ``count()`` is ``target``; fail once it has not moved for STALL_TIMEOUT s."""
    loop = asyncio.get_running_loop()
    last, last_change = count(), loop.time()
    while (current := count()) != target:
        if current != last:
            last, last_change = current, loop.time()
        elif loop.time() - last_change > STALL_TIMEOUT:
            raise AssertionError(
                f"{what}: stuck at {current}, expected {target} "
                f"({pool.busy_count} of the pool's {pool.max_threads} threads busy)"
            )
        await asyncio.sleep(0.01)


async def first_part(response: ClientResponse) -> bytes:
    """The first body chunk of a streamed response; the rest stays to be read."""
    parts = response.stream()
    try:
        return await anext(parts)
    finally:
        await parts.aclose()


@override_settings(ASGI_BRIDGE={"THREADS": THREADS})
class ConcurrencyTestCase(ServedLikeByAServer, SimpleTestCase):
    """Requests sent all at once to a handler whose pool has two threads."""

    def setUp(self) -> None:
        urls.observed.clear()
        self.started = SignalRecorder()
        self.finished = SignalRecorder()
        for signal, receiver in (
            (request_started, self.started),
            (request_finished, self.finished),
        ):
            signal.connect(receiver)
            self.addCleanup(signal.disconnect, receiver)
        self.application = get_asgi_application()
        self.asgi_client = ASGIClient(self.application, timeout=CLIENT_TIMEOUT)

    @property
    def pool(self) -> RequestThreadPool:
        return self.application.request_threads()

    def closed_gate(self, expected: int) -> urls.Gate:
        """A new gate, closed, for ``expected`` requests to wait at."""
        gate = urls.Gate(expected)
        urls.observed["gate"] = gate
        return gate

    async def wait_until_all_wait_without_threads(self, gate: urls.Gate) -> None:
        """Every request is waiting at the gate, and no pooled thread is busy meanwhile."""
        await wait_for_count(lambda: gate.arrived, gate.expected, "requests at the gate", self.pool)
        await wait_for_count(
            lambda: self.pool.busy_count,
            0,
            f"busy pooled threads while {gate.arrived} requests await an asyncio.Event",
            self.pool,
        )
        self.assertEqual(gate.arrived, gate.expected)
        self.assertFalse(gate.opened.is_set())

    async def finish_all(self, gate: urls.Gate, requests: list[asyncio.Task[Any]]) -> list[Any]:
        """Open the gate and collect every request's outcome; cancel those that hang."""
        gate.opened.set()
        pending = set(requests)
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=STALL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                for request in pending:
                    request.cancel()
                await asyncio.wait(pending)
                break
        return await asyncio.gather(*requests, return_exceptions=True)

    def assert_signalled_once_per_request(self, requests: int) -> None:
        self.assertEqual(len(self.started.threads), requests)
        self.assertEqual(len(self.finished.threads), requests)
        # Sync receivers ran on the pool's threads: none was busy, though the pool was in use.
        names = {thread.name for thread in self.started.threads + self.finished.threads}
        self.assertTrue(all(name.startswith(THREAD_NAME_PREFIX) for name in names), names)

    async def async_views_wait_without_threads(self) -> None:
        gate = self.closed_gate(CONCURRENT)
        requests = [
            asyncio.create_task(self.asgi_client.get("/async/gate/")) for _ in range(CONCURRENT)
        ]
        try:
            await self.wait_until_all_wait_without_threads(gate)
            self.assertFalse(any(request.done() for request in requests))
        finally:
            outcomes = await self.finish_all(gate, requests)
        answers = [
            (outcome.status_code, outcome.content)
            if isinstance(outcome, ClientResponse)
            else outcome
            for outcome in outcomes
        ]
        self.assertEqual(answers, [(200, b"through the gate")] * CONCURRENT)
        self.assert_signalled_once_per_request(CONCURRENT)

    async def streams_wait_without_threads(self, path: str, expected: tuple[bytes, bytes]) -> None:
        """Open CONCURRENT streams whose source waits at the gate after its first part."""
        gate = self.closed_gate(CONCURRENT)
        first_parts: list[bytes] = []

        async def read_stream() -> tuple[bytes, bytes]:
            response = await self.asgi_client.get(path, stream=True)
            self.assertEqual(response.status_code, 200)
            first_parts.append(await first_part(response))
            await response.aread()
            return first_parts[-1], response.content

        streams = [asyncio.create_task(read_stream()) for _ in range(CONCURRENT)]
        try:
            await wait_for_count(
                lambda: len(first_parts), CONCURRENT, "streams given their first part", self.pool
            )
            await self.wait_until_all_wait_without_threads(gate)
            self.assertFalse(any(stream.done() for stream in streams))
        finally:
            outcomes = await self.finish_all(gate, streams)
        self.assertEqual(outcomes, [(expected[0], b"".join(expected))] * CONCURRENT)
        self.assert_signalled_once_per_request(CONCURRENT)


class AwaitingWithoutThreadsTests(ConcurrencyTestCase):
    async def test_async_views_awaiting_an_event_hold_no_thread(self) -> None:
        await self.async_views_wait_without_threads()

    async def test_async_streams_waiting_for_their_next_part_hold_no_thread(self) -> None:
        await self.streams_wait_without_threads(
            "/stream/async/gate/", (b"before the gate\n", b"through the gate\n")
        )

    async def test_event_streams_waiting_for_their_next_event_hold_no_thread(self) -> None:
        await self.streams_wait_without_threads(
            "/events/gate/", (b"data: before the gate\n\n", b"data: through the gate\n\n")
        )

    async def test_sync_and_async_views_answer_while_async_views_wait(self) -> None:
        gate = self.closed_gate(CONCURRENT)
        requests = [
            asyncio.create_task(self.asgi_client.get("/async/gate/")) for _ in range(CONCURRENT)
        ]
        # Its timeout bounds a hang: these two must not wait for the gate.
        client = ASGIClient(self.application, timeout=STALL_TIMEOUT)
        try:
            await self.wait_until_all_wait_without_threads(gate)
            sync_answer = await client.get("/")
            sync_view_thread = urls.observed["view_thread"]
            async_answer = await client.get("/async/")
            self.assertFalse(any(request.done() for request in requests))
        finally:
            outcomes = await self.finish_all(gate, requests)
        self.assertEqual((sync_answer.status_code, sync_answer.content), (200, b"Hello World!"))
        self.assertEqual((async_answer.status_code, async_answer.content), (200, b"Hello async!"))
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        self.assertTrue(names[sync_view_thread].startswith(THREAD_NAME_PREFIX))
        self.assertTrue(all(isinstance(outcome, ClientResponse) for outcome in outcomes), outcomes)
        self.assertEqual({outcome.status_code for outcome in outcomes}, {200})
        self.assert_signalled_once_per_request(CONCURRENT + 2)


@DEFAULT_MIDDLEWARE
class DefaultMiddlewareTests(ConcurrencyTestCase):
    """Behind the middleware `django-admin startproject` generates: all of it sync."""

    async def test_async_views_awaiting_an_event_hold_no_thread(self) -> None:
        # The sync middleware runs on a pooled thread; the async view it wraps awaits without one.
        await self.async_views_wait_without_threads()

    async def visit_as_ada(self, application: ASGIApp) -> list[Any]:
        """A GET, a POST without the CSRF token and one with it, as a logged-in user."""
        client = ASGIClient(application, timeout=STALL_TIMEOUT)
        client.cookies[settings.SESSION_COOKIE_NAME] = ada_session_cookie()
        first = await client.get("/async/visit/")
        with self.assertLogs("django.security.csrf", "WARNING") as refusal:
            refused = await client.post("/async/visit/")
        token = first.json().pop("csrf_token")
        accepted = await client.post("/async/visit/", headers={"X-CSRFToken": token})
        return [
            first.status_code,
            {key: value for key, value in first.json().items() if key != "csrf_token"},
            first.headers["X-Frame-Options"],
            refused.status_code,
            refusal.records[0].getMessage(),
            accepted.status_code,
            {key: value for key, value in accepted.json().items() if key != "csrf_token"},
        ]

    async def test_async_view_sees_user_session_messages_and_csrf_as_under_django(self) -> None:
        seen = await self.visit_as_ada(self.application)
        self.assertEqual(
            seen,
            [
                200,
                {"user": "ada", "lazy_user": "ada", "visits": 1, "messages": []},
                "DENY",
                403,
                "Forbidden (CSRF token missing.): /async/visit/",
                200,
                {"user": "ada", "lazy_user": "ada", "visits": 2, "messages": ["visit 1"]},
            ],
        )
        self.assert_signalled_once_per_request(3)
        self.assertEqual(await self.visit_as_ada(DjangoASGIHandler()), seen)
