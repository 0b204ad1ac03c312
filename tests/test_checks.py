"""asgi_bridge's system checks."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from asgi_bridge.checks import check_middleware_runs_in_halves

from .test_chain import STARTPROJECT_MIDDLEWARE


class MiddlewareInHalvesCheckTests(SimpleTestCase):
    @override_settings(MIDDLEWARE=STARTPROJECT_MIDDLEWARE)
    def test_djangos_own_middleware_passes(self) -> None:
        self.assertEqual(check_middleware_runs_in_halves(None), [])

    @override_settings(MIDDLEWARE=["tests.middleware.AsyncOnlyMiddleware"])
    def test_natively_async_middleware_alone_passes(self) -> None:
        # Django's async chain serves it: there is no sync chain to split.
        self.assertEqual(check_middleware_runs_in_halves(None), [])

    @override_settings(
        MIDDLEWARE=[*STARTPROJECT_MIDDLEWARE, "tests.middleware.WholeCallMiddleware"]
    )
    def test_a_middleware_with_its_own_call_is_named(self) -> None:
        [warning] = check_middleware_runs_in_halves(None)
        self.assertEqual(warning.id, "asgi_bridge.W002")
        self.assertEqual(warning.obj, "tests.middleware.WholeCallMiddleware")
        self.assertIn("holds a pooled thread", warning.msg)
