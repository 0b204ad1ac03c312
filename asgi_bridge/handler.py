"""ASGIHandler: serves Django over ASGI, a drop-in for django.core.handlers.asgi.ASGIHandler."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import tempfile
from collections.abc import Callable, Coroutine, Mapping
from contextlib import closing
from contextvars import ContextVar
from functools import cached_property, partial
from typing import IO, Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import asgi as django_asgi
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

from . import metrics
from .aio import take_back_cancellation
from .background import BackgroundWork, RequestWork, pending_work
from .broadcasting import groups
from .chain import PendingView, SyncChainHandler, middleware_hops_in_async_mode
from .conf import DEFAULT_BODY_MIN_RATE_GRACE, bridge_settings
from .exceptions import (
    RequestBodyTimeout,
    RequestBodyTooLarge,
    RequestBodyTooSlow,
    RequestBodyUnstorable,
    RequestHeaderInvalid,
    ThreadUnavailable,
)
from .instrumentation import DJANGO_CALL, DjangoASGIHandler
from .lifespan import Lifespan
from .request import ASGIRequest, get_script_prefix
from .sending import (
    PATHSEND,
    ResponseChannel,
    body_message,
    close_async_stream,
    pathsend_file,
    send_async_stream,
    send_sync_stream,
    start_message,
)
from .static import FileServers, file_servers
from .threads import (
    RequestThreadPool,
    caller_thread_executor,
    executor_context,
    on_request_thread,
    request_executor,
    request_thread_context,
    request_threads,
    sync_calls_on_request_thread,
)
from .types import Message, Receive, Scope, Send
from .websockets.consumers import consumer_view, is_consumer
from .websockets.handshake import request_scope as websocket_request_scope
from .websockets.handshake import send_denial
from .websockets.views import WebSocket, WebSocketClosed, WebSocketState

logger = logging.getLogger("django.request")

# Seconds a client refused for lack of threads is told to wait before it retries.
RETRY_AFTER_BUSY = "1"
# Seconds the end of a request waits for its disconnect listener to take its cancellation.
LISTENER_STOP_TIMEOUT = 5.0


def declared_body_size(scope: Scope) -> int | None:
    """The Content-Length the client declared, or None if absent or malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


# The scope of the request whose body read_body() reads: its signature is Django's, which has
# no scope, and may_have_body() needs the request's headers.
reading_scope: ContextVar[Scope | None] = ContextVar("asgi_bridge_reading_scope", default=None)


def may_have_body(scope: Scope | None) -> bool:
    """Whether a request can carry a body: in HTTP/1.x only one that declares it, with a
    non-zero Content-Length or a Transfer-Encoding; in HTTP/2 and 3, any (a stream may carry
    data without declaring its length). Without a scope, assume it can."""
    if scope is None or scope.get("http_version") not in ("1.0", "1.1"):
        return True
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False


async def receive_within(receive: Receive, timeout: float | None) -> Message:
    """Receive the next message, raising RequestBodyTimeout if none arrives within ``timeout``."""
    if timeout is None:
        return await receive()
    try:
        if sys.version_info >= (3, 11):
            # A timer on this task: wait_for() would run receive() in a task of its own, which
            # costs a request with a body timeout about 4% more instructions.
            async with asyncio.timeout(timeout):
                return await receive()
        return await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise RequestBodyTimeout(timeout) from None


class Interruption:
    """The disconnect listener's done-callback: cancels the task running the request's work.

    Disarmed once that work is over, since a callback already scheduled cannot be taken back;
    and it never adds its cancel to one already under way (the server's).
    """

    __slots__ = ("armed", "cancelled", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        assert task is not None
        self.task = task
        self.armed = True
        self.cancelled = False

    def __call__(self, _: asyncio.Task[Any]) -> None:
        if self.armed and not self.task.done() and not cancelling(self.task):
            self.cancelled = self.task.cancel()

    def disarm(self) -> bool:
        """Stop; whether a cancellation was ours alone, in which case it is taken back."""
        self.armed = False
        if not self.cancelled:
            return False
        self.cancelled = False
        uncancel = getattr(self.task, "uncancel", None)
        # Python 3.10 cannot tell our cancel from a later one of someone else's.
        return uncancel is None or uncancel() == 0


def cancelling(task: asyncio.Task[Any]) -> int:
    """How many cancellations of ``task`` are under way (always 0 before Python 3.11)."""
    count = getattr(task, "cancelling", None)
    return count() if count is not None else 0


def ends_on_this_cancel(
    response: HttpResponseBase, channel: ResponseChannel, error: BaseException
) -> bool:
    """Whether ``error`` is a cancellation that ends an event stream properly: one that is not
    the handler's own (that one comes with the client gone) on a stream with no natural end,
    such as the server's at the end of its graceful shutdown timeout. The cancellation is then
    taken back, and the response's last message sent as for a stream that ran out."""
    if not (
        isinstance(error, asyncio.CancelledError)
        and getattr(response, "ends_cleanly_when_cancelled", False)
        and not channel.client_left
    ):
        return False
    take_back_cancellation()
    logger.debug("Event stream cancelled (the server shutting down?): ending it properly.")
    return True


def raise_unexpected_error(task: asyncio.Task[Any]) -> None:
    """Re-raise what ``task`` raised, unless it is still ending, was cancelled or saw the
    client go away."""
    if not task.done() or task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, RequestAborted):
        raise error


class RequestCycle:
    """What one request has produced so far; filled on whichever thread produces it."""

    __slots__ = ("closed", "pending", "response", "scope", "started")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.response: HttpResponseBase | None = None
        # An async view the sync chain stopped at, to be awaited on the loop.
        self.pending: PendingView | None = None
        # Whether request_started was sent; set on the thread that sends it, as it does.
        self.started = False
        self.closed = False

    def start(self, handler_class: type) -> None:
        """Send request_started, on the request's thread."""
        self.started = True
        signals.request_started.send(sender=handler_class, scope=self.scope)

    def close(self, handler_class: type) -> None:
        """Close the response (which sends request_finished), or send request_finished if none.

        A request whose client left before its first visit to a thread still gets its
        request_started first: Django's handler sends it once the body is read, so receivers
        see each request begin and end once, whenever the client leaves.
        """
        if self.closed:
            return
        self.closed = True
        if not self.started:
            self.start(handler_class)
        if self.pending is not None:
            self.pending.abandon()
            self.pending = None
        if self.response is None:
            signals.request_finished.send(sender=handler_class)
        else:
            self.response.close()


def start_cycle(cycle: RequestCycle, handler_class: type) -> None:
    cycle.start(handler_class)


def close_cycle(cycle: RequestCycle, handler_class: type) -> None:
    cycle.close(handler_class)


# On the request's thread, after whatever still runs there.
start_in_thread = on_request_thread(start_cycle)
close_in_thread = on_request_thread(close_cycle)


class ASGIHandler(django_asgi.ASGIHandler):
    """Handler for ASGI requests, with the same overridable steps as Django's."""

    request_class = ASGIRequest
    # Set by __init__; subclasses that skip it (ASGIStaticFilesHandler) use the async chain.
    sync_handler: SyncChainHandler | None = None
    file_servers: FileServers | None = None
    # Size to chunk response bodies into for multiple response messages.
    chunk_size = 2**16

    def __init__(self) -> None:
        # Validates ASGI_BRIDGE at startup, so a typo fails loudly before the first request.
        config = bridge_settings()
        if config.metrics_log_interval is not None:
            metrics.log_metrics_every(config.metrics_log_interval)
        # Static and media files, served before anything else when ASGI_BRIDGE asks for them.
        self.file_servers = file_servers(config)
        self.sync_handler = self.load_sync_chain()
        if self.sync_handler is None:
            # Django's async chain. Not built beside the sync chain, which would instantiate
            # every middleware twice.
            super().__init__()
        # Imports the LIFESPAN hooks now, so that a wrong dotted path fails at startup.
        _ = self.lifespan
        # Built once: making a sync_to_async wrapper costs more than a request's own work.
        self._respond_in_thread = on_request_thread(self.respond_in_thread)
        self._resume_in_thread = on_request_thread(self.resume_in_thread)

    def load_sync_chain(self) -> SyncChainHandler | None:
        """Django's sync middleware chain, if it serves requests with fewer thread hops.

        Around sync middleware, Django's async chain hops to a thread and back for every
        middleware half; the sync chain runs them all, and a sync view, in one visit to the
        request's thread, as under WSGI. An async view is awaited on the event loop from there.
        Only a chain whose middleware is all natively async is better left async, and so is a
        subclass that overrides get_response_async.
        """
        if type(self).get_response_async is not BaseHandler.get_response_async:
            return None
        if not middleware_hops_in_async_mode(settings.MIDDLEWARE):
            return None
        return SyncChainHandler()

    @cached_property
    def lifespan(self) -> Lifespan:
        """This application's lifespan: its startup and shutdown hooks and their state."""
        return Lifespan(self)

    @cached_property
    def event_streams(self) -> set[asyncio.Task[Any]]:
        """The tasks sending an EventStreamResponse now: ended at lifespan shutdown."""
        return set()

    async def end_event_streams(self, timeout: float) -> None:
        """End every open event stream properly, as a stream that ran out, waiting up to
        ``timeout`` seconds: at shutdown, so that clients reconnect elsewhere rather than see
        a cut response. uvicorn and hypercorn cancel them at their graceful timeout, before
        the lifespan shutdown; other servers do not, so this cancels what is left."""
        streams = {task for task in self.event_streams if not task.done()}
        for task in streams:
            if not cancelling(task):
                task.cancel()
        if streams:
            await asyncio.wait(streams, timeout=timeout)

    @cached_property
    def background(self) -> BackgroundWork:
        """The after_response() work this application has started."""
        return BackgroundWork()

    def request_threads(self) -> RequestThreadPool:
        """The pool whose threads run the sync code of requests."""
        config = bridge_settings()
        return request_threads(config.threads, config.thread_wait_timeout, config.thread_queue_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self.file_servers is not None:
            if await self.file_servers(scope, receive, send):
                return
        elif kind != "http":
            if kind == "lifespan":
                await self.lifespan.serve(scope, receive, send)
                return
            if kind != "websocket":
                raise ValueError("Django can only handle ASGI/HTTP connections, not %s." % kind)
        lifespan = self.lifespan
        if not lifespan.started:
            await lifespan.start_without_server()
        if lifespan.state and "state" not in scope:
            # A server without lifespan state (daphne): each request gets a copy of ours.
            scope = {**scope, "state": dict(lifespan.state)}
        # All sync code of this request runs on one pooled thread, lent on first use and given
        # back once the request is over and that code has returned. Called from code running in
        # async_to_sync (Django's async tests), it runs on the waiting thread, as in Django.
        caller_thread = caller_thread_executor()
        executor = caller_thread or self.request_threads().executor()
        token = request_executor.set(executor)
        work_token = pending_work.set(RequestWork())
        try:
            django_call = DjangoASGIHandler.__call__
            if kind == "http" and django_call is not DJANGO_CALL:
                # Instrumentation (sentry-sdk) wrapped Django's __call__ to see each request:
                # its wrapper ends in Django's __call__, which ends in self.handle(). Entered
                # first, our context makes Django's ThreadSensitiveContext there a no-op.
                async with executor_context(executor):
                    await django_call(self, cast("dict[str, Any]", scope), receive, send)
                return
            # Django's __call__ refuses WebSockets: those go to handle_websocket() directly.
            handle = self.handle if kind == "http" else self.handle_websocket
            if self.runs_in_one_thread() and (
                kind == "websocket" or type(self).handle is ASGIHandler.handle
            ):
                # The thread is reached directly; the few paths that run sync code through
                # Django's own sync_to_async calls enter the thread-sensitive context themselves.
                await handle(scope, receive, send)
            else:
                async with executor_context(executor):
                    await handle(scope, receive, send)
        finally:
            pending_work.reset(work_token)
            request_executor.reset(token)
            if caller_thread is None:
                executor.shutdown()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body, run the view and send its response, unless the client leaves first."""
        channel = ResponseChannel(send, scope)
        try:
            self.check_declared_body_size(scope)
            token = reading_scope.set(scope)
            try:
                body_file = await self.read_body(receive)
            finally:
                reading_scope.reset(token)
        except RequestAborted:
            return
        except RequestBodyTooLarge as error:
            rejection = HttpResponse("413 Payload too large", status=413)
            async with request_thread_context():
                await self.reject_unread_body(scope, channel, rejection, error)
            return
        except RequestBodyTimeout as error:
            rejection = HttpResponse("408 Request Timeout", status=408)
            async with request_thread_context():
                await self.reject_unread_body(scope, channel, rejection, error)
            return
        except RequestBodyUnstorable as error:
            rejection = HttpResponse("503 Service Unavailable", status=503)
            rejection["Retry-After"] = "10"
            async with request_thread_context():
                await self.reject_unread_body(scope, channel, rejection, error)
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            cycle = RequestCycle(scope)
            try:
                await self.run_until_disconnect(
                    self.respond(scope, body_file, channel, cycle), receive, channel
                )
            finally:
                await self.finish(cycle)

    async def respond(
        self, scope: Scope, body_file: IO[bytes], channel: ResponseChannel, cycle: RequestCycle
    ) -> None:
        """Run the request through Django and send the response it gives."""
        try:
            await self.produce_response(scope, body_file, cycle)
        except ThreadUnavailable as refusal:
            await self.answer_busy(scope, channel, cycle, refusal)
            return
        if self.runs_in_one_thread():
            channel.finish_on_thread = partial(cycle.close, self.__class__)
        assert cycle.response is not None
        await self.send_response(cycle.response, channel)

    async def produce_response(
        self, scope: Scope, body_file: IO[bytes], cycle: RequestCycle
    ) -> None:
        """Run the request through Django, leaving its response on ``cycle``. Raises
        ThreadUnavailable if the request got no thread for its first sync code."""
        if self.runs_in_one_thread():
            # One visit to the request's thread: signal, request, middleware and sync view.
            await self._respond_in_thread(scope, body_file, cycle)
            if cycle.pending is not None:
                # An async view: awaited here, then the chain's second half in a second visit.
                await self.await_view(cycle)
        else:
            await start_in_thread(cycle, self.__class__)
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                cycle.response = self.prepare_response(cast(HttpResponseBase, error_response))
            else:
                cycle.response = await self.run_get_response(cast(ASGIRequest, request))

    def create_request(
        self, scope: Mapping[str, Any], body_file: IO[bytes]
    ) -> tuple[django_asgi.ASGIRequest, None] | tuple[None, HttpResponseBase]:
        """Django's create_request(); a header Django cannot parse is a 400, logged as Django
        logs a query string that is not UTF-8."""
        try:
            return super().create_request(scope, body_file)
        except RequestHeaderInvalid as error:
            logger.warning(
                "Bad Request (%s)", error, exc_info=sys.exc_info(), extra={"status_code": 400}
            )
            return None, HttpResponseBadRequest()

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a WebSocket: its handshake is a GET through the middleware to the view, which
        talks through the socket; a response before accept() denies the handshake."""
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # The client left before the handshake.
        socket = WebSocket(cast("dict[str, Any]", scope), receive, send)
        http_scope = websocket_request_scope(scope, socket)
        set_script_prefix(get_script_prefix(http_scope))
        cycle = RequestCycle(http_scope)
        metrics.open_websockets.value += 1
        try:
            try:
                await self.produce_response(http_scope, io.BytesIO(), cycle)
            except ThreadUnavailable as refusal:
                await send_denial(scope, send, self.busy_response(scope, cycle, refusal))
                return
            response = cycle.response
            if socket.client_state is WebSocketState.CONNECTING and response is not None:
                if response.status_code < 300 and not isinstance(response, WebSocketClosed):
                    # An HTTP view answered a WebSocket handshake: nothing serves one here.
                    response = HttpResponse("404 Not Found: no WebSocket view here.", status=404)
                await send_denial(scope, send, response)
        except OSError:
            pass  # The client left while the handshake was being denied.
        finally:
            metrics.open_websockets.value -= 1
            if socket.groups:
                groups().leave_all(socket)
            await self.finish(cycle)

    async def answer_busy(
        self, scope: Scope, channel: ResponseChannel, cycle: RequestCycle, refusal: Exception
    ) -> None:
        """503 for a request that got no thread."""
        await self.send_response(self.busy_response(scope, cycle, refusal), channel)

    def busy_response(self, scope: Scope, cycle: RequestCycle, refusal: Exception) -> HttpResponse:
        """The 503 for a request or handshake that got no thread, logged and counted. Django
        never saw it, so no signal fires for it."""
        cycle.closed = True
        logger.warning(
            "Service Unavailable: %s (%s %s)",
            refusal,
            scope.get("method", "WebSocket"),
            scope.get("path"),
            extra={"status_code": 503},
        )
        response = HttpResponse("503 Service Unavailable", status=503)
        response["Retry-After"] = RETRY_AFTER_BUSY
        metrics.busy_responses.value += 1
        return response

    def respond_in_thread(self, scope: Scope, body_file: IO[bytes], cycle: RequestCycle) -> None:
        """What a WSGI handler does for a request, except sending: runs on the request's thread.

        The response is stored on ``cycle`` here, not returned, so that it is closed even when
        the client has left and nobody awaits this any more.
        """
        assert self.sync_handler is not None
        cycle.start(self.__class__)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            response = cast(HttpResponseBase, error_response)
        else:
            response = self.sync_handler.get_response(request)
            if type(response) is PendingView:
                cycle.pending = response
                return
        self.conclude_in_thread(cycle, response)

    async def await_view(self, cycle: RequestCycle) -> None:
        """Await the async view the chain stopped at, holding no thread, then resume the chain."""
        pending = cycle.pending
        assert pending is not None
        try:
            async with sync_calls_on_request_thread():
                result = await pending.view
        except Exception as error:
            await self._resume_in_thread(cycle, None, error)
        else:
            await self._resume_in_thread(cycle, result, None)

    def resume_in_thread(self, cycle: RequestCycle, result: Any, error: Exception | None) -> None:
        """The chain's second half after an async view, on the request's thread."""
        pending = cycle.pending
        assert pending is not None
        cycle.pending = None
        self.conclude_in_thread(cycle, pending.resume(result, error))

    def conclude_in_thread(self, cycle: RequestCycle, response: HttpResponseBase) -> None:
        cycle.response = response = self.prepare_response(response)
        if not response.streaming:
            # The body is in memory, so nothing is left to do on this thread: closing now
            # (request_finished) saves the request a second visit after sending.
            cycle.close(self.__class__)

    def runs_in_one_thread(self) -> bool:
        """Whether a request's sync code runs in one visit to its thread (respond_in_thread)."""
        return self.sync_handler is not None and not self.overrides_run_get_response()

    def overrides_run_get_response(self) -> bool:
        # A subclass wrapping run_get_response (instrumentation does) must see every request.
        return type(self).run_get_response is not ASGIHandler.run_get_response

    async def run_until_disconnect(
        self,
        work: Coroutine[Any, Any, None],
        receive: Receive,
        channel: ResponseChannel | None = None,
    ) -> None:
        """Run ``work``, cancelling it if the client disconnects first; from the moment the
        disconnect is received, ``channel`` sends nothing more."""
        listener = asyncio.create_task(self.listen_until_disconnect(receive, channel))
        # One turn of the loop lets the listener see a disconnect that is already queued, so
        # that it wins over a pooled thread fast enough to answer before the loop turns again.
        await asyncio.sleep(0)
        if listener.done():
            work.close()
            raise_unexpected_error(listener)
            return
        # The work runs in this task, not one of its own: a disconnect cancels this task.
        interruption = Interruption(asyncio.current_task())
        listener.add_done_callback(interruption)
        try:
            await work
        except RequestAborted:
            pass  # The client went away while the response was being sent.
        except asyncio.CancelledError:
            if not interruption.disarm():
                raise
        finally:
            interruption.disarm()
            if not listener.done():
                # Usually waiting in receive(). Waited for, so that no task of the request
                # outlives the call (a server that runs the app in the task it awaits it from,
                # as uvicorn does and as wait_for() does since Python 3.12, would otherwise
                # see it still cancelling; found by tests/test_handler_properties.py). Bounded,
                # in case a server's receive() does not give way to a cancellation.
                listener.cancel()
                await asyncio.wait((listener,), timeout=LISTENER_STOP_TIMEOUT)
            if listener.done() and not listener.cancelled():
                # Seen, so that asyncio does not log it when a cancellation is on its way out.
                listener.exception()
        raise_unexpected_error(listener)

    async def run_get_response(self, request: ASGIRequest) -> HttpResponseBase:  # type: ignore[override]
        """Get the response: through the sync chain on the request's thread, or async."""
        if self.sync_handler is not None:
            response = await sync_to_async(self.sync_handler.get_response)(request)
            if type(response) is PendingView:
                response = await self.complete_pending_view(response)
        else:
            response = await self.get_response_async(request)
        return self.prepare_response(response)

    async def complete_pending_view(self, pending: PendingView) -> HttpResponseBase:
        """Await the async view the chain stopped at, then resume the chain on the thread."""
        try:
            result = await pending.view
        except Exception as error:
            return await sync_to_async(pending.resume)(None, error)
        except BaseException:
            await sync_to_async(pending.abandon)()
            raise
        return await sync_to_async(pending.resume)(result, None)

    def make_view_atomic(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """The view as Django's async chain calls it; a Channels consumer becomes a view."""
        if is_consumer(view):
            view = consumer_view(view)
        return super().make_view_atomic(view)

    def prepare_response(self, response: HttpResponseBase) -> HttpResponseBase:
        """Mark a response as this handler's, as Django does, and size its file reads."""
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        # The server does the low-level chunking, so a file is read in large blocks.
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response

    async def finish(self, cycle: RequestCycle) -> None:
        """End the request: exactly one request_finished, from response.close() if any, then
        start the request's after_response() work."""
        try:
            try:
                if getattr(cycle.response, "is_async", False):
                    async with request_thread_context():
                        await close_async_stream(cast(HttpResponseBase, cycle.response))
            finally:
                if not cycle.closed:
                    # On the request's thread, after anything still running there.
                    await close_in_thread(cycle, self.__class__)
        finally:
            work = pending_work.get()
            if work is not None:
                work.start(self.background)

    async def listen_until_disconnect(
        self, receive: Receive, channel: ResponseChannel | None
    ) -> None:
        """listen_for_disconnect(), closing ``channel`` in the very step that receives the
        disconnect: the cancellation it causes lands a loop turn later, and the work must not
        send in between (found by tests/test_handler_properties.py)."""
        try:
            await self.listen_for_disconnect(receive)
        except RequestAborted:
            if channel is not None:
                channel.client_left = True
            raise

    async def listen_for_disconnect(self, receive: Receive) -> None:
        """Listen for disconnect from the client."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            # NGINX Unit and older granian send an empty http.request after the body.
            if (
                message["type"] == "http.request"
                and not message.get("body")
                and not message.get("more_body")
            ):
                continue
            raise AssertionError("Invalid ASGI message after request body: %s" % message["type"])

    def check_declared_body_size(self, scope: Scope) -> None:
        """Refuse, before reading it, a body whose Content-Length exceeds MAX_REQUEST_BODY_SIZE."""
        limit = bridge_settings().max_request_body_size
        if limit is not None and (declared_body_size(scope) or 0) > limit:
            raise RequestBodyTooLarge(limit)

    async def read_body(self, receive: Receive) -> IO[bytes]:
        """Read the HTTP body into a file that rolls over from memory to disk as it grows."""
        config = bridge_settings()
        limit, timeout = config.max_request_body_size, config.body_receive_timeout
        in_memory_limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        # Returned open: the caller owns it; every error path below closes it.
        body_file = tempfile.SpooledTemporaryFile(max_size=in_memory_limit, mode="w+b")  # noqa: SIM115
        loop = asyncio.get_running_loop()
        received = 0
        # The minimum rate is a deadline that each byte received pushes back by 1/BODY_MIN_RATE
        # s, as in Apache's mod_reqtimeout; only for a request that can have a body at all, so a
        # bodyless GET arms no timer.
        min_rate = config.body_min_rate if may_have_body(reading_scope.get()) else None
        deadline = 0.0
        if min_rate is not None:
            grace = DEFAULT_BODY_MIN_RATE_GRACE if timeout is None else timeout
            started = loop.time()
            deadline = started + grace
        try:
            while True:
                wait = timeout
                rate_bound = False
                if min_rate is not None:
                    remaining = deadline + received / min_rate - loop.time()
                    if wait is None or remaining < wait:
                        wait, rate_bound = max(remaining, 0.0), True
                try:
                    message = await receive_within(receive, wait)
                except RequestBodyTimeout:
                    if rate_bound and min_rate is not None:
                        raise RequestBodyTooSlow(
                            min_rate, received, loop.time() - started
                        ) from None
                    raise
                if message["type"] == "http.disconnect":
                    # Early client disconnect.
                    raise RequestAborted()
                body = message.get("body", b"")
                if body:
                    received += len(body)
                    if limit is not None and received > limit:
                        raise RequestBodyTooLarge(limit)
                    try:
                        if in_memory_limit and received > in_memory_limit:
                            # Past the rollover the file is on disk: keep disk writes off the
                            # loop.
                            await loop.run_in_executor(None, body_file.write, body)
                        else:
                            body_file.write(body)
                    except OSError as error:
                        # A full or failing temporary directory: the spool is closed (and so
                        # deleted) below, and the client told to come back later.
                        raise RequestBodyUnstorable(error) from error
                if not message.get("more_body", False):
                    break
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file

    async def reject_unread_body(
        self, scope: Scope, channel: ResponseChannel, response: HttpResponse, error: Exception
    ) -> None:
        """Answer 413, 408 or 503 without reading the rest of the body; signals fire as usual."""
        logger.log(
            logging.ERROR if response.status_code >= 500 else logging.WARNING,
            "%s: %s (%s %s)",
            response.reason_phrase,
            error,
            scope.get("method"),
            scope.get("path"),
            extra={"status_code": response.status_code},
        )
        set_script_prefix(get_script_prefix(scope))
        # The unread rest of the body must not be parsed as a next request on this connection.
        response["Connection"] = "close"
        await self.send_and_close(response, channel, scope)

    async def send_and_close(
        self, response: HttpResponseBase, channel: ResponseChannel, scope: Scope
    ) -> None:
        """Send an error response built outside the view between request_started and
        request_finished (from closing it)."""
        cycle = RequestCycle(scope)
        try:
            try:
                await start_in_thread(cycle, self.__class__)
            except ThreadUnavailable:
                # The rejection says more than a 503 would; Django never saw the request.
                cycle.closed = True
            cycle.response = self.prepare_response(response)
            await self.send_response(response, channel)
        except RequestAborted:
            pass
        finally:
            await self.finish(cycle)

    async def send_response(self, response: HttpResponseBase, send: Send) -> None:
        """Encode and send a response out over ASGI."""
        channel = send if isinstance(send, ResponseChannel) else ResponseChannel(send)
        file = pathsend_file(response) if channel.pathsend and not channel.head_only else None
        if file is not None and not response.has_header("Content-Length"):
            response["Content-Length"] = str(file.size)
        await channel(start_message(response))
        if channel.head_only:
            # The body of a HEAD response is never produced; closing the response still happens.
            await channel(body_message(b"", False))
        elif file is not None:
            await channel({"type": PATHSEND, "path": file.path})
        elif not response.streaming:
            for chunk, last in self.chunk_bytes(response.content):  # type: ignore[attr-defined]
                await channel(body_message(cast(bytes, chunk), not last))
        else:
            if response.is_async:  # type: ignore[attr-defined]
                endless = getattr(response, "ends_cleanly_when_cancelled", False)
                task = asyncio.current_task() if endless else None
                if task is not None:
                    self.event_streams.add(task)
                try:
                    # The iterator's own sync_to_async calls run on the request's thread.
                    async with request_thread_context():
                        try:
                            await send_async_stream(response, channel, self.chunk_bytes)
                        except BaseException as error:
                            # Closed in the context its tasks were started in: once it exits,
                            # an EventStreamResponse's reader could not close a sync source on
                            # the thread (found by tests/test_handler_properties.py).
                            await close_async_stream(response)
                            if not ends_on_this_cancel(response, channel, error):
                                raise
                finally:
                    if task is not None:
                        self.event_streams.discard(task)
            else:
                await send_sync_stream(
                    response.streaming_content,  # type: ignore[attr-defined]
                    channel,
                    self.chunk_bytes,
                    channel.finish_on_thread,
                )
            await channel(body_message(b"", False))
