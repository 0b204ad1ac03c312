"""The middleware chain: which one is used, and the sync chain in halves against Django's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from django.core.handlers.base import BaseHandler
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import RequestFactory, SimpleTestCase, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_bridge import ASGIHandler
from asgi_bridge.chain import (
    PendingView,
    SyncChainHandler,
    hops_in_async_mode,
    middleware_hops_in_async_mode,
)

from . import chain_fixtures

# What `django-admin startproject` generates.
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class SyncOnly:
    sync_capable = True
    async_capable = False


class AsyncWithSyncHook:
    sync_capable = False
    async_capable = True

    def process_view(self, *args: object) -> None:
        return None


class AsyncWithAsyncHook:
    sync_capable = False
    async_capable = True

    async def process_view(self, *args: object) -> None:
        return None


class HopsInAsyncModeTests(SimpleTestCase):
    def test_django_default_middleware_hops(self) -> None:
        self.assertTrue(middleware_hops_in_async_mode(STARTPROJECT_MIDDLEWARE))
        for path in STARTPROJECT_MIDDLEWARE:
            with self.subTest(path=path):
                self.assertTrue(middleware_hops_in_async_mode([path]))

    def test_no_middleware_does_not_hop(self) -> None:
        self.assertFalse(middleware_hops_in_async_mode([]))

    def test_natively_async_middleware_does_not_hop(self) -> None:
        self.assertFalse(middleware_hops_in_async_mode(["tests.middleware.AsyncOnlyMiddleware"]))
        self.assertFalse(hops_in_async_mode(AsyncWithAsyncHook))

    def test_sync_only_middleware_and_sync_hooks_hop(self) -> None:
        self.assertTrue(hops_in_async_mode(SyncOnly))
        self.assertTrue(hops_in_async_mode(AsyncWithSyncHook))


class HandlerChainTests(SimpleTestCase):
    @override_settings(MIDDLEWARE=STARTPROJECT_MIDDLEWARE)
    def test_default_middleware_uses_the_sync_chain(self) -> None:
        self.assertIsNotNone(ASGIHandler().sync_handler)

    @override_settings(MIDDLEWARE=["tests.middleware.AsyncOnlyMiddleware"])
    def test_async_middleware_keeps_the_async_chain(self) -> None:
        self.assertIsNone(ASGIHandler().sync_handler)

    @override_settings(MIDDLEWARE=STARTPROJECT_MIDDLEWARE)
    def test_a_subclass_overriding_get_response_async_keeps_the_async_chain(self) -> None:
        class Instrumented(ASGIHandler):
            async def get_response_async(self, request):  # type: ignore[no-untyped-def]
                return await super().get_response_async(request)

        self.assertIsNone(Instrumented().sync_handler)


class CountedMiddleware:
    """Counts its instances: a handler builds its chain once."""

    instances = 0

    def __init__(self, get_response: Any) -> None:
        type(self).instances += 1
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return cast(HttpResponse, self.get_response(request))


class MiddlewareBuiltOnceTests(SimpleTestCase):
    @override_settings(MIDDLEWARE=["tests.test_chain.CountedMiddleware"])
    def test_each_middleware_is_instantiated_once(self) -> None:
        CountedMiddleware.instances = 0
        handler = ASGIHandler()
        self.assertIsNotNone(handler.sync_handler)
        self.assertEqual(CountedMiddleware.instances, 1)

    @override_settings(MIDDLEWARE=STARTPROJECT_MIDDLEWARE)
    def test_django_middleware_runs_in_halves(self) -> None:
        handler = ASGIHandler().sync_handler
        assert handler is not None
        self.assertTrue(handler.splits_async_views)

    @override_settings(MIDDLEWARE=[*STARTPROJECT_MIDDLEWARE, "tests.test_chain.CountedMiddleware"])
    def test_one_middleware_with_a_call_of_its_own_keeps_the_chain_whole(self) -> None:
        handler = ASGIHandler().sync_handler
        assert handler is not None
        self.assertFalse(handler.splits_async_views)


HOOKS = ("request", "view", "exception", "template", "response")
OUTCOMES = ("pass", "answer", "raise", "404")


def run_whole(request: HttpRequest) -> HttpResponseBase:
    """Django's own nested sync chain, as WSGIHandler builds it."""
    handler = BaseHandler()
    handler.load_middleware(is_async=False)
    return handler.get_response(request)


def run_in_halves(request: HttpRequest) -> HttpResponseBase:
    """asgi_bridge's chain: stops at an async view, which is awaited, then resumes."""
    handler = SyncChainHandler()
    assert handler.splits_async_views
    response = handler.get_response(request)
    if not isinstance(response, PendingView):
        return response
    try:
        result = asyncio.run(cast(Any, response.view))
    except Exception as error:
        return response.resume(None, error)
    return response.resume(result, None)


def outcome(run: Callable[[HttpRequest], HttpResponseBase], path: str) -> tuple[Any, ...]:
    chain_fixtures.trace.clear()
    signals_seen: list[str] = []

    def on_exception(sender: object, **kwargs: Any) -> None:
        signals_seen.append("got_request_exception")

    got_request_exception.connect(on_exception)
    try:
        response = run(RequestFactory().get(path))
    finally:
        got_request_exception.disconnect(on_exception)
    content = cast(HttpResponse, response).content
    closers = len(cast(Any, response)._resource_closers)
    return (list(chain_fixtures.trace), response.status_code, content, closers, signals_seen)


@override_settings(
    ROOT_URLCONF="tests.chain_fixtures",
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
)
class ChainInHalvesTests(SimpleTestCase):
    """The chain in halves does what Django's nested sync chain does, hook for hook."""

    def setUp(self) -> None:
        logger = logging.getLogger("django.request")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        self.addCleanup(logger.setLevel, level)
        self.addCleanup(chain_fixtures.behaviour.clear)

    def assert_same(self, middleware_count: int, view: str) -> None:
        with override_settings(MIDDLEWARE=chain_fixtures.STEPS[:middleware_count]):
            whole = outcome(run_whole, f"/{view}/")
            halves = outcome(run_in_halves, f"/{view}/")
        self.assertEqual(halves, whole)

    def test_every_hook_answering_or_raising_alone(self) -> None:
        for view in ("sync", "async"):
            for kind in ("plain", "template"):
                for index in range(3):
                    for hook in HOOKS:
                        for what in OUTCOMES[1:]:
                            with self.subTest(view=view, kind=kind, at=(index, hook), does=what):
                                chain_fixtures.behaviour.clear()
                                chain_fixtures.behaviour[("view", "kind")] = kind
                                chain_fixtures.behaviour[(index, hook)] = what
                                self.assert_same(3, view)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        middleware_count=st.integers(0, 3),
        view=st.sampled_from(["sync", "async"]),
        kind=st.sampled_from(["plain", "template"]),
        view_call=st.sampled_from(OUTCOMES),
        hooks=st.dictionaries(
            st.tuples(st.integers(0, 2), st.sampled_from(HOOKS)), st.sampled_from(OUTCOMES)
        ),
    )
    def test_any_mix_of_hooks(
        self,
        middleware_count: int,
        view: str,
        kind: str,
        view_call: str,
        hooks: dict[tuple[int | str, str], str],
    ) -> None:
        chain_fixtures.behaviour.clear()
        chain_fixtures.behaviour.update(hooks)
        chain_fixtures.behaviour[("view", "kind")] = kind
        chain_fixtures.behaviour[("view", "call")] = view_call
        self.assert_same(middleware_count, view)
