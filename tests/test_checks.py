"""asgi_bridge's system checks."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from asgi_bridge.checks import check_middleware_runs_in_halves, check_settings

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


class SettingsCheckTests(SimpleTestCase):
    def ids(self) -> list[str]:
        return [message.id for message in check_settings(None) if message.id is not None]

    @override_settings(ASGI_BRIDGE={})
    def test_defaults_pass(self) -> None:
        self.assertEqual(check_settings(None), [])

    @override_settings(ASGI_BRIDGE=["THREADS", 4])
    def test_not_a_dict(self) -> None:
        [error] = check_settings(None)
        self.assertEqual(error.id, "asgi_bridge.E001")
        self.assertIn("must be a dict, not list", error.msg)

    @override_settings(ASGI_BRIDGE={"THREAD": 4, "STATIC_FILE": True, "THREADS": 0})
    def test_every_unknown_key_and_wrong_value_at_once(self) -> None:
        messages = check_settings(None)
        self.assertEqual(
            [(message.id, message.msg) for message in messages],
            [
                ("asgi_bridge.E001", "Unknown key 'STATIC_FILE' in the ASGI_BRIDGE setting."),
                ("asgi_bridge.E001", "Unknown key 'THREAD' in the ASGI_BRIDGE setting."),
                ("asgi_bridge.E002", "ASGI_BRIDGE['THREADS'] must be a positive integer, not 0."),
            ],
        )
        self.assertIn("THREADS", messages[0].hint or "")

    @override_settings(STATIC_ROOT=None, ASGI_BRIDGE={"STATIC_FILES": True})
    def test_static_files_without_static_root(self) -> None:
        self.assertEqual(self.ids(), ["asgi_bridge.E003"])

    @override_settings(
        STATIC_ROOT="/tmp",
        STATIC_URL="https://cdn.example.com/",
        ASGI_BRIDGE={"STATIC_FILES": True},
    )
    def test_static_files_at_another_site(self) -> None:
        self.assertEqual(self.ids(), ["asgi_bridge.E003"])

    @override_settings(STATIC_ROOT="/nonexistent/static", ASGI_BRIDGE={"STATIC_FILES": True})
    def test_static_root_not_collected_yet(self) -> None:
        [warning] = check_settings(None)
        self.assertEqual(warning.id, "asgi_bridge.W004")
        self.assertEqual(warning.hint, "Run manage.py collectstatic.")

    @override_settings(
        DATA_UPLOAD_MAX_MEMORY_SIZE=10_000_000, ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 1_000_000}
    )
    def test_a_body_cap_below_djangos_form_limit(self) -> None:
        [warning] = check_settings(None)
        self.assertEqual(warning.id, "asgi_bridge.W003")
        self.assertIn("form posts Django would accept are answered 413", warning.msg)

    @override_settings(
        DATA_UPLOAD_MAX_MEMORY_SIZE=None, ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 1_000_000}
    )
    def test_a_body_cap_without_a_form_limit(self) -> None:
        self.assertEqual(check_settings(None), [])

    @override_settings(ASGI_BRIDGE={"BROADCAST": {"BACKEND": "myapp.broadcast.Missing"}})
    def test_a_broadcast_backend_that_cannot_be_imported(self) -> None:
        self.assertEqual(self.ids(), ["asgi_bridge.E004"])

    @override_settings(ASGI_BRIDGE={"BROADCAST": {"BACKEND": "asgi_bridge.broadcast.RedisBackend"}})
    def test_redis_without_a_location(self) -> None:
        [error] = check_settings(None)
        self.assertEqual(error.id, "asgi_bridge.E004")
        self.assertIn("no LOCATION", error.msg)

    def test_manage_py_check_reports_them(self) -> None:
        """Through Django's check framework, as manage.py check runs it."""
        from django.core import checks
        from django.core.management import call_command
        from django.core.management.base import SystemCheckError

        checks.register(check_settings)
        self.addCleanup(checks.registry.registry.registered_checks.discard, check_settings)
        with (
            override_settings(ASGI_BRIDGE={"THREADS": "many"}),
            self.assertRaisesMessage(SystemCheckError, "asgi_bridge.E002"),
        ):
            call_command("check")
