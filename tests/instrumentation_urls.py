"""Views the instrumentation parity tests drive: one of each kind of request an instrumentation
library has to follow (sync, async, streaming, errors, 404, login, POST body, ORM).

Every request carries a ``marker`` query parameter; each view hands the request to the
``observers`` the driver registered (Sentry sets a tag, OpenTelemetry starts a child span), so
that the tests can tell whose request each recorded event belongs to. Models are imported in the
views: the driver registers observers before Django is set up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# What the driver's instrumentation library records about a request, called from its view.
observers: list[Callable[[HttpRequest], None]] = []
# Long enough for concurrent requests to overlap in their views.
PAUSE = 0.01


def observe(request: HttpRequest) -> str:
    """Hand the request to the observers; its marker."""
    for observer in observers:
        observer(request)
    return request.GET.get("marker", "")


def sync_view(request: HttpRequest) -> HttpResponse:
    observe(request)
    time.sleep(PAUSE)
    return HttpResponse("sync")


async def async_view(request: HttpRequest) -> HttpResponse:
    observe(request)
    await asyncio.sleep(PAUSE)
    return HttpResponse("async")


def sync_parts() -> Iterator[bytes]:
    for index in range(3):
        yield b"part %d\n" % index


async def async_parts() -> AsyncIterator[bytes]:
    for index in range(3):
        await asyncio.sleep(0)
        yield b"part %d\n" % index


def sync_stream(request: HttpRequest) -> StreamingHttpResponse:
    observe(request)
    return StreamingHttpResponse(sync_parts())


async def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    observe(request)
    return StreamingHttpResponse(async_parts())


def sync_error(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.models import User

    marker = observe(request)
    time.sleep(PAUSE)
    # A breadcrumb of the request's own for the error event to carry.
    User.objects.filter(username=marker).exists()
    raise RuntimeError(f"sync view failed {marker}")


async def async_error(request: HttpRequest) -> HttpResponse:
    marker = observe(request)
    await asyncio.sleep(PAUSE)
    raise RuntimeError(f"async view failed {marker}")


@csrf_exempt
def post_error(request: HttpRequest) -> HttpResponse:
    marker = observe(request)
    # Parsed before failing, as a form view would: the error event shows the form.
    request.POST
    raise RuntimeError(f"post view failed {marker}")


@csrf_exempt
def log_in(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.models import User

    observe(request)
    login(request, User.objects.get(username="alice"))
    return HttpResponse("logged in")


def whoami(request: HttpRequest) -> HttpResponse:
    observe(request)
    return HttpResponse(request.user.get_username())


def orm_query(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.models import User

    marker = observe(request)
    # The marker reaches the query's parameters, and so Sentry's SQL breadcrumbs and spans.
    return HttpResponse(str(User.objects.filter(username=marker).exists()))


async def async_orm_query(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.models import User

    marker = observe(request)
    return HttpResponse(str(await User.objects.filter(username=marker).aexists()))


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("stream/sync/", sync_stream),
    path("stream/async/", async_stream),
    path("error/sync/", sync_error),
    path("error/async/", async_error),
    path("error/post/", post_error),
    path("login/", log_in),
    path("whoami/", whoami),
    path("orm/", orm_query),
    path("orm/async/", async_orm_query),
]
