"""Lifespan startup freezes what is alive out of the garbage collector: once, and only for a
server's lifespan (not the test client's, not a server without lifespan)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.test import SimpleTestCase, override_settings

from asgi_bridge import garbage, get_asgi_application
from asgi_bridge.lifespan import TEST_CLIENT_EXTENSION
from asgi_bridge.testing import ASGIClient

from .asgi import http_scope

FREEZE_ON = override_settings(ASGI_BRIDGE={"FREEZE_GC": True})


@contextmanager
def fresh_process_gc() -> Iterator[int]:
    """As in a server process that has not frozen anything yet, not a test run; everything is
    unfrozen afterwards, and the test run's own rule (never_freeze) is back. Gives how many
    objects were frozen before: Python 3.12 freezes a few hundred of its own, 3.11 none."""
    garbage._frozen = False
    garbage._allowed = True
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
        garbage._frozen = False
        garbage._allowed = False


class Node:
    def __init__(self) -> None:
        self.me = self


class FreezeStartupObjectsTests(SimpleTestCase):
    def test_freezes_what_is_alive_once(self) -> None:
        kept = Node()
        with fresh_process_gc() as before:
            self.assertTrue(garbage.freeze_startup_objects())
            frozen = gc.get_freeze_count()
            # Everything alive is frozen, this test's own cycle among it: no generation has it.
            self.assertGreater(frozen - before, 1000)
            self.assertFalse(any(obj is kept for obj in gc.get_objects()))
            # A cycle made after the freeze is still collected.
            later = Node()
            dead = weakref.ref(later)
            del later
            gc.collect()
            self.assertIsNone(dead())
            self.assertFalse(garbage.freeze_startup_objects())
            self.assertEqual(gc.get_freeze_count(), frozen)

    def test_collects_garbage_before_freezing_it(self) -> None:
        with fresh_process_gc():
            cycle = Node()
            dead = weakref.ref(cycle)
            del cycle
            self.assertIsNotNone(dead(), "the collector ran before the freeze")
            garbage.freeze_startup_objects()
            self.assertIsNone(dead())


class TestRunTests(SimpleTestCase):
    def test_the_pytest_plugin_keeps_a_test_runs_objects_collectable(self) -> None:
        # Set by asgi_bridge.pytest_plugin when pytest started this run.
        self.assertFalse(garbage._allowed)
        before = gc.get_freeze_count()
        self.assertFalse(garbage.freeze_startup_objects())
        self.assertEqual(gc.get_freeze_count(), before)


class LifespanFreezeTests(SimpleTestCase):
    async def start_and_stop(self, scope: dict[str, Any]) -> None:
        communicator = ApplicationCommunicator(get_asgi_application(), scope)
        await communicator.send_input({"type": "lifespan.startup"})
        self.assertEqual(
            await communicator.receive_output(timeout=5), {"type": "lifespan.startup.complete"}
        )
        await communicator.send_input({"type": "lifespan.shutdown"})
        await communicator.receive_output(timeout=5)
        await communicator.wait(timeout=5)

    def lifespan_scope(self, **extra: Any) -> dict[str, Any]:
        return {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, **extra}

    @FREEZE_ON
    async def test_a_servers_lifespan_startup_freezes(self) -> None:
        with fresh_process_gc() as before:
            await self.start_and_stop(self.lifespan_scope())
            self.assertGreater(gc.get_freeze_count(), before)

    @override_settings(ASGI_BRIDGE={"FREEZE_GC": False})
    async def test_not_when_the_setting_is_off(self) -> None:
        with fresh_process_gc() as before:
            await self.start_and_stop(self.lifespan_scope())
            self.assertEqual(gc.get_freeze_count(), before)

    @FREEZE_ON
    async def test_not_for_the_test_clients_lifespan(self) -> None:
        with fresh_process_gc() as before:
            await self.start_and_stop(self.lifespan_scope(extensions={TEST_CLIENT_EXTENSION: {}}))
            async with ASGIClient(get_asgi_application()).lifespan():
                pass
            self.assertEqual(gc.get_freeze_count(), before)

    @FREEZE_ON
    async def test_not_without_a_server_lifespan(self) -> None:
        # daphne, Django's AsyncClient: startup runs before the first request, without freezing.
        with fresh_process_gc() as before:
            application = get_asgi_application()
            communicator = ApplicationCommunicator(application, http_scope("/"))
            await communicator.send_input({"type": "http.request"})
            await communicator.receive_output(timeout=5)
            await communicator.wait(timeout=5)
            self.assertTrue(application.lifespan.started)
            self.assertEqual(gc.get_freeze_count(), before)
