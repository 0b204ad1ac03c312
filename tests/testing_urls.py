"""Views that tests/test_testing.py drives through asgi_bridge.testing.ASGIClient."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# What the views saw and the events they wait on, keyed by name; tests clear it in setUp.
observed: dict[str, Any] = {}


@csrf_exempt
def echo(request: HttpRequest) -> JsonResponse:
    """What the request looked like to Django."""
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.GET.lists()),
            "accept": request.headers.get("accept"),
            "x_trace": request.headers.get("x-trace"),
            "host": request.get_host(),
            "secure": request.is_secure(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "content_type": request.content_type,
            "cookies": request.COOKIES,
        }
    )


@csrf_exempt
def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse({key: request.POST.getlist(key) for key in request.POST})


@csrf_exempt
def json_body(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"content_type": request.content_type, "data": json.loads(request.body)})


@csrf_exempt
def body_size(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.body)))


def set_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("set")
    response.set_cookie("flavour", request.GET.get("value", "ginger"))
    response.set_cookie("other", "kept")
    return response


def delete_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("deleted")
    response.delete_cookie("flavour")
    return response


def gated_parts() -> Iterator[bytes]:
    """Yields its second part only once the test sets observed["gate"] (a threading.Event)."""
    observed["produced"] = ["first"]
    yield b"first"
    observed["gate"].wait(5)
    observed["produced"].append("second")
    yield b"second"


def gated_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(gated_parts())


async def endless_events() -> AsyncIterator[bytes]:
    """Server-sent events as fast as they can be sent, forever; observed["events_closed"] says
    the finally ran."""
    observed["events_closed"] = False
    number = 0
    try:
        while True:
            yield f"data: {number}\n\n".encode()
            number += 1
            await asyncio.sleep(0)
    finally:
        observed["events_closed"] = True


def events(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(endless_events(), content_type="text/event-stream")


def failing(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


@csrf_exempt
def redirect_to(request: HttpRequest, status: int) -> HttpResponse:
    """Redirects with ``status`` to ?to= (default: echo/), relative or absolute."""
    response = HttpResponse(status=status)
    response["Location"] = request.GET.get("to", "/echo/")
    return response


def redirect_to_itself(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(status=302)
    response["Location"] = request.path
    return response


urlpatterns = [
    path("redirect/<int:status>/", redirect_to),
    path("redirect/loop/", redirect_to_itself),
    path("echo/", echo),
    path("form/", form),
    path("json/", json_body),
    path("body-size/", body_size),
    path("cookie/set/", set_cookie),
    path("cookie/delete/", delete_cookie),
    path("stream/gated/", gated_stream),
    path("events/", events),
    path("failing/", failing),
]
