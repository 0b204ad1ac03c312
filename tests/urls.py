"""Views the unit tests drive through the handler; each records what the tests need to observe."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.db import transaction
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.middleware.csrf import get_token
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from asgi_bridge.background import after_response
from asgi_bridge.broadcasting import broadcast, broadcast_sync, subscribe
from asgi_bridge.sse import EventStreamResponse
from asgi_bridge.websockets import WebSocket, websocket

# What the views saw, keyed by name; tests clear it in setUp.
observed: dict[str, Any] = {}


def hello(request: HttpRequest) -> HttpResponse:
    observed["view_thread"] = threading.get_ident()
    return HttpResponse("Hello World!")


async def async_hello(request: HttpRequest) -> HttpResponse:
    observed["view_thread"] = threading.get_ident()
    return HttpResponse("Hello async!")


def sync_parts(count: int, fail_at: int = -1, size: int = 0) -> Iterator[bytes]:
    observed["yielded"] = 0
    observed["closed"] = False
    try:
        for index in range(count):
            if index == fail_at:
                raise ValueError(f"part {index} failed")
            observed["yielded"] += 1
            observed.setdefault("stream_threads", set()).add(threading.get_ident())
            yield (b"part %d\n" % index).ljust(size, b".")
    finally:
        observed["closed"] = True


async def async_parts(count: int) -> AsyncIterator[bytes]:
    observed["closed"] = False
    try:
        for index in range(count):
            await asyncio.sleep(0)
            yield b"part %d\n" % index
    finally:
        observed["closed"] = True


def sync_stream(request: HttpRequest) -> StreamingHttpResponse:
    observed["view_thread"] = threading.get_ident()
    count, fail_at = int(request.GET.get("n", "5")), int(request.GET.get("fail", "-1"))
    size = int(request.GET.get("size", "0"))
    return StreamingHttpResponse(sync_parts(count, fail_at, size))


def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(async_parts(int(request.GET.get("n", "5"))))


def big_part_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"x" * (2**16 * 2 + 10)]))


class TrackedFileResponse(FileResponse):
    """A FileResponse whose reading and closing the tests can observe.

    The file stays a plain open() file, the only kind pathsend may send; its reads cannot be
    counted, so "file_reads" records how far it had been read when the response was closed.
    """

    def close(self) -> None:
        file = self.file_to_stream
        if file is not None and not file.closed and file.tell():
            observed["file_reads"] = file.tell()
        super().close()
        observed["file_closed"] = file is None or file.closed


def file_download(request: HttpRequest) -> FileResponse:
    response = TrackedFileResponse(open(observed["file_path"], "rb"))  # noqa: SIM115
    if request.GET.get("encoding"):
        # What GZipMiddleware does to a FileResponse: new content, same file_to_stream.
        response.streaming_content = (part.upper() for part in response.streaming_content)
        response["Content-Encoding"] = request.GET["encoding"]
    return response


def prepared_response(request: HttpRequest) -> HttpResponseBase:
    """Returns the response a test built beforehand, so it can change the disk before sending."""
    response: HttpResponseBase = observed["prepared_response"]
    return response


def blocking(request: HttpRequest) -> HttpResponse:
    """Holds its thread until the test sets observed["release"]."""
    observed["view_thread"] = threading.get_ident()
    observed["view_started"].set()
    observed["release"].wait(5)
    observed["view_returned"] = True
    return HttpResponse("released")


async def async_transaction(request: HttpRequest) -> HttpResponse:
    """Opens a transaction in one sync call and ends it in another, awaiting in between."""
    atomic = transaction.atomic()

    def enter() -> int:
        atomic.__enter__()
        return threading.get_ident()

    def leave() -> int:
        atomic.__exit__(None, None, None)
        return threading.get_ident()

    observed["transaction_entered_on"] = await sync_to_async(enter)()
    observed["transaction_entered"].set()
    await observed["transaction_release"].wait()
    observed["transaction_left_on"] = await sync_to_async(leave)()
    return HttpResponse("committed")


@websocket
async def websocket_echo(request: HttpRequest, ws: WebSocket) -> None:
    """Echoes every message; records the thread it runs on and what it saw."""
    observed["websocket_view_thread"] = threading.get_ident()
    await ws.accept()
    async for message in ws:
        await ws.send(message)


@websocket(subprotocols=["chat.v2"])
async def websocket_chat(request: HttpRequest, ws: WebSocket, room: str) -> None:
    await ws.accept(subprotocol=ws.subprotocols[0])
    await ws.send_json({"room": room, "subprotocol": ws.subprotocols[0]})
    await ws.close()


@websocket
async def websocket_cookie(request: HttpRequest, ws: WebSocket) -> None:
    """Sends the handshake's "flavour" cookie."""
    await ws.accept()
    await ws.send(request.COOKIES.get("flavour", "none"))
    await ws.close()


def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.user.get_username() or "anonymous")


@websocket
async def websocket_whoami(request: HttpRequest, ws: WebSocket) -> None:
    """Sends the handshake's user name, as the session and auth middleware found it."""
    user = await request.auser()  # type: ignore[attr-defined]
    await ws.accept()
    await ws.send(user.get_username() or "anonymous")
    await ws.close()


@websocket
async def websocket_count_users(request: HttpRequest, ws: WebSocket) -> None:
    """Sends how many users the database holds, and the thread the ORM ran that on."""
    from django.contrib.auth.models import User

    def count() -> dict[str, int]:
        return {"users": User.objects.count(), "thread": threading.get_ident()}

    await ws.accept()
    await ws.send_json(await sync_to_async(count)())
    await ws.close()


@websocket
async def websocket_room(request: HttpRequest, ws: WebSocket, name: str) -> None:
    """Joins the group ``name``; "say:<text>" broadcasts the text to the others, "json:<text>"
    broadcasts {"said": text} to everyone, "bytes:<text>" the bytes, "leave" leaves."""
    await ws.accept()
    await ws.join(name)
    await ws.send("joined")
    async for message in ws:
        assert isinstance(message, str)
        kind, _, text = message.partition(":")
        if kind == "say":
            await broadcast(name, text, exclude=ws)
        elif kind == "json":
            await broadcast(name, {"said": text})
        elif kind == "bytes":
            await broadcast(name, text.encode())
        elif kind == "leave":
            await ws.leave(name)
            await ws.send("left")


async def group_events(request: HttpRequest, name: str) -> EventStreamResponse:
    """Server-sent events of what is broadcast to the group ``name``."""
    return EventStreamResponse(subscribe(name), ping=None)


def announce(request: HttpRequest, name: str) -> HttpResponse:
    """A sync view that broadcasts ?text= to the group ``name``."""
    broadcast_sync(name, request.GET["text"])
    return HttpResponse("announced")


@websocket
async def websocket_denied(request: HttpRequest, ws: WebSocket) -> HttpResponse:
    return HttpResponse("not for you", status=403)


@websocket
async def websocket_fails(request: HttpRequest, ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive()
    raise ValueError("the view failed")


@websocket
async def websocket_waiting(request: HttpRequest, ws: WebSocket) -> None:
    """Accepts, then waits for a message without holding anything."""
    await ws.accept()
    gate = observed["websocket_gate"]
    gate.arrived += 1
    message = await ws.receive()
    await ws.send(message)


@websocket
async def websocket_undecided(request: HttpRequest, ws: WebSocket) -> None:
    """Neither accepts nor denies: waits until it is cancelled."""
    await asyncio.Event().wait()


async def async_handoff(request: HttpRequest) -> HttpResponse:
    """Sets observed["async_started"], then waits for observed["async_release"] (asyncio)."""
    observed["async_started"].set()
    await observed["async_release"].wait()
    return HttpResponse("through the gate")


def meeting(request: HttpRequest) -> HttpResponse:
    """Returns once as many requests as the barrier expects are in their views at once."""
    observed.setdefault("meeting_threads", []).append(threading.get_ident())
    observed["barrier"].wait()
    return HttpResponse("met")


async def async_waiting(request: HttpRequest) -> HttpResponse:
    observed["view_thread"] = threading.get_ident()
    observed["view_started"].set()
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        observed["view_cancelled"] = True
        raise
    return HttpResponse("not cancelled")


def record_sync_to_async_thread() -> None:
    observed.setdefault("sync_to_async_threads", []).append(threading.get_ident())


async def async_parts_calling_sync_code() -> AsyncIterator[bytes]:
    await sync_to_async(record_sync_to_async_thread)()
    yield b"called"


def async_stream_calling_sync_code(request: HttpRequest) -> StreamingHttpResponse:
    """A sync view whose async iterator calls thread-sensitive sync code."""
    observed["view_thread"] = threading.get_ident()
    return StreamingHttpResponse(async_parts_calling_sync_code())


async def async_view_calling_sync_code(request: HttpRequest) -> HttpResponse:
    await sync_to_async(record_sync_to_async_thread)()
    return HttpResponse("called")


def lifespan_state(request: HttpRequest) -> HttpResponse:
    """Lists the request's lifespan state, and sets a value in its own copy."""
    observed.setdefault("states", []).append(request.state)
    names = ",".join(sorted(request.state))
    request.state.seen_by_view = True
    return HttpResponse(names)


def record_job(name: str) -> None:
    observed.setdefault("jobs", []).append(
        (name, threading.get_ident(), observed.get("final_body_sent", False))
    )


async def record_async_job(name: str) -> None:
    await asyncio.sleep(0)
    # Thread-sensitive sync code of async work runs off the loop, as it does in a request.
    await sync_to_async(record_job)(name + " (sync part)")
    observed.setdefault("jobs", []).append(
        (name, threading.get_ident(), observed.get("final_body_sent", False))
    )


def failing_job() -> None:
    raise ValueError("the mail server said no")


def queue_work(request: HttpRequest) -> HttpResponse:
    observed["view_thread"] = threading.get_ident()
    after_response(record_job, "first")
    after_response(failing_job)
    after_response(record_async_job, name="second")
    after_response(record_job, "third")
    return HttpResponse("queued")


async def async_queue_work(request: HttpRequest) -> HttpResponse:
    after_response(record_async_job, "from async view")
    return HttpResponse("queued")


def queue_gated_work(request: HttpRequest) -> HttpResponse:
    after_response(observed["gated_job"])
    return HttpResponse("queued")


def queue_work_then_stream(request: HttpRequest) -> StreamingHttpResponse:
    after_response(record_job, "after stream")
    return StreamingHttpResponse(sync_parts(1000))


def queue_work_after_release(request: HttpRequest) -> HttpResponse:
    """Holds its thread until released, then queues work: its client may be long gone."""
    observed["view_started"].set()
    observed["release"].wait(5)
    after_response(record_job, "late")
    return HttpResponse("late")


def user_count(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.models import User

    observed["view_thread"] = threading.get_ident()
    return HttpResponse(str(User.objects.count()))


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body)


class Gate:
    """Where async views and streams wait, without a thread, until a test opens it.

    Counts who has arrived, so a test knows when all the requests it sent are waiting here.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.opened = asyncio.Event()

    async def pass_through(self) -> None:
        self.arrived += 1
        await self.opened.wait()


async def async_wait_at_gate(request: HttpRequest) -> HttpResponse:
    await observed["gate"].pass_through()
    return HttpResponse("through the gate")


async def parts_around_gate() -> AsyncIterator[bytes]:
    yield b"before the gate\n"
    await observed["gate"].pass_through()
    yield b"through the gate\n"


async def async_stream_waiting_at_gate(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(parts_around_gate())


async def events_around_gate() -> AsyncIterator[str]:
    yield "before the gate"
    await observed["gate"].pass_through()
    yield "through the gate"


async def async_events_waiting_at_gate(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(events_around_gate(), ping=None)


async def async_visit(request: HttpRequest) -> JsonResponse:
    """Behind the default middleware: who is logged in (by ``auser()`` and by the lazy
    ``request.user``), a visit counter kept in the session, the messages left by the previous
    visit, and the CSRF token for the next POST."""
    user = await request.auser()
    visits = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", visits)
    previous = [str(message) for message in messages.get_messages(request)]
    messages.info(request, f"visit {visits}")
    return JsonResponse(
        {
            "user": user.get_username(),
            "lazy_user": request.user.get_username(),
            "visits": visits,
            "messages": previous,
            "csrf_token": get_token(request),
        }
    )


urlpatterns = [
    path("", hello),
    path("async/", async_hello),
    path("blocking/", blocking),
    path("meeting/", meeting),
    path("async/handoff/", async_handoff),
    path("ws/echo/", websocket_echo, name="websocket_echo"),
    path("ws/chat/<str:room>/", websocket_chat),
    path("ws/denied/", websocket_denied),
    path("ws/room/<str:name>/", websocket_room),
    path("announce/<str:name>/", announce),
    path("group-events/<str:name>/", group_events),
    path("whoami/", whoami),
    path("ws/whoami/", websocket_whoami),
    path("ws/count-users/", websocket_count_users),
    path("ws/cookie/", websocket_cookie),
    path("ws/fails/", websocket_fails),
    path("ws/waiting/", websocket_waiting),
    path("ws/undecided/", websocket_undecided),
    path("async/transaction/", async_transaction),
    path("async/waiting/", async_waiting),
    path("stream/sync/", sync_stream),
    path("stream/async/", async_stream),
    path("stream/big/", big_part_stream),
    path("file/", file_download),
    path("file/prepared/", prepared_response),
    path("echo/", echo),
    path("state/", lifespan_state),
    path("users/count/", user_count),
    path("after/", queue_work),
    path("after/async/", async_queue_work),
    path("after/gated/", queue_gated_work),
    path("after/stream/", queue_work_then_stream),
    path("after/late/", queue_work_after_release),
    path("stream/async/sync-code/", async_stream_calling_sync_code),
    path("async/sync-code/", async_view_calling_sync_code),
    path("async/gate/", async_wait_at_gate),
    path("stream/async/gate/", async_stream_waiting_at_gate),
    path("events/gate/", async_events_waiting_at_gate),
    path("async/visit/", async_visit),
]
