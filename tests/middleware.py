"""Middleware the unit tests put in front of the views, to see where Django runs it."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from . import urls


class RecordingMiddleware(MiddlewareMixin):
    """An old-style middleware: Django's async chain runs each half on a thread."""

    def process_request(self, request: HttpRequest) -> None:
        urls.observed.setdefault("middleware_threads", []).append(threading.get_ident())

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        urls.observed.setdefault("middleware_threads", []).append(threading.get_ident())
        return response


class WholeCallMiddleware:
    """A sync middleware with a ``__call__`` of its own: it cannot run in halves."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        urls.observed.setdefault("middleware_threads", []).append(threading.get_ident())
        return self.get_response(request)


class AsyncOnlyMiddleware:
    """A natively async middleware: it never needs a thread."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        urls.observed.setdefault("middleware_threads", []).append(threading.get_ident())
        return await self.get_response(request)
