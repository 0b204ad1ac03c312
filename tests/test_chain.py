"""Choosing the middleware chain: which middleware would hop to a thread in async mode."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from asgi_bridge import ASGIHandler
from asgi_bridge.chain import hops_in_async_mode, middleware_hops_in_async_mode

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
