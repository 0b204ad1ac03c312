"""The ASGI lifespan protocol: hooks, signals, state, failures, and servers without lifespan."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings

from asgi_bridge import get_asgi_application, signals
from asgi_bridge.handler import ASGIHandler

from . import lifespan_hooks, urls
from .asgi import ServedLikeByAServer, body_of, collect_response, http_scope

HOOKS = "tests.lifespan_hooks."


def lifespan_scope(state: dict[str, Any] | None = None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    if state is not None:
        scope["state"] = state
    return scope


class Recorder:
    """A signal receiver noting the thread it ran on and the state it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, Any]]] = []

    def __call__(self, sender: Any, state: dict[str, Any], **kwargs: Any) -> None:
        self.calls.append((threading.get_ident(), state))


class LifespanTestCase(ServedLikeByAServer, SimpleTestCase):
    def setUp(self) -> None:
        lifespan_hooks.events.clear()
        urls.observed.clear()

    async def start(
        self, application: ASGIHandler, state: dict[str, Any] | None = None
    ) -> tuple[ApplicationCommunicator, dict[str, Any]]:
        communicator = ApplicationCommunicator(application, lifespan_scope(state))
        await communicator.send_input({"type": "lifespan.startup"})
        return communicator, await communicator.receive_output(timeout=5)

    async def stop(self, communicator: ApplicationCommunicator) -> dict[str, Any]:
        await communicator.send_input({"type": "lifespan.shutdown"})
        message = await communicator.receive_output(timeout=5)
        await communicator.wait(timeout=5)
        return message

    async def get(self, application: ASGIHandler, scope: dict[str, Any]) -> list[dict[str, Any]]:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request"})
        messages = await collect_response(communicator)
        await communicator.wait(timeout=5)
        return messages


@override_settings(
    ASGI_BRIDGE={"LIFESPAN": [HOOKS + "resource", HOOKS + "with_handler", HOOKS + "yields_nothing"]}
)
class LifespanProtocolTests(LifespanTestCase):
    async def test_startup_fills_the_state_and_shutdown_exits_hooks_in_reverse(self) -> None:
        state: dict[str, Any] = {}
        communicator, started = await self.start(get_asgi_application(), state)
        self.assertEqual(started, {"type": "lifespan.startup.complete"})
        self.assertEqual(sorted(state), ["handler_class", "resource"])
        self.assertEqual(state["handler_class"], "ASGIHandler")
        self.assertFalse(state["resource"].closed)
        self.assertEqual(await self.stop(communicator), {"type": "lifespan.shutdown.complete"})
        self.assertTrue(state["resource"].closed)
        self.assertEqual(
            lifespan_hooks.events,
            [
                "enter resource",
                "enter with_handler",
                "enter yields_nothing",
                "exit yields_nothing",
                "exit with_handler",
                "exit resource",
            ],
        )

    async def test_requests_read_their_copy_of_the_state_as_request_state(self) -> None:
        application = get_asgi_application()
        state: dict[str, Any] = {}
        communicator, _ = await self.start(application, state)
        # As servers do: each request gets a shallow copy of the lifespan state.
        messages = await self.get(application, http_scope("/state/", state=dict(state)))
        self.assertEqual(body_of(messages), b"handler_class,resource")
        [request_state] = urls.observed["states"]
        self.assertIs(request_state.resource, state["resource"])
        self.assertTrue(request_state.seen_by_view)
        self.assertNotIn("seen_by_view", state)
        await self.stop(communicator)

    async def test_signals_run_sync_receivers_off_the_loop_and_async_ones_on_it(self) -> None:
        on_startup, on_shutdown = Recorder(), Recorder()
        async_calls: list[int] = []

        async def async_receiver(sender: Any, state: dict[str, Any], **kwargs: Any) -> None:
            async_calls.append(threading.get_ident())
            state["from_signal"] = True

        signals.startup.connect(on_startup)
        signals.startup.connect(async_receiver)
        signals.shutdown.connect(on_shutdown)
        self.addCleanup(signals.startup.disconnect, on_startup)
        self.addCleanup(signals.startup.disconnect, async_receiver)
        self.addCleanup(signals.shutdown.disconnect, on_shutdown)
        state: dict[str, Any] = {}
        communicator, _ = await self.start(get_asgi_application(), state)
        await self.stop(communicator)
        loop_thread = threading.get_ident()
        [(startup_thread, startup_state)] = on_startup.calls
        [(shutdown_thread, _)] = on_shutdown.calls
        self.assertNotEqual(startup_thread, loop_thread)
        self.assertNotEqual(shutdown_thread, loop_thread)
        self.assertEqual(async_calls, [loop_thread])
        # Receivers see the state the hooks filled, and may add to it.
        self.assertIs(startup_state, state)
        self.assertIn("resource", state)
        self.assertTrue(state["from_signal"])

    async def test_a_server_without_lifespan_state_still_gets_request_state(self) -> None:
        application = get_asgi_application()
        communicator, started = await self.start(application, state=None)
        self.assertEqual(started["type"], "lifespan.startup.complete")
        messages = await self.get(application, http_scope("/state/"))
        self.assertEqual(body_of(messages), b"handler_class,resource")
        await self.stop(communicator)

    async def test_unknown_lifespan_message_is_an_error_naming_it(self) -> None:
        communicator = ApplicationCommunicator(get_asgi_application(), lifespan_scope({}))
        await communicator.send_input({"type": "lifespan.reboot"})
        with self.assertRaisesMessage(ValueError, "'lifespan.reboot'"):
            await communicator.wait(timeout=5)


class LifespanFailureTests(LifespanTestCase):
    @override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "resource", HOOKS + "fails_at_startup"]})
    async def test_startup_error_answers_failed_and_unwinds_entered_hooks(self) -> None:
        application = get_asgi_application()
        with self.assertLogs("asgi_bridge", "ERROR") as logs:
            communicator, started = await self.start(application, {})
            await communicator.wait(timeout=5)
        self.assertEqual(
            started,
            {"type": "lifespan.startup.failed", "message": "RuntimeError: database unreachable"},
        )
        self.assertIn("Traceback", logs.output[0])
        self.assertEqual(
            lifespan_hooks.events,
            ["enter resource", "enter fails_at_startup", "exit resource"],
        )
        self.assertFalse(application.lifespan.started)

    @override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "yields_a_number"]})
    async def test_a_hook_must_yield_a_mapping(self) -> None:
        with self.assertLogs("asgi_bridge", "ERROR"):
            _, started = await self.start(get_asgi_application(), {})
        self.assertEqual(started["type"], "lifespan.startup.failed")
        self.assertIn("'tests.lifespan_hooks.yields_a_number' yielded int", started["message"])

    @override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "resource", HOOKS + "fails_at_shutdown"]})
    async def test_shutdown_error_answers_failed_after_exiting_every_hook(self) -> None:
        state: dict[str, Any] = {}
        communicator, _ = await self.start(get_asgi_application(), state)
        with self.assertLogs("asgi_bridge", "ERROR"):
            stopped = await self.stop(communicator)
        self.assertEqual(
            stopped,
            {
                "type": "lifespan.shutdown.failed",
                "message": "RuntimeError: could not flush the queue",
            },
        )
        self.assertTrue(state["resource"].closed)

    async def test_startup_signal_error_answers_failed(self) -> None:
        def broken(**kwargs: Any) -> None:
            raise ValueError("no config")

        signals.startup.connect(broken)
        self.addCleanup(signals.startup.disconnect, broken)
        with self.assertLogs("asgi_bridge", "ERROR"):
            _, started = await self.start(get_asgi_application(), {})
        self.assertEqual(
            started, {"type": "lifespan.startup.failed", "message": "ValueError: no config"}
        )

    @override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "missing"]})
    def test_a_path_that_does_not_import_fails_when_the_application_is_built(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "'tests.lifespan_hooks.missing'"):
            get_asgi_application()

    @override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "not_a_hook"]})
    def test_a_path_to_something_not_callable_fails_when_the_application_is_built(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "which is not callable"):
            get_asgi_application()

    async def test_other_scope_types_still_raise_djangos_error(self) -> None:
        communicator = ApplicationCommunicator(get_asgi_application(), {"type": "other"})
        with self.assertRaisesMessage(
            ValueError, "Django can only handle ASGI/HTTP connections, not other."
        ):
            await communicator.wait(timeout=5)


@override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "resource"]})
class WithoutLifespanTests(LifespanTestCase):
    """Servers without lifespan (daphne): startup runs once, before the first request."""

    async def test_startup_runs_once_before_the_first_request(self) -> None:
        application = get_asgi_application()
        results = await asyncio.gather(
            *(self.get(application, http_scope("/state/")) for _ in range(3))
        )
        self.assertEqual([body_of(messages) for messages in results], [b"resource"] * 3)
        self.assertEqual(lifespan_hooks.events, ["enter resource"])
        first, second, _ = urls.observed["states"]
        self.assertIs(first.resource, second.resource)
        # Each request has its own copy: what one view sets, the next does not see.
        self.assertTrue(first.seen_by_view)
        self.assertIsNot(first._data, second._data)

    async def test_a_failing_startup_fails_the_request_and_is_retried(self) -> None:
        with override_settings(ASGI_BRIDGE={"LIFESPAN": [HOOKS + "fails_at_startup"]}):
            application = get_asgi_application()
            for _ in range(2):
                communicator = ApplicationCommunicator(application, http_scope("/"))
                await communicator.send_input({"type": "http.request"})
                with self.assertRaisesMessage(RuntimeError, "database unreachable"):
                    await communicator.wait(timeout=5)
        self.assertEqual(lifespan_hooks.events, ["enter fails_at_startup"] * 2)


class RequestStateTests(LifespanTestCase):
    async def test_empty_state_when_the_server_gives_none(self) -> None:
        messages = await self.get(get_asgi_application(), http_scope("/state/"))
        self.assertEqual(messages[0]["status"], 200)
        self.assertEqual(body_of(messages), b"")
        [state] = urls.observed["states"]
        with self.assertRaisesMessage(AttributeError, "request.state has no 'client'"):
            state.client
