"""Sentry and OpenTelemetry see requests served by asgi_bridge as they see Django's handler
serve them.

Both libraries patch Django's classes for the whole process, so each run is a process of its own
(tests/instrumentation_driver.py): the same requests, one at a time and then all at once, through
Django's ``ASGIHandler`` and through asgi_bridge's, with the library set up before asgi_bridge is
imported, once it is imported, or after the handler is built. The tests compare the two
summaries, and check that no request's data ends up in another request's events.

The summaries must be equal: transactions, their spans (op, description and parent), error
events, request data, users, tags, breadcrumbs, and OpenTelemetry's spans, attributes and parents.
The driver takes out two differences that come from the middleware chain, not from how the
instrumentation sees requests (``span_summaries`` says why): middleware spans named ``__acall__``
under Django's async chain and ``__call__`` under the sync chain asgi_bridge runs sync middleware
in, and a ``db connect`` span that Django's async chain may add when it handles a view's
exception on a thread of its own.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from typing import Any
from unittest import skipIf

from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.test import SimpleTestCase

from asgi_bridge.instrumentation import DJANGO_CALL, find_django_call

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The requests made with alice's session cookie (tests/instrumentation_driver.py).
ALICE_REQUESTS = {"error-alice", "whoami", "login"}
# What the sync error view queries before it fails (tests/instrumentation_urls.py).
SYNC_ERROR_BREADCRUMBS = [
    "query: connect",
    'query: SELECT %s AS "a" FROM "auth_user" WHERE "auth_user"."username" = %s LIMIT 1',
]


@functools.cache
def recorded(library: str, handler: str, order: str) -> dict[str, Any]:
    """What ``library`` recorded of the driver's requests through ``handler``."""
    finished = subprocess.run(
        [sys.executable, "-m", "tests.instrumentation_driver", library, handler, order],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPOSITORY,
    )
    if finished.returncode != 0:
        raise AssertionError(
            f"The driver failed ({library}, {handler}, {order}):\n{finished.stderr}"
        )
    summary: dict[str, Any] = json.loads(finished.stdout)
    return summary


def request_of(marker: str) -> str:
    """Which of the driver's requests a marker names: ``mk-par-error-post`` -> ``error-post``."""
    return marker.split("-", 2)[2]


def made_by_alice(marker: str) -> bool:
    return request_of(marker) in ALICE_REQUESTS


class FindDjangoCallTests(SimpleTestCase):
    def test_django_call_when_nothing_wraps_it(self) -> None:
        # Without instrumentation, requests take the handler's usual path.
        self.assertIs(DJANGO_CALL, DjangoASGIHandler.__call__)
        self.assertIs(find_django_call(DjangoASGIHandler.__call__), DJANGO_CALL)

    def test_found_inside_wrappers(self) -> None:
        original = DjangoASGIHandler.__call__

        def closure_wrapper(*args: Any) -> Any:  # As sentry-sdk wraps it.
            return original(*args)

        @functools.wraps(closure_wrapper)
        def wraps_wrapper(*args: Any) -> Any:
            return closure_wrapper(*args)

        self.assertIs(find_django_call(closure_wrapper), original)
        self.assertIs(find_django_call(wraps_wrapper), original)

    def test_not_mistaken_for_a_wrapper_copying_its_name(self) -> None:
        @functools.wraps(DjangoASGIHandler.__call__)
        def lookalike(*args: Any) -> None:
            pass

        del lookalike.__wrapped__
        self.assertIsNone(find_django_call(lookalike))


class SentryParity(SimpleTestCase):
    maxDiff = None

    library = "sentry"

    def check(self, order: str) -> None:
        stock = recorded(self.library, "stock", order)
        bridge = recorded(self.library, "asgi_bridge", order)
        # The comparison is worth something only if stock Django gives what the tests expect.
        self.check_isolation(stock)
        self.assertEqual(bridge, stock)
        self.check_isolation(bridge)

    def check_isolation(self, summary: dict[str, Any]) -> None:
        self.assertEqual(summary["unkeyed"], [])
        transactions, errors = summary["transactions"], summary["errors"]
        # Every request has its transaction; every failing one its error event.
        self.assertEqual(len(transactions), 27)
        self.assertEqual(len(errors), 10)
        events = [("transaction", item) for item in transactions.items()]
        events += [("error", item) for item in errors.items()]
        for kind, (marker, events_of_request) in events:
            with self.subTest(kind=kind, marker=marker):
                self.assertEqual(len(events_of_request), 1)
                [event] = events_of_request
                self.assertEqual(event["other_requests_markers"], [])
                # No view, no tag: the 404 is the one request that reaches none.
                if request_of(marker) == "missing":
                    self.assertNotIn("marker", event["tags"])
                else:
                    self.assertEqual(event["tags"]["marker"], marker)
                self.assertIsNotNone(event["request"])
                self.assertEqual(event["request"]["query_string"], f"marker={marker}")
                if made_by_alice(marker):
                    self.assertEqual(event["user"]["username"], "alice")
                else:
                    self.assertNotIn("username", event["user"] or {})
                if kind == "transaction":
                    continues = request_of(marker) == "sync"
                    self.assertEqual(event["continues_incoming_trace"], continues)
                    continue
                self.assertEqual(event["trace"], "its own transaction's")
                # Only the sync error view's own query: none from an earlier request, nor the
                # ones Sentry makes for alice's user once the event is captured.
                own_query = event["request"]["url"].endswith("/error/sync/")
                self.assertEqual(event["breadcrumbs"], SYNC_ERROR_BREADCRUMBS if own_query else [])
                if request_of(marker) != "error-post":
                    self.assertIsNone(event["request"]["data"])
        for name, scope in summary["shared_scopes"].items():
            with self.subTest(scope=name):
                self.assertEqual(
                    scope,
                    {"event_processors_added": 0, "user": None, "tags": {}, "transaction": None},
                )


@skipIf(find_spec("sentry_sdk") is None, "sentry-sdk is not installed")
class SentryTests(SentryParity):
    def test_init_before_asgi_bridge_is_imported(self) -> None:
        self.check("before")

    def test_init_after_asgi_bridge_is_imported_before_the_handler_is_built(self) -> None:
        self.check("between")

    def test_init_after_the_handler_is_built(self) -> None:
        self.check("after")


@skipIf(find_spec("sentry_sdk") is None, "sentry-sdk is not installed")
class SentryWithoutMiddlewareSpansTests(SentryParity):
    """The integration's default. asgi_bridge then runs the middleware Sentry wraps in halves,
    and an async view holds no thread while it awaits."""

    library = "sentry-default"

    def test_the_chain_runs_in_halves_only_without_middleware_spans(self) -> None:
        program = (
            "import os, sentry_sdk\n"
            "from sentry_sdk.integrations.django import DjangoIntegration\n"
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.instrumentation_settings'\n"
            "sentry_sdk.init(dsn='http://public@127.0.0.1:9/1',"
            " integrations=[DjangoIntegration(middleware_spans=SPANS)])\n"
            "from asgi_bridge import get_asgi_application\n"
            "print(get_asgi_application().sync_handler.splits_async_views)\n"
        )
        for spans, splits in ((False, "True"), (True, "False")):
            with self.subTest(middleware_spans=spans):
                finished = subprocess.run(
                    [sys.executable, "-c", program.replace("SPANS", str(spans))],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    cwd=REPOSITORY,
                    env={**os.environ, "ASGI_BRIDGE_INSTRUMENTATION_DB": ":memory:"},
                )
                self.assertEqual(finished.returncode, 0, finished.stderr)
                self.assertEqual(finished.stdout.strip(), splits)

    def test_init_before_asgi_bridge_is_imported(self) -> None:
        self.check("before")


@skipIf(
    find_spec("opentelemetry.instrumentation.django") is None,
    "opentelemetry-instrumentation-django is not installed",
)
class OpenTelemetryTests(SimpleTestCase):
    maxDiff = None

    def test_instrument_before_asgi_bridge_is_imported(self) -> None:
        stock = recorded("opentelemetry", "stock", "before")
        bridge = recorded("opentelemetry", "asgi_bridge", "before")
        self.check_structure(stock)
        self.assertEqual(bridge, stock)
        self.check_structure(bridge)

    def test_instrument_after_the_handler_is_built(self) -> None:
        # Too late for both: the middleware it adds is not in the chain the handler built. Only
        # the views' own spans are recorded, and they have no parent.
        stock = recorded("opentelemetry", "stock", "after")
        bridge = recorded("opentelemetry", "asgi_bridge", "after")
        self.assertEqual(bridge, stock)
        for spans in stock["spans"].values():
            self.assertEqual([(span["name"], span["parent"]) for span in spans], [("view", None)])

    def check_structure(self, summary: dict[str, Any]) -> None:
        """A server span per request, the view's span its child; both about that request."""
        self.assertEqual(summary["unkeyed"], [])
        spans_by_marker = summary["spans"]
        self.assertEqual(len(spans_by_marker), 27)
        for marker, spans in spans_by_marker.items():
            with self.subTest(marker=marker):
                kinds = [span["kind"] for span in spans]
                server = spans[kinds.index("SERVER")]
                if request_of(marker) == "missing":
                    self.assertEqual(kinds, ["SERVER"])
                else:
                    self.assertEqual(sorted(kinds), ["INTERNAL", "SERVER"])
                    view = spans[kinds.index("INTERNAL")]
                    self.assertEqual(view["parent"], f"{server['name']} of {marker}")
                for span in spans:
                    self.assertEqual(span["other_requests_markers"], [])
                if request_of(marker) == "sync":
                    self.assertEqual(server["parent"], "remote b7ad6b7169203331 (incoming)")
                else:
                    self.assertIsNone(server["parent"])
