"""asgiref_compat: every asgiref internal is found, and requests are served without each one.

The checks run once, at import, so each "without" case runs in a fresh interpreter that hides
the internal while it imports asgi_bridge, puts it back for asgiref's own use, and then serves
a sync and an async view through three middleware chains. The URLconf of those requests is
this module's ``urlpatterns``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import asgiref
from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, JsonResponse
from django.test import SimpleTestCase
from django.urls import path

from asgi_bridge import asgiref_compat
from asgi_bridge.threads import executor_context

ROOT = Path(__file__).resolve().parent.parent


def thread_name() -> str:
    return threading.current_thread().name


async def thread_of_a_sync_call() -> str:
    return await sync_to_async(thread_name)()


def sync_view(request: HttpRequest) -> JsonResponse:
    # async_to_sync in the view finds the loop through what the hop left on the thread, and
    # the thread-sensitive call inside it comes back to this thread.
    return JsonResponse(
        {"view": thread_name(), "sync_call": async_to_sync(thread_of_a_sync_call)()}
    )


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": thread_name(), "sync_call": await thread_of_a_sync_call()})


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


class InstalledAsgirefTests(SimpleTestCase):
    def test_every_internal_is_found(self) -> None:
        self.assertEqual(asgiref_compat.MISSING, ())
        self.assertTrue(asgiref_compat.CALL_ON_THREAD_AVAILABLE)
        self.assertTrue(asgiref_compat.CALL_ON_LOOP_AVAILABLE)
        self.assertTrue(asgiref_compat.LEGACY_EXECUTOR_CONTEXT_AVAILABLE)
        self.assertTrue(asgiref_compat.EXECUTOR_CONTEXT_AVAILABLE)

    def test_a_context_takes_an_executor_from_asgiref_3_13(self) -> None:
        self.assertEqual(
            asgiref_compat.CONTEXT_TAKES_EXECUTOR, minor(asgiref.__version__) >= (3, 13)
        )

    def test_the_installed_asgiref_is_a_tested_release(self) -> None:
        tested = {minor(version) for version in asgiref_compat.TESTED_VERSIONS}
        self.assertIn(minor(asgiref.__version__), tested)

    async def test_sync_to_async_sets_the_threadlocal_attributes_the_hop_sets(self) -> None:
        def attributes() -> set[str]:
            return set(vars(asgiref_compat.sync_to_async_threadlocal))

        seen = await sync_to_async(attributes, thread_sensitive=False)()
        self.assertLessEqual({"main_event_loop", "main_event_loop_pid", "task_context"}, seen)

    async def test_the_legacy_context_sends_calls_to_its_executor_and_leaves_it_running(
        self,
    ) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="given") as executor:
            async with asgiref_compat.LegacyExecutorContext(executor):
                self.assertIs(asgiref_compat.context_executor(), executor)
                ran_on = await sync_to_async(thread_name)()
            self.assertIsNone(asgiref_compat.context_executor())
            self.assertTrue(ran_on.startswith("given"))
            # The caller owns the executor: still usable after the context.
            self.assertTrue(executor.submit(thread_name).result(5).startswith("given"))

    async def test_context_executor_names_the_executor_of_the_entered_context(self) -> None:
        self.assertIsNone(asgiref_compat.context_executor())
        with ThreadPoolExecutor(1) as executor:
            async with executor_context(executor):
                self.assertIs(asgiref_compat.context_executor(), executor)


# Runs in a fresh interpreter: hides the internal named in argv[1] ("none", or "all") while
# asgi_bridge is imported, puts it back, then serves requests and prints what it saw as JSON.
SERVE_SCRIPT = r"""
import asyncio
import functools
import json
import sys
import threading

import asgiref.sync
from asgiref.sync import AsyncToSync, SyncToAsync, ThreadSensitiveContext


def hide_attribute(owner, name):
    value = vars(owner)[name]
    delattr(owner, name)
    return lambda: setattr(owner, name, value)


def replace_context_init(make):
    original = ThreadSensitiveContext.__init__
    ThreadSensitiveContext.__init__ = make(original)
    return lambda: setattr(ThreadSensitiveContext, "__init__", original)


def without_executor_parameter(original):
    def __init__(self):
        original(self)
    return __init__


def without_token(original):
    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        del self.token
    return __init__


HIDE = {
    "asgiref.sync._restore_context": lambda: hide_attribute(asgiref.sync, "_restore_context"),
    "SyncToAsync.threadlocal": lambda: hide_attribute(SyncToAsync, "threadlocal"),
    "AsyncToSync.executors": lambda: hide_attribute(AsyncToSync, "executors"),
    "AsyncToSync.loop_thread_executors": (
        lambda: hide_attribute(AsyncToSync, "loop_thread_executors")
    ),
    "SyncToAsync.thread_sensitive_context": (
        lambda: hide_attribute(SyncToAsync, "thread_sensitive_context")
    ),
    "SyncToAsync.context_to_thread_executor": (
        lambda: hide_attribute(SyncToAsync, "context_to_thread_executor")
    ),
    "ThreadSensitiveContext().token": lambda: replace_context_init(without_token),
    "ThreadSensitiveContext(executor=...)": (
        lambda: replace_context_init(without_executor_parameter)
    ),
}
hidden = {"none": [], "all": list(HIDE)}.get(sys.argv[1], [sys.argv[1]])
restore = [HIDE[name]() for name in hidden]
try:
    from asgi_bridge import asgiref_compat
finally:
    for put_back in reversed(restore):
        put_back()

import django
from django.core.signals import request_started
from django.test.utils import override_settings

django.setup(set_prefix=False)

from asgi_bridge import hop
from asgi_bridge.handler import ASGIHandler
from asgi_bridge.testing import ASGIClient

hops = {"call_on_thread": 0, "call_on_loop": 0}


def count(name):
    original = getattr(hop, name)

    def counted(*args, **kwargs):
        hops[name] += 1
        return original(*args, **kwargs)

    setattr(hop, name, counted)


count("call_on_thread")
count("call_on_loop")
started_on = []


def record_start(**kwargs):
    started_on.append(threading.current_thread().name)


request_started.connect(record_start)
DEFAULT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
CHAINS = {
    # Django's sync chain in halves: an async view is awaited with no thread held.
    "default": DEFAULT_MIDDLEWARE,
    # A middleware that cannot be split: the thread awaits an async view (from_request_thread).
    "whole call": [*DEFAULT_MIDDLEWARE, "tests.middleware.WholeCallMiddleware"],
    # Django's async chain, inside the request's thread-sensitive context.
    "async": ["tests.middleware.AsyncOnlyMiddleware"],
}


async def serve():
    served = {}
    for chain, middleware in CHAINS.items():
        with override_settings(MIDDLEWARE=middleware, ROOT_URLCONF="tests.test_asgiref_compat"):
            client = ASGIClient(ASGIHandler())
            for path in ("/sync/", "/async/"):
                started_on.clear()
                response = await client.get(path)
                served[f"{chain} {path}"] = {
                    "status": response.status_code,
                    "body": response.json() if response.status_code == 200 else response.text,
                    "started_on": list(started_on),
                }
    return served


served = asyncio.run(serve())
flags = (
    "CALL_ON_THREAD_AVAILABLE",
    "CALL_ON_LOOP_AVAILABLE",
    "CONTEXT_TAKES_EXECUTOR",
    "LEGACY_EXECUTOR_CONTEXT_AVAILABLE",
    "EXECUTOR_CONTEXT_AVAILABLE",
)
print(json.dumps({
    "missing": list(asgiref_compat.MISSING),
    "flags": {flag: getattr(asgiref_compat, flag) for flag in flags},
    "hops": hops,
    "served": served,
}))
"""

HIDDEN = (
    "asgiref.sync._restore_context",
    "SyncToAsync.threadlocal",
    "AsyncToSync.executors",
    "AsyncToSync.loop_thread_executors",
    "SyncToAsync.thread_sensitive_context",
    "SyncToAsync.context_to_thread_executor",
    "ThreadSensitiveContext().token",
    "ThreadSensitiveContext(executor=...)",
)


class ServedWithoutEachInternalTests(SimpleTestCase):
    """Each case hides one internal (or none, or all) from asgi_bridge's import-time checks."""

    running: ClassVar[dict[str, subprocess.Popen[str]]] = {}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        # All at once: each interpreter spends most of its second starting Django.
        cls.running = {
            case: subprocess.Popen(
                [sys.executable, "-c", SERVE_SCRIPT, case],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for case in ("none", *HIDDEN, "all")
        }

    @classmethod
    def tearDownClass(cls) -> None:
        for process in cls.running.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
        super().tearDownClass()

    def served_without(self, case: str) -> dict[str, Any]:
        process = self.running[case]
        stdout, stderr = process.communicate(timeout=120)
        self.assertEqual(process.returncode, 0, stderr)
        report: dict[str, Any] = json.loads(stdout.splitlines()[-1])
        return report

    def check_requests_served(self, report: dict[str, Any]) -> None:
        flags = report["flags"]
        # Where asgiref cannot be told the request's thread, asgiref picks one for all its code.
        pooled = flags["EXECUTOR_CONTEXT_AVAILABLE"]
        for request, seen in report["served"].items():
            with self.subTest(request=request):
                self.assertEqual(seen["status"], 200, seen["body"])
                self.assertEqual(len(seen["started_on"]), 1)
                request_thread = seen["started_on"][0]
                self.assertEqual(request_thread.startswith("asgi_bridge-"), pooled)
                body = seen["body"]
                if request.endswith("/sync/"):
                    self.assertEqual(body["view"], request_thread)
                    self.assertEqual(body["sync_call"], request_thread)
                    continue
                self.assertEqual(body["view"], "MainThread")
                self.assertEqual(body["sync_call"], request_thread)
        # The shortcuts are taken exactly where their internals are there.
        hops = report["hops"]
        self.assertEqual(hops["call_on_thread"] > 0, flags["CALL_ON_THREAD_AVAILABLE"] and pooled)
        self.assertEqual(hops["call_on_loop"] > 0, flags["CALL_ON_LOOP_AVAILABLE"] and pooled)

    def test_with_every_internal(self) -> None:
        report = self.served_without("none")
        self.assertEqual(report["missing"], [])
        self.assertTrue(
            all(
                report["flags"][flag]
                for flag in report["flags"]
                if flag != "CONTEXT_TAKES_EXECUTOR"
            )
        )
        self.check_requests_served(report)

    def test_without_restore_context(self) -> None:
        report = self.served_without("asgiref.sync._restore_context")
        self.assertEqual(report["missing"], ["asgiref.sync._restore_context"])
        self.assertFalse(report["flags"]["CALL_ON_THREAD_AVAILABLE"])
        self.assertFalse(report["flags"]["CALL_ON_LOOP_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_the_threadlocal_of_sync_to_async(self) -> None:
        report = self.served_without("SyncToAsync.threadlocal")
        self.assertEqual(report["missing"], ["SyncToAsync.threadlocal"])
        self.assertFalse(report["flags"]["CALL_ON_THREAD_AVAILABLE"])
        self.assertFalse(report["flags"]["CALL_ON_LOOP_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_the_executors_of_async_to_sync(self) -> None:
        report = self.served_without("AsyncToSync.executors")
        self.assertEqual(report["missing"], ["AsyncToSync.executors"])
        self.assertTrue(report["flags"]["CALL_ON_THREAD_AVAILABLE"])
        self.assertFalse(report["flags"]["CALL_ON_LOOP_AVAILABLE"])
        self.assertFalse(report["flags"]["LEGACY_EXECUTOR_CONTEXT_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_the_loop_thread_executors_of_async_to_sync(self) -> None:
        report = self.served_without("AsyncToSync.loop_thread_executors")
        self.assertEqual(report["missing"], ["AsyncToSync.loop_thread_executors"])
        self.check_requests_served(report)

    def test_without_the_thread_sensitive_context_variable(self) -> None:
        report = self.served_without("SyncToAsync.thread_sensitive_context")
        self.assertEqual(report["missing"], ["SyncToAsync.thread_sensitive_context"])
        self.check_requests_served(report)

    def test_without_the_executors_of_thread_sensitive_contexts(self) -> None:
        report = self.served_without("SyncToAsync.context_to_thread_executor")
        self.assertEqual(report["missing"], ["SyncToAsync.context_to_thread_executor"])
        self.assertFalse(report["flags"]["LEGACY_EXECUTOR_CONTEXT_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_the_token_of_a_thread_sensitive_context(self) -> None:
        report = self.served_without("ThreadSensitiveContext().token")
        self.assertEqual(report["missing"], ["ThreadSensitiveContext().token"])
        self.assertFalse(report["flags"]["LEGACY_EXECUTOR_CONTEXT_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_a_context_that_takes_an_executor(self) -> None:
        report = self.served_without("ThreadSensitiveContext(executor=...)")
        self.assertEqual(report["missing"], [])
        self.assertFalse(report["flags"]["CONTEXT_TAKES_EXECUTOR"])
        self.assertTrue(report["flags"]["EXECUTOR_CONTEXT_AVAILABLE"])
        self.check_requests_served(report)

    def test_without_any_of_them(self) -> None:
        report = self.served_without("all")
        self.assertEqual(report["missing"], [name for name in HIDDEN if "executor=" not in name])
        self.assertFalse(any(report["flags"].values()))
        self.check_requests_served(report)
