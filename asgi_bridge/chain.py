"""The middleware chain: Django's sync chain in short visits to a thread, or its async chain."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction
from django.core.handlers import exception
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.deprecation import MiddlewareMixin
from django.utils.log import log_response
from django.utils.module_loading import import_string

from .instrumentation import middleware_inside
from .threads import from_request_thread
from .websockets.consumers import consumer_view, is_consumer

logger = logging.getLogger("django.request")
convert_exception_to_response = exception.convert_exception_to_response

# Hooks that Django's async chain wraps in sync_to_async when they are plain functions.
_HOOKS = ("process_view", "process_exception", "process_template_response")


def hops_in_async_mode(middleware: object) -> bool:
    """Whether Django's async chain would run part of this middleware on a thread."""
    if not getattr(middleware, "async_capable", False):
        return True
    # MiddlewareMixin.__acall__ runs process_request and process_response via sync_to_async.
    mixin = isinstance(middleware, type) and issubclass(middleware, MiddlewareMixin)
    if mixin and any(hasattr(middleware, half) for half in ("process_request", "process_response")):
        return True
    return any(
        hasattr(middleware, hook) and not iscoroutinefunction(getattr(middleware, hook))
        for hook in _HOOKS
    )


def middleware_hops_in_async_mode(paths: Iterable[str]) -> bool:
    """Whether any middleware in ``paths`` (settings.MIDDLEWARE) would hop to a thread."""
    return any(hops_in_async_mode(import_string(path)) for path in paths)


def _identity(request: HttpRequest) -> HttpResponseBase:
    raise NotImplementedError


# The code of the wrapper Django puts around each middleware and the view in a sync chain.
_CONVERTER_CODE = convert_exception_to_response(_identity).__code__


def runs_in_halves(middleware: object) -> bool:
    """Whether a middleware's sync ``__call__`` is MiddlewareMixin's own: its process_request
    and process_response halves, which can run in separate visits to a thread."""
    return (
        isinstance(middleware, MiddlewareMixin)
        and type(middleware).__call__ is MiddlewareMixin.__call__
        and not middleware.async_mode
    )


def middleware_in_halves(
    chain: Callable[[HttpRequest], Any], innermost: Callable[[HttpRequest], Any]
) -> list[MiddlewareMixin] | None:
    """The middleware of a sync chain, outermost first, if every one runs in halves; else None.

    Walks the chain as ``load_middleware`` built it: each middleware, and the view's
    ``innermost`` call, behind Django's exception converter (``functools.wraps`` records the
    wrapped callable as ``__wrapped__``).
    """
    found: list[MiddlewareMixin] = []
    handler: Any = chain
    while getattr(handler, "__code__", None) is _CONVERTER_CODE:
        wrapped = handler.__wrapped__
        if wrapped == innermost:
            return found
        middleware = middleware_inside(wrapped)
        if not runs_in_halves(middleware):
            return None
        found.append(cast(MiddlewareMixin, middleware))
        handler = wrapped.get_response
    return None


class PendingView(HttpResponseBase):
    """What the sync chain returns for an async view: the view's coroutine, to be awaited on the
    event loop with no thread held, and the rest of the chain, to run on a thread after.

    ``BaseHandler.get_response`` treats it as the response (and so does instrumentation that
    wraps it); ``resume`` hands what it did with it over to the real response.
    """

    def __init__(
        self,
        request: HttpRequest,
        view: Coroutine[Any, Any, Any],
        steps: Generator[Coroutine[Any, Any, Any], Any, HttpResponseBase],
    ) -> None:
        super().__init__()
        self.request = request
        self.view = view
        self.steps = steps

    def resume(self, result: Any, error: Exception | None) -> HttpResponseBase:
        """On the request's thread: the rest of the chain, given the view's result or error."""
        try:
            second = self.steps.send(result) if error is None else self.steps.throw(error)
        except StopIteration as done:
            response: Any = done.value
        else:
            second.close()
            self.steps.close()
            raise RuntimeError("The middleware chain awaited a second view.")
        # What get_response did after the chain returned this placeholder.
        closers = cast(Any, self)._resource_closers
        response._resource_closers.extend(closers)
        closers.clear()
        if response.status_code >= 400:
            log_response(
                "%s: %s",
                response.reason_phrase,
                self.request.path,
                response=response,
                request=self.request,
            )
        return cast(HttpResponseBase, response)

    def abandon(self) -> None:
        """The view was cancelled (the client left): close the rest of the chain unrun, and
        close what get_response meant the response to close (the request's uploaded files)."""
        self.view.close()
        self.steps.close()
        closers = cast(Any, self)._resource_closers
        for closer in closers:
            try:
                closer()
            except Exception:
                logger.exception("Error closing the request of an abandoned view")
        closers.clear()


class SyncChainHandler(BaseHandler):
    """Django's sync middleware chain, built exactly as WSGIHandler builds it.

    ``get_response`` runs on the request's pooled thread: the middleware, a sync view and any
    exception handling in one visit. When every middleware runs in halves (MiddlewareMixin,
    as all of Django's own do), the chain stops at an async view and returns a ``PendingView``:
    the view is awaited on the event loop with no thread held, and the chain's second half
    (template responses, process_response, exception middleware) runs in a second visit.
    Other middleware (a sync ``__call__`` of its own) cannot be split: the thread then awaits
    an async view on the loop, as Django's ``async_to_sync`` would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)
        # django-stubs does not declare the chain's private attributes.
        built = cast(Any, self)
        self.middleware = middleware_in_halves(built._middleware_chain, built._get_response)
        if self.middleware is not None:
            built._middleware_chain = self.start_chain

    @property
    def splits_async_views(self) -> bool:
        """Whether an async view is awaited with no thread held (every middleware in halves)."""
        return self.middleware is not None

    def start_chain(self, request: HttpRequest) -> HttpResponseBase:
        """The chain as one call: a response, or a PendingView at an async view."""
        steps = self.chain_steps(request)
        try:
            view = steps.send(None)
        except StopIteration as done:
            response: HttpResponseBase = done.value
            return response
        return PendingView(request, view, steps)

    def chain_steps(
        self, request: HttpRequest
    ) -> Generator[Coroutine[Any, Any, Any], Any, HttpResponseBase]:
        """What the nested sync chain does, flat: every process_request, the view, then every
        process_response in reverse, each behind Django's exception converter. Yields an async
        view's coroutine and is sent its result."""
        middleware = self.middleware
        assert middleware is not None
        response: Any = None
        entered = 0
        for instance in middleware:
            if hasattr(instance, "process_request"):
                try:
                    response = instance.process_request(request)
                except Exception as exc:
                    # As the converter around this middleware would: its own process_response
                    # does not run.
                    response = exception.response_for_exception(request, exc)
                    break
            entered += 1
            if response:
                break
        else:
            try:
                response = yield from self.view_steps(request)
            except Exception as exc:
                response = exception.response_for_exception(request, exc)
        for index in range(entered - 1, -1, -1):
            instance = middleware[index]
            if hasattr(instance, "process_response"):
                try:
                    response = instance.process_response(request, response)
                except Exception as exc:
                    response = exception.response_for_exception(request, exc)
        return cast(HttpResponseBase, response)

    def view_steps(
        self, request: HttpRequest
    ) -> Generator[Coroutine[Any, Any, Any], Any, HttpResponseBase]:
        """``BaseHandler._get_response``, except that an async view is yielded, not run in
        ``async_to_sync``: resolve, view middleware, the view, exception middleware, template
        response middleware and rendering."""
        response: Any = None
        callback, callback_args, callback_kwargs = self.resolve_request(request)
        for middleware_method in cast(Any, self)._view_middleware:
            response = middleware_method(request, callback, callback_args, callback_kwargs)
            if response:
                break
        if response is None:
            wrapped_callback = self.make_view_atomic(callback)
            try:
                if iscoroutinefunction(wrapped_callback):
                    response = yield wrapped_callback(request, *callback_args, **callback_kwargs)
                else:
                    response = wrapped_callback(request, *callback_args, **callback_kwargs)
            except Exception as e:
                response = self.process_exception_by_middleware(e, request)
                if response is None:
                    raise
        self.check_response(response, callback)
        if hasattr(response, "render") and callable(response.render):
            for middleware_method in cast(Any, self)._template_response_middleware:
                response = middleware_method(request, response)
                self.check_response(
                    response,
                    middleware_method,
                    name="%s.process_template_response"
                    % (middleware_method.__self__.__class__.__name__,),
                )
            try:
                response = response.render()
            except Exception as e:
                response = self.process_exception_by_middleware(e, request)
                if response is None:
                    raise
        return cast(HttpResponseBase, response)

    def make_view_atomic(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """The view as Django calls it. Where the chain cannot stop at an async view, the view
        is awaited on the loop from the thread.

        Django would wrap an async view in ``async_to_sync`` next; this wraps it first, in
        ``from_request_thread``, which does the same with less machinery (about 60 thousand
        fewer instructions a request, ``bench/instructions.py``).
        """
        if is_consumer(view):
            view = consumer_view(view)
        view = super().make_view_atomic(view)
        if iscoroutinefunction(view) and not self.splits_async_views:
            return from_request_thread(view)
        return view
