"""Serve a fixed set of requests under Sentry or OpenTelemetry and print what the library recorded.

    python -m tests.instrumentation_driver {sentry,opentelemetry} {stock,asgi_bridge} ORDER

tests/test_instrumentation.py runs this once per handler (Django's own ``ASGIHandler`` or
asgi_bridge's) and compares the two outputs. Both libraries patch Django's classes for the whole
process, hence a process per run. ORDER is when the library is set up: ``before`` asgi_bridge is
imported, as in a settings module; ``between`` importing the handler's module and building the
handler; ``after`` the handler is built, as a project calling ``sentry_sdk.init()`` in its
asgi.py after ``get_asgi_application()`` does.

The requests go through the application in-process, each in a task of its own as a server runs
them, first one at a time, then all at once. (Not through asgi_bridge's ASGIClient: it keeps
database connections open, as Django's test clients do, and the two handlers would then differ
in which requests connect.) Each request carries a ``marker`` (``mk-seq-...`` or ``mk-par-...``)
that its view records, so that every event can be traced to its request, and another request's
marker found in an event is a leak. The output is a JSON summary keyed by marker, free of
timings and random ids.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

ANONYMOUS, ALICE = "anonymous", "alice"
# Who asks, how, where, and the marker's suffix. The anonymous error after the ORM queries checks
# that their SQL breadcrumbs stayed with them; ``sync`` continues an incoming trace.
REQUESTS = [
    (ALICE, "GET", "/error/sync/", "error-alice"),
    (ANONYMOUS, "GET", "/error/sync/", "error-anonymous"),
    (ANONYMOUS, "POST", "/error/post/", "error-post"),
    (ANONYMOUS, "GET", "/error/async/", "error-async"),
    (ALICE, "GET", "/whoami/", "whoami"),
    (ANONYMOUS, "GET", "/sync/", "sync"),
    (ANONYMOUS, "GET", "/async/", "async"),
    (ANONYMOUS, "GET", "/stream/sync/", "stream-sync"),
    (ANONYMOUS, "GET", "/stream/async/", "stream-async"),
    (ANONYMOUS, "GET", "/missing/", "missing"),
    (ANONYMOUS, "GET", "/orm/", "orm"),
    (ANONYMOUS, "GET", "/orm/async/", "orm-async"),
    (ANONYMOUS, "GET", "/error/sync/", "error-after-orm"),
]
MARKER = re.compile(r"mk-(?:seq|par)-[a-z-]+[a-z]")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
INCOMING_TRACE_HEADERS = {
    "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01",
    "sentry-trace": f"{TRACE_ID}-{PARENT_SPAN_ID}-1",
}
# Differ from run to run: alice's session key.
VARYING_HEADERS = {"cookie"}


def markers_in(value: object) -> set[str]:
    return set(MARKER.findall(json.dumps(value, default=str)))


def own_marker(found: set[str], hint: str | None) -> str | None:
    """The marker an event belongs to: ``hint`` (from its request or exception), else the only
    one it mentions."""
    if hint is not None:
        return hint
    return next(iter(found)) if len(found) == 1 else None


def marker_of_query(query: object) -> str | None:
    match = MARKER.search(str(query or ""))
    return match[0] if match else None


class SentryRecorder:
    """sentry-sdk with the Django integration, recording envelopes in memory."""

    def __init__(self, middleware_spans: bool = True) -> None:
        self.envelopes: list[Any] = []
        self.scopes_before: dict[str, Any] = {}
        self.middleware_spans = middleware_spans

    def install(self) -> None:
        import sentry_sdk
        from sentry_sdk.envelope import Envelope
        from sentry_sdk.integrations.django import DjangoIntegration
        from sentry_sdk.transport import Transport

        envelopes = self.envelopes

        class MemoryTransport(Transport):
            def capture_envelope(self, envelope: Envelope) -> None:
                envelopes.append(envelope)

        sentry_sdk.init(
            dsn="http://public@127.0.0.1:9/1",
            transport=MemoryTransport(),
            traces_sample_rate=1.0,
            send_default_pii=True,
            integrations=[DjangoIntegration(middleware_spans=self.middleware_spans)],
        )

        from . import instrumentation_urls

        def tag_marker(request: Any) -> None:
            sentry_sdk.set_tag("marker", request.GET.get("marker"))

        instrumentation_urls.observers.append(tag_marker)

    def process_scopes(self) -> dict[str, Any]:
        """The scopes every request shares: what they hold (none of it from a request)."""
        import sentry_sdk

        shared = {
            "global": sentry_sdk.get_global_scope(),
            "isolation": sentry_sdk.get_isolation_scope(),
            "current": sentry_sdk.get_current_scope(),
        }
        return {
            name: {
                "event_processors": len(scope._event_processors),
                "user": scope._user,
                "tags": scope._tags,
                "transaction": scope._transaction,
            }
            for name, scope in shared.items()
        }

    def start(self) -> None:
        """Before the first request: what the shared scopes hold already."""
        self.scopes_before = self.process_scopes()

    def summary(self) -> dict[str, Any]:
        import sentry_sdk

        sentry_sdk.flush()
        transactions, errors = [], []
        for envelope in self.envelopes:
            for item in envelope.items:
                if item.type == "transaction":
                    transactions.append(item.payload.json)
                elif item.type == "event":
                    errors.append(item.payload.json)
        summary: dict[str, Any] = {"transactions": {}, "errors": {}, "unkeyed": []}
        trace_ids: dict[str, str] = {}
        for event in transactions:
            found = markers_in(event)
            query = (event.get("request") or {}).get("query_string")
            marker = own_marker(found, marker_of_query(query))
            summarized = self.transaction_summary(event)
            summarized["other_requests_markers"] = sorted(found - {marker})
            if marker is None:
                summary["unkeyed"].append(summarized)
                continue
            summary["transactions"].setdefault(marker, []).append(summarized)
            trace_ids[event["contexts"]["trace"]["trace_id"]] = marker
        for event in errors:
            found = markers_in(event)
            value = event["exception"]["values"][-1]["value"]
            marker = own_marker(found, marker_of_query(value))
            summarized = self.error_summary(event)
            summarized["other_requests_markers"] = sorted(found - {marker})
            trace_marker = trace_ids.get(event.get("contexts", {}).get("trace", {}).get("trace_id"))
            summarized["trace"] = (
                "its own transaction's"
                if trace_marker == marker
                else "no transaction's"
                if trace_marker is None
                else f"{trace_marker}'s transaction's"
            )
            if marker is None:
                summary["unkeyed"].append(summarized)
                continue
            summary["errors"].setdefault(marker, []).append(summarized)
        after = self.process_scopes()
        summary["shared_scopes"] = {
            name: {
                "event_processors_added": state["event_processors"]
                - self.scopes_before[name]["event_processors"],
                "user": state["user"],
                "tags": state["tags"],
                "transaction": state["transaction"],
            }
            for name, state in after.items()
        }
        return summary

    def transaction_summary(self, event: dict[str, Any]) -> dict[str, Any]:
        trace = event["contexts"]["trace"]
        return {
            "name": event.get("transaction"),
            "source": event.get("transaction_info", {}).get("source"),
            "op": trace.get("op"),
            "status": trace.get("status"),
            "continues_incoming_trace": trace.get("trace_id") == TRACE_ID,
            "request": request_summary(event.get("request")),
            "user": event.get("user"),
            "tags": event.get("tags"),
            "spans": span_summaries(event),
        }

    def error_summary(self, event: dict[str, Any]) -> dict[str, Any]:
        exception = event["exception"]["values"][-1]
        return {
            "exception": exception["type"],
            "mechanism": exception.get("mechanism", {}).get("type"),
            "transaction": event.get("transaction"),
            "request": request_summary(event.get("request")),
            "user": event.get("user"),
            "tags": event.get("tags"),
            "breadcrumbs": [
                f"{crumb.get('category')}: {crumb.get('message')}"
                for crumb in event.get("breadcrumbs", {}).get("values", ())
            ],
        }


def request_summary(request: dict[str, Any] | None) -> dict[str, Any] | None:
    if request is None:
        return None
    headers = request.get("headers") or {}
    return {
        "url": request.get("url"),
        "method": request.get("method"),
        "query_string": request.get("query_string"),
        "data": request.get("data"),
        "cookies": sorted(request.get("cookies") or ()),
        "headers": {
            name: "(varies)" if name.lower() in VARYING_HEADERS else value
            for name, value in headers.items()
        },
        "env": request.get("env"),
    }


def span_summaries(event: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A transaction's spans as (op, description, parent's op and description), sorted: their
    content and structure without timings, ids or the order in which they started.

    Two differences between the handlers are the middleware chain's, not the instrumentation's,
    and are taken out:

    - Sentry names a middleware span after the method the chain calls: ``__acall__`` in Django's
      async chain, ``__call__`` in the sync chain asgi_bridge runs sync middleware in. It is the
      same middleware doing the same work.
    - Django's async chain handles a view's exception in ``sync_to_async(response_for_exception,
      thread_sensitive=False)``: on a thread of the loop's default executor, whose database
      connection outlives the request, so whether Sentry's user lookup there opens one (a ``db
      connect`` span under ``got_request_exception``) depends on which executor thread it gets.
      asgi_bridge's sync chain handles it on the request's thread, already connected.
    """
    spans = event.get("spans", ())

    def name(span: dict[str, Any]) -> str:
        description = str(span.get("description"))
        if span.get("op") == "middleware.django":
            description = description.replace(".__acall__", ".__call__")
        return f"{span.get('op')} {description}"

    names = {span["span_id"]: name(span) for span in spans}
    names[event["contexts"]["trace"]["span_id"]] = "(transaction)"
    summaries = []
    for span in spans:
        op, description = name(span).split(" ", 1)
        parent = names.get(span.get("parent_span_id"), "(elsewhere)")
        if (op, description) == ("db", "connect") and parent.endswith("_got_request_exception"):
            continue
        summaries.append((op, description, parent))
    return sorted(summaries)


class OpenTelemetryRecorder:
    """opentelemetry-instrumentation-django, finished spans kept in memory."""

    def install(self) -> None:
        from opentelemetry import trace
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        # Both the old attribute names (http.method, http.status_code) and the stable ones
        # (http.request.method, http.response.status_code).
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "http/dup"
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument(tracer_provider=provider)
        tracer = provider.get_tracer("tests.instrumentation_driver")

        from . import instrumentation_urls

        def start_child_span(request: Any) -> None:
            # A child of whatever span is current in the view: the request's, if the context
            # reached the view.
            tracer.start_span("view", attributes={"marker": request.GET.get("marker")}).end()

        instrumentation_urls.observers.append(start_child_span)

    def start(self) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        spans = self.exporter.get_finished_spans()
        by_id = {span.context.span_id: span for span in spans}
        marker_of = {}
        for span in spans:
            attributes = dict(span.attributes or {})
            found = markers_in(attributes)
            marker_of[span.context.span_id] = own_marker(
                found, marker_of_query(attributes.get("marker") or attributes.get("http.url"))
            )
        summary: dict[str, Any] = {"spans": {}, "unkeyed": []}
        for span in spans:
            marker = marker_of[span.context.span_id]
            attributes = dict(span.attributes or {})
            parent = span.parent
            if parent is None:
                parent_description = None
            elif parent.span_id in by_id:
                parent_span = by_id[parent.span_id]
                parent_description = f"{parent_span.name} of {marker_of[parent.span_id]}"
            else:
                parent_description = f"remote {parent.span_id:016x}" + (
                    " (incoming)" if f"{parent.trace_id:032x}" == TRACE_ID else ""
                )
            summarized = {
                "name": span.name,
                "kind": span.kind.name,
                "status": span.status.status_code.name,
                "attributes": attributes,
                "parent": parent_description,
                "events": [
                    [event.name, dict(event.attributes or {}).get("exception.type")]
                    for event in span.events
                ],
                "other_requests_markers": sorted(markers_in(attributes) - {marker}),
            }
            if marker is None:
                summary["unkeyed"].append(summarized)
            else:
                summary["spans"].setdefault(marker, []).append(summarized)
        for spans_of_request in summary["spans"].values():
            spans_of_request.sort(key=lambda span: (span["kind"], span["name"]))
        return summary


RECORDERS: dict[str, Callable[[], SentryRecorder | OpenTelemetryRecorder]] = {
    "sentry": SentryRecorder,
    # The integration's default: no middleware spans, so asgi_bridge runs middleware in halves.
    "sentry-default": functools.partial(SentryRecorder, middleware_spans=False),
    "opentelemetry": OpenTelemetryRecorder,
}


def build_application(handler: str) -> Any:
    if handler == "stock":
        from django.core.asgi import get_asgi_application
    else:
        from asgi_bridge import get_asgi_application
    application = get_asgi_application()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_user("alice", "alice@example.com", "alice's password")
    return application


async def call(
    application: Any, method: str, path: str, marker: str, headers: dict[str, str], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Serve one request as a server would: in a task of its own, started from the server's
    context; the client stays until the response is complete. Its status and headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"marker={marker}".encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    body_sent = False
    complete = asyncio.Event()
    start: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif not message.get("more_body", False):
            complete.set()

    await asyncio.create_task(application(scope, receive, send))
    return start["status"], start.get("headers", [])


async def serve_requests(application: Any) -> None:
    """Log alice in, then make REQUESTS one at a time, then all at once."""
    status, headers = await call(application, "POST", "/login/", "mk-seq-login", {}, b"")
    assert status == 200, status
    cookies: SimpleCookie = SimpleCookie()
    for name, value in headers:
        if name.lower() == b"set-cookie":
            cookies.load(value.decode("latin1"))
    alice_cookie = "; ".join(f"{key}={morsel.value}" for key, morsel in cookies.items())

    async def make(phase: str, who: str, method: str, path: str, suffix: str) -> None:
        marker = f"mk-{phase}-{suffix}"
        headers = dict(INCOMING_TRACE_HEADERS) if suffix == "sync" else {}
        if who == ALICE:
            headers["cookie"] = alice_cookie
        body = b""
        if method == "POST":
            body = urlencode({"field": marker}).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
            headers["content-length"] = str(len(body))
        status, _ = await call(application, method, path, marker, headers, body)
        expected = 500 if suffix.startswith("error") else 404 if suffix == "missing" else 200
        assert status == expected, (marker, status)

    for request in REQUESTS:
        await make("seq", *request)
    await asyncio.gather(*(make("par", *request) for request in REQUESTS))


# Imported before the library is set up in the ``between`` order.
HANDLER_MODULES = {"stock": "django.core.handlers.asgi", "asgi_bridge": "asgi_bridge.handler"}


def main(library: str, handler: str, order: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        os.environ["ASGI_BRIDGE_INSTRUMENTATION_DB"] = os.path.join(directory, "db.sqlite3")
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.instrumentation_settings"
        recorder = RECORDERS[library]()
        if order == "before":
            assert "asgi_bridge.handler" not in sys.modules
            recorder.install()
        elif order == "between":
            importlib.import_module(HANDLER_MODULES[handler])
            recorder.install()
        application = build_application(handler)
        if order == "after":
            recorder.install()
        recorder.start()
        asyncio.run(serve_requests(application))
        summary = recorder.summary()
        from django.db import connections

        connections.close_all()
    print(json.dumps(summary, indent=1, sort_keys=True, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
