"""The ASGI_BRIDGE settings dict: validation at startup, clear errors, override_settings."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings

from asgi_bridge import ASGIHandler
from asgi_bridge.conf import BridgeSettings, bridge_settings, parse_settings


class ParseSettingsTests(SimpleTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(parse_settings(None), BridgeSettings(max_request_body_size=None))
        self.assertEqual(parse_settings({}), BridgeSettings())

    def test_valid_limit(self) -> None:
        self.assertEqual(
            parse_settings({"MAX_REQUEST_BODY_SIZE": 1024}).max_request_body_size, 1024
        )

    def test_unknown_key_named(self) -> None:
        with self.assertRaisesMessage(
            ImproperlyConfigured, "Unknown key 'MAX_BODY' in the ASGI_BRIDGE setting"
        ):
            parse_settings({"MAX_BODY": 1})

    def test_bad_values_named(self) -> None:
        for value in (0, -1, "10", 1.5, True):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured,
                    "ASGI_BRIDGE['MAX_REQUEST_BODY_SIZE'] must be a positive integer",
                ),
            ):
                parse_settings({"MAX_REQUEST_BODY_SIZE": value})

    def test_body_receive_timeout(self) -> None:
        self.assertEqual(parse_settings({"BODY_RECEIVE_TIMEOUT": 30}).body_receive_timeout, 30.0)
        self.assertIsNone(parse_settings({"BODY_RECEIVE_TIMEOUT": None}).body_receive_timeout)
        for value in (0, -1, "30", True):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured,
                    "ASGI_BRIDGE['BODY_RECEIVE_TIMEOUT'] must be a positive number of seconds",
                ),
            ):
                parse_settings({"BODY_RECEIVE_TIMEOUT": value})

    def test_freeze_gc(self) -> None:
        self.assertIs(parse_settings({}).freeze_gc, True)
        self.assertIs(parse_settings({"FREEZE_GC": False}).freeze_gc, False)
        for value in (0, 1, "False", None):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured, "ASGI_BRIDGE['FREEZE_GC'] must be True or False"
                ),
            ):
                parse_settings({"FREEZE_GC": value})

    def test_lifespan_paths(self) -> None:
        self.assertEqual(parse_settings({}).lifespan, ())
        self.assertEqual(
            parse_settings({"LIFESPAN": ["app.lifespan.client"]}).lifespan, ("app.lifespan.client",)
        )
        for value in ("app.lifespan.client", [42], ["nodots"], None):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(ImproperlyConfigured, "ASGI_BRIDGE['LIFESPAN'] must"),
            ):
                parse_settings({"LIFESPAN": value})

    def test_background_shutdown_timeout(self) -> None:
        self.assertEqual(parse_settings({}).background_shutdown_timeout, 30.0)
        self.assertIsNone(
            parse_settings({"BACKGROUND_SHUTDOWN_TIMEOUT": None}).background_shutdown_timeout
        )
        with self.assertRaisesMessage(
            ImproperlyConfigured,
            "ASGI_BRIDGE['BACKGROUND_SHUTDOWN_TIMEOUT'] must be a positive number of seconds",
        ):
            parse_settings({"BACKGROUND_SHUTDOWN_TIMEOUT": 0})

    def test_not_a_dict(self) -> None:
        with self.assertRaisesMessage(
            ImproperlyConfigured, "The ASGI_BRIDGE setting must be a dict, not list."
        ):
            parse_settings([])


class StartupValidationTests(SimpleTestCase):
    @override_settings(ASGI_BRIDGE={"NOPE": 1})
    def test_handler_refuses_to_start(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "'NOPE'"):
            ASGIHandler()

    def test_override_settings_is_seen(self) -> None:
        self.assertIsNone(bridge_settings().max_request_body_size)
        with override_settings(ASGI_BRIDGE={"MAX_REQUEST_BODY_SIZE": 5}):
            self.assertEqual(bridge_settings().max_request_body_size, 5)
        self.assertIsNone(bridge_settings().max_request_body_size)


class ThreadsSettingTests(SimpleTestCase):
    def test_default_and_valid(self) -> None:
        self.assertEqual(parse_settings({}).threads, 32)
        self.assertEqual(parse_settings({"THREADS": 4}).threads, 4)

    def test_bad_values_named(self) -> None:
        for value in (0, -2, None, "8", 2.0, True):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured, "ASGI_BRIDGE['THREADS'] must be a positive integer"
                ),
            ):
                parse_settings({"THREADS": value})


class BackgroundSettingsTests(SimpleTestCase):
    def test_defaults_and_valid(self) -> None:
        self.assertEqual(parse_settings({}).background_threads, 4)
        self.assertEqual(parse_settings({}).background_queue_size, 1000)
        self.assertEqual(parse_settings({"BACKGROUND_THREADS": 1}).background_threads, 1)
        self.assertEqual(parse_settings({"BACKGROUND_QUEUE_SIZE": 5}).background_queue_size, 5)

    def test_bad_values_named(self) -> None:
        for key in ("BACKGROUND_THREADS", "BACKGROUND_QUEUE_SIZE"):
            for value in (0, -2, None, "8", 2.0, True):
                with (
                    self.subTest(key=key, value=value),
                    self.assertRaisesMessage(
                        ImproperlyConfigured, f"ASGI_BRIDGE[{key!r}] must be a positive integer"
                    ),
                ):
                    parse_settings({key: value})


class ThreadPoolSettingsTests(SimpleTestCase):
    def test_defaults(self) -> None:
        config = parse_settings({})
        self.assertEqual(config.thread_wait_timeout, 10.0)
        self.assertEqual(config.thread_queue_size, 1000)
        self.assertIsNone(config.metrics_log_interval)

    def test_values_and_none(self) -> None:
        config = parse_settings(
            {"THREAD_WAIT_TIMEOUT": 2, "THREAD_QUEUE_SIZE": 50, "METRICS_LOG_INTERVAL": 60}
        )
        self.assertEqual(
            (config.thread_wait_timeout, config.thread_queue_size, config.metrics_log_interval),
            (2.0, 50, 60.0),
        )
        config = parse_settings({"THREAD_WAIT_TIMEOUT": None, "THREAD_QUEUE_SIZE": None})
        self.assertIsNone(config.thread_wait_timeout)
        self.assertIsNone(config.thread_queue_size)

    def test_bad_values_named(self) -> None:
        cases = [
            ("THREAD_WAIT_TIMEOUT", "a positive number of seconds or None", (0, -1, "5", True)),
            ("THREAD_QUEUE_SIZE", "a positive integer or None", (0, -1, 1.5, "10", True)),
            ("METRICS_LOG_INTERVAL", "a positive number of seconds or None", (0, "60", False)),
        ]
        for key, expected, values in cases:
            for value in values:
                with (
                    self.subTest(key=key, value=value),
                    self.assertRaisesMessage(
                        ImproperlyConfigured, f"ASGI_BRIDGE[{key!r}] must be {expected}"
                    ),
                ):
                    parse_settings({key: value})


class WebSocketSettingsTests(SimpleTestCase):
    def test_defaults(self) -> None:
        config = parse_settings({})
        self.assertIs(config.websocket_origin_check, True)
        self.assertIs(config.websocket_allow_no_origin, True)
        self.assertEqual(config.websocket_allowed_origins, ())

    def test_allowed_origins(self) -> None:
        config = parse_settings({"WEBSOCKET_ALLOWED_ORIGINS": ["https://app.example.com"]})
        self.assertEqual(config.websocket_allowed_origins, ("https://app.example.com",))
        for value in ("https://app.example.com", ["app.example.com"], [1]):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured, "ASGI_BRIDGE['WEBSOCKET_ALLOWED_ORIGINS'] must"
                ),
            ):
                parse_settings({"WEBSOCKET_ALLOWED_ORIGINS": value})

    def test_flags_are_booleans(self) -> None:
        for key in ("WEBSOCKET_ORIGIN_CHECK", "WEBSOCKET_ALLOW_NO_ORIGIN"):
            with (
                self.subTest(key=key),
                self.assertRaisesMessage(ImproperlyConfigured, f"ASGI_BRIDGE[{key!r}] must be"),
            ):
                parse_settings({key: "yes"})


class WebSocketSendQueueSettingTests(SimpleTestCase):
    def test_default_and_validation(self) -> None:
        self.assertEqual(parse_settings({}).websocket_send_queue_size, 64)
        self.assertEqual(
            parse_settings({"WEBSOCKET_SEND_QUEUE_SIZE": 256}).websocket_send_queue_size, 256
        )
        for value in (0, -1, "64", None, True):
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(
                    ImproperlyConfigured, "ASGI_BRIDGE['WEBSOCKET_SEND_QUEUE_SIZE'] must be"
                ),
            ):
                parse_settings({"WEBSOCKET_SEND_QUEUE_SIZE": value})


class BroadcastSettingTests(SimpleTestCase):
    def test_default_is_the_memory_backend(self) -> None:
        broadcast = parse_settings({}).broadcast
        self.assertEqual(broadcast.backend, "asgi_bridge.broadcast.MemoryBackend")
        self.assertEqual(broadcast.backend_path, "asgi_bridge.broadcasting.memory.MemoryBackend")
        self.assertEqual((broadcast.location, broadcast.channel_layer), (None, None))

    def test_the_redis_backend_and_its_options(self) -> None:
        broadcast = parse_settings(
            {
                "BROADCAST": {
                    "BACKEND": "asgi_bridge.broadcast.RedisBackend",
                    "LOCATION": "redis://127.0.0.1:6379/0",
                    "OPTIONS": {"socket_connect_timeout": 1},
                    "PREFIX": "myproject:",
                    "CHANNEL_LAYER": "default",
                }
            }
        ).broadcast
        self.assertEqual(broadcast.backend_path, "asgi_bridge.broadcasting.redis.RedisBackend")
        self.assertEqual(broadcast.location, "redis://127.0.0.1:6379/0")
        self.assertEqual(dict(broadcast.options), {"socket_connect_timeout": 1})
        self.assertEqual((broadcast.prefix, broadcast.channel_layer), ("myproject:", "default"))
        # Any other dotted path is the user's own backend class.
        custom = parse_settings({"BROADCAST": {"BACKEND": "myapp.groups.Backend"}}).broadcast
        self.assertEqual(custom.backend_path, "myapp.groups.Backend")

    def test_bad_values_named(self) -> None:
        cases = [
            ("redis://x", "ASGI_BRIDGE['BROADCAST'] must be a dict"),
            ({"URL": "redis://x"}, "Unknown key 'URL' in ASGI_BRIDGE['BROADCAST']"),
            ({"BACKEND": "Redis"}, "ASGI_BRIDGE['BROADCAST']['BACKEND'] must be"),
            ({"LOCATION": "127.0.0.1:6379"}, "ASGI_BRIDGE['BROADCAST']['LOCATION'] must be"),
            ({"OPTIONS": ["db", 1]}, "ASGI_BRIDGE['BROADCAST']['OPTIONS'] must be"),
            ({"PREFIX": 1}, "ASGI_BRIDGE['BROADCAST']['PREFIX'] must be"),
            ({"CHANNEL_LAYER": True}, "ASGI_BRIDGE['BROADCAST']['CHANNEL_LAYER'] must be"),
        ]
        for value, message in cases:
            with (
                self.subTest(value=value),
                self.assertRaisesMessage(ImproperlyConfigured, message),
            ):
                parse_settings({"BROADCAST": value})

    @override_settings(ASGI_BRIDGE={"BROADCAST": {"BACKEND": "asgi_bridge.broadcast.RedisBackend"}})
    def test_the_redis_backend_needs_a_location(self) -> None:
        from asgi_bridge.broadcasting import groups

        with self.assertRaisesMessage(
            ImproperlyConfigured, "ASGI_BRIDGE['BROADCAST']['LOCATION'] must be set"
        ):
            groups()
