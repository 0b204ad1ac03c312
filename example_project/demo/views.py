"""The demo's views: one per asgi_bridge feature, each as small as the feature allows.

Sync and async views sit side by side on purpose: the handler must run both, stream from both
kinds of iterator, and clean up after both when a client goes away.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import hashlib
import io
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, TypeVar

from django.conf import settings
from django.core.exceptions import BadRequest
from django.core.files.base import ContentFile
from django.db import transaction
from django.forms import Form
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from asgi_bridge import broadcast, broadcast_sync, websocket
from asgi_bridge.background import after_response
from asgi_bridge.broadcasting import groups
from asgi_bridge.exceptions import BroadcastError
from asgi_bridge.sse import EventStreamResponse, ServerSentEvent, last_event_id
from asgi_bridge.websockets import WebSocket
from demo.bigfile import ensure_big_file
from demo.forms import NameForm, UploadForm
from demo.lifespan import write_lifespan_log
from demo.models import Item
from demo.probes import PROBES, TrackedFileResponse, record_event, view_thread_report

TEXT_PLAIN = "text/plain; charset=utf-8"
# Seconds between two ticks of the server-sent clock, and how soon a browser reconnects (ms).
TICK_INTERVAL = 0.3
RECONNECT_AFTER_MS = 500
READ_CHUNK_SIZE = 64 * 1024
# The longest a long poll waits for its release, whatever its ?seconds= asks.
LONG_POLL_MAX_SECONDS = 120.0

Number = TypeVar("Number", int, float)


class Digest(TypedDict):
    size: int
    sha256: str


# Pages -----------------------------------------------------------------------------------------


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/index.html")


@require_safe
def item_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/items.html", {"items": Item.objects.all()})


@require_safe
def item_count(request: HttpRequest) -> HttpResponse:
    # One query and no template: the end-to-end tests count the database connections it opens.
    return HttpResponse(str(Item.objects.count()), content_type=TEXT_PLAIN)


@require_http_methods(["GET", "HEAD", "POST"])
def name_form(request: HttpRequest) -> HttpResponse:
    form = NameForm(request.POST) if request.method == "POST" else NameForm()
    if form.is_bound and form.is_valid():
        return render(request, "demo/form_thanks.html", {"name": form.cleaned_data["name"]})
    return render(request, "demo/form.html", {"form": form})


@require_http_methods(["GET", "HEAD", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "demo/upload.html", {"form": UploadForm()})
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return JsonResponse({"error": describe_form_errors(form)}, status=400)
    uploaded = form.cleaned_data["file"]
    # Hash chunk by chunk so a large upload never has to sit in memory whole.
    return JsonResponse({"name": uploaded.name, **digest_chunks(uploaded.chunks())})


# Plain responses -------------------------------------------------------------------------------
# No method decorators here: these are the benchmarks' baseline, so they stay as bare as possible.


async def hello_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from an async view", content_type=TEXT_PLAIN)


def hello_sync(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from a sync view", content_type=TEXT_PLAIN)


@require_safe
async def item_list_json(request: HttpRequest) -> JsonResponse:
    rows = Item.objects.order_by("id").values("id", "name")
    return JsonResponse({"items": [row async for row in rows]})


# A database write that leaves the table as it was: bench/soak.py's ORM writes ------------------


@require_POST
def item_scratch_sync(request: HttpRequest) -> HttpResponse:
    """Create an Item and delete it again in one transaction; answer with the new row's id."""
    with transaction.atomic():
        item = Item.objects.create(name=request.POST.get("name", "scratch")[:100])
        item_id = item.pk
        item.delete()
    return HttpResponse(str(item_id), content_type=TEXT_PLAIN)


@require_POST
async def item_scratch_async(request: HttpRequest) -> HttpResponse:
    """The same through Django's async ORM, which runs each query on a pool thread."""
    item = await Item.objects.acreate(name=request.POST.get("name", "scratch")[:100])
    item_id = item.pk
    await item.adelete()
    return HttpResponse(str(item_id), content_type=TEXT_PLAIN)


# Request bodies and metadata -------------------------------------------------------------------


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


@csrf_exempt
@require_POST
def echo_digest(request: HttpRequest) -> JsonResponse:
    # request.read() rather than request.body: .body would hold the whole upload in memory
    # and is capped by DATA_UPLOAD_MAX_MEMORY_SIZE.
    return JsonResponse(digest_chunks(iter(lambda: request.read(READ_CHUNK_SIZE), b"")))


@csrf_exempt
def request_meta(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "query_string": request.META.get("QUERY_STRING", ""),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            # Servers and handlers disagree on int vs str here; normalise for comparisons.
            "remote_port": str(request.META.get("REMOTE_PORT", "")),
            "server_name": request.META.get("SERVER_NAME"),
            "server_port": str(request.META.get("SERVER_PORT", "")),
            "scheme": request.scheme,
            "host": request.get_host(),
            "headers": dict(request.headers),
            "get": dict(request.GET.lists()),
            "cookies": request.COOKIES,
        }
    )


# Streaming -------------------------------------------------------------------------------------


def stream_sync(request: HttpRequest) -> StreamingHttpResponse:
    count = read_query_number(request, "n", 5, int)
    delay = read_query_number(request, "delay", 0.0, float)
    return StreamingHttpResponse(count_chunks(count, delay), content_type=TEXT_PLAIN)


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    count = read_query_number(request, "n", 5, int)
    delay = read_query_number(request, "delay", 0.0, float)
    return StreamingHttpResponse(count_chunks_async(count, delay), content_type=TEXT_PLAIN)


async def stream_forever(request: HttpRequest) -> StreamingHttpResponse:
    token = request.GET.get("token", "")
    delay = read_query_number(request, "delay", 0.05, float)
    return StreamingHttpResponse(tick_forever_async(token, delay), content_type=TEXT_PLAIN)


def stream_forever_sync(request: HttpRequest) -> StreamingHttpResponse:
    token = request.GET.get("token", "")
    delay = read_query_number(request, "delay", 0.05, float)
    return StreamingHttpResponse(tick_forever(token, delay), content_type=TEXT_PLAIN)


def count_chunks(count: int, delay: float) -> Generator[str, None, None]:
    for i in range(count):
        if i:
            time.sleep(delay)
        yield f"chunk {i}\n"


async def count_chunks_async(count: int, delay: float) -> AsyncGenerator[str, None]:
    for i in range(count):
        if i:
            await asyncio.sleep(delay)
        yield f"chunk {i}\n"


def tick_forever(token: str, delay: float) -> Generator[str, None, None]:
    """Yield ticks until closed; the cleanup event proves the server closed the iterator."""
    try:
        for i in itertools.count():
            yield f"tick {i}\n"
            time.sleep(delay)
    finally:
        record_event("stream_cleanup", token)


async def tick_forever_async(token: str, delay: float) -> AsyncGenerator[str, None]:
    """Yield ticks until closed or cancelled; the cleanup event proves either happened."""
    try:
        for i in itertools.count():
            yield f"tick {i}\n"
            await asyncio.sleep(delay)
    finally:
        record_event("stream_cleanup", token)


# Server-sent events ----------------------------------------------------------------------------


@require_safe
def sse_page(request: HttpRequest) -> HttpResponse:
    """A page whose EventSource shows the clock's ticks; ``?count=`` passes on to the clock."""
    return render(request, "demo/sse.html", {"count": read_query_number(request, "count", 0, int)})


@require_safe
async def sse_clock(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(clock_ticks_async(*read_clock_query(request)))


@require_safe
def sse_clock_sync(request: HttpRequest) -> EventStreamResponse:
    return EventStreamResponse(clock_ticks(*read_clock_query(request)))


def read_clock_query(request: HttpRequest) -> tuple[int, int | None, float, str]:
    """The clock's first tick, how many to send (None: forever), their interval and token.

    Ticks are numbered on from the browser's Last-Event-ID, so a reconnecting page misses none.
    """
    last = last_event_id(request)
    first = int(last) + 1 if last is not None and last.isdigit() else 0
    count = read_query_number(request, "count", 0, int) or None
    interval = read_query_number(request, "interval", TICK_INTERVAL, float)
    return first, count, interval, request.GET.get("token", "")


def clock_tick(number: int, first: int) -> ServerSentEvent:
    now = timezone.now().isoformat(timespec="milliseconds")
    # The first event of a connection tells the browser how soon to come back after it ends.
    retry = RECONNECT_AFTER_MS if number == first else None
    return ServerSentEvent({"n": number, "time": now}, event="tick", id=number, retry=retry)


def clock_ticks(
    first: int, count: int | None, interval: float, token: str
) -> Generator[ServerSentEvent, None, None]:
    """Ticks until ``count`` are sent or the client leaves; the cleanup event proves the latter."""
    try:
        for number in itertools.islice(itertools.count(first), count):
            if number != first:
                time.sleep(interval)
            yield clock_tick(number, first)
    finally:
        record_event("sse_closed", token)


async def clock_ticks_async(
    first: int, count: int | None, interval: float, token: str
) -> AsyncGenerator[ServerSentEvent, None]:
    try:
        for number in itertools.islice(itertools.count(first), count):
            if number != first:
                await asyncio.sleep(interval)
            yield clock_tick(number, first)
    finally:
        record_event("sse_closed", token)


# Long polls ------------------------------------------------------------------------------------
# A long poll is an async view that awaits an event, not a thread: asgi_bridge lends a pooled
# thread only to sync code, so hundreds of them can wait at once (tests/e2e/ opens 500).


@dataclass
class LongPollGroup:
    """The long polls of one token waiting in this process, and the event that releases them."""

    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0


LONG_POLLS: dict[str, LongPollGroup] = {}


@require_safe
async def long_poll(request: HttpRequest) -> JsonResponse:
    """Answers once its token is released (POST /long-poll/release/) or ``?seconds=`` pass."""
    token = request.GET.get("token", "")
    seconds = min(read_query_number(request, "seconds", 30.0, float), LONG_POLL_MAX_SECONDS)
    group = LONG_POLLS.get(token)
    if group is None:
        group = LONG_POLLS[token] = LongPollGroup()
    group.waiting += 1
    try:
        await asyncio.wait_for(group.released.wait(), seconds)
    except asyncio.TimeoutError:
        released = False
    else:
        released = True
    finally:
        group.waiting -= 1
        if not group.waiting and LONG_POLLS.get(token) is group:
            del LONG_POLLS[token]
    return JsonResponse({"token": token, "released": released})


@require_safe
async def long_poll_status(request: HttpRequest) -> JsonResponse:
    """How many long polls of ``?token=`` are waiting in this process."""
    group = LONG_POLLS.get(request.GET.get("token", ""))
    return JsonResponse({"waiting": group.waiting if group else 0})


@csrf_exempt
@require_POST
async def long_poll_release(request: HttpRequest) -> JsonResponse:
    """Release every long poll of ``?token=`` waiting now; later ones wait anew."""
    group = LONG_POLLS.pop(request.GET.get("token", ""), None)
    if group is None:
        return JsonResponse({"released": 0})
    group.released.set()
    return JsonResponse({"released": group.waiting})


# Files -----------------------------------------------------------------------------------------


@require_safe
def download(request: HttpRequest) -> FileResponse:
    token = request.GET.get("token", "")
    path = ensure_big_file(settings.BIG_FILE_PATH)
    return TrackedFileResponse(path, token, as_attachment=True, filename="big.bin")


# Pathsend probes: the server may send a file by path only when it is what the view serves ------

# What every /probe/pathsend/<case>/ response holds, whatever its file object.
PATHSEND_PROBE_TEXT = b"asgi_bridge pathsend probe: the response's own bytes\n" * 64


def pathsend_probe_path(suffix: str, data: bytes) -> Path:
    """A small file beside the big one holding ``data``; rewritten atomically when it does not."""
    path = settings.BIG_FILE_PATH.absolute().with_name(f"pathsend-probe{suffix}")
    if not (path.is_file() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, as every server under test serves the same files.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    return path


def open_pathsend_probe(case: str) -> ContentFile[bytes] | gzip.GzipFile | io.BufferedReader:
    """The file object behind /probe/pathsend/<case>/; each one reads as PATHSEND_PROBE_TEXT."""
    compressed = pathsend_probe_path(".txt.gz", gzip.compress(PATHSEND_PROBE_TEXT, mtime=0))
    if case == "hostile-name":
        # In-memory bytes, named after a file on disk that holds other bytes.
        return ContentFile(PATHSEND_PROBE_TEXT, name=str(compressed))
    if case == "gzip":
        return gzip.open(compressed)
    if case == "real-file":
        return pathsend_probe_path(".txt", PATHSEND_PROBE_TEXT).open("rb")
    raise Http404(f"No pathsend probe {case!r}.")


@require_safe
def probe_pathsend(request: HttpRequest, case: str) -> FileResponse:
    """A FileResponse of one kind of file object; only ``real-file`` may be sent by path.

    X-Probe-Content-SHA256 is the digest of what Django itself reads from an identical response.
    """
    twin_file = open_pathsend_probe(case)
    try:
        # Not response.close(): that would fire request_finished, which the probes count.
        expected = digest_chunks(FileResponse(twin_file))
    finally:
        twin_file.close()
    response = FileResponse(open_pathsend_probe(case))
    response["X-Probe-Content-SHA256"] = expected["sha256"]
    return response


# Errors and probes -----------------------------------------------------------------------------


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


@require_safe
def probe_events(request: HttpRequest) -> JsonResponse:
    return JsonResponse(PROBES.snapshot())


@require_safe
def probe_thread(request: HttpRequest) -> JsonResponse:
    """Where this sync view and its request's signals run (the end-to-end tests check it)."""
    return JsonResponse(view_thread_report(request.GET.get("token", "")))


@require_safe
def probe_secure(request: HttpRequest) -> JsonResponse:
    """What Django makes of the connection's scheme (the TLS end-to-end tests check it)."""
    return JsonResponse(
        {
            "is_secure": request.is_secure(),
            "scheme": request.scheme,
            "absolute_uri": request.build_absolute_uri(),
            "absolute_path": request.build_absolute_uri("/items/"),
        }
    )


@require_safe
def probe_gc(request: HttpRequest) -> JsonResponse:
    """How many objects lifespan startup froze out of the garbage collector (ASGI_BRIDGE's
    FREEZE_GC): some on a server with lifespan, none on one without."""
    return JsonResponse({"frozen_objects": gc.get_freeze_count()})


def probe_slow(request: HttpRequest) -> JsonResponse:
    """A sync view that outlives a client who leaves: it runs to its end, where it records
    ``("slow_view_returned", token, thread)``, and its request still finishes on its thread."""
    token = request.GET.get("token", "")
    report = view_thread_report(token)
    time.sleep(read_query_number(request, "seconds", 0.5, float))
    record_event("slow_view_returned", token, report["thread"])
    return JsonResponse(report)


async def probe_slow_async(request: HttpRequest) -> JsonResponse:
    """An async view the handler cancels when its client leaves: records
    ``("slow_view_cancelled", token)`` then, or ``("slow_view_returned", token)`` if not."""
    token = request.GET.get("token", "")
    try:
        await asyncio.sleep(read_query_number(request, "seconds", 0.5, float))
    except asyncio.CancelledError:
        record_event("slow_view_cancelled", token)
        raise
    record_event("slow_view_returned", token)
    return JsonResponse({"token": token})


# Lifespan and background work ------------------------------------------------------------------


@require_safe
def lifespan_state(request: HttpRequest) -> JsonResponse:
    """What the lifespan hook put in this request's state (see demo/lifespan.py)."""
    # request.state is asgi_bridge's; Django's test Client builds a WSGIRequest without it.
    state = getattr(request, "state", None)
    if state is None:
        return JsonResponse({"keys": [], "process": None})
    return JsonResponse({"keys": sorted(state), "process": getattr(state, "process", None)})


def finish_background_job(token: str, release_file: str) -> None:
    """Work after the response: waits for ``release_file`` (if given), then logs it is done."""
    deadline = time.monotonic() + 30
    while release_file and not os.path.exists(release_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    write_lifespan_log(f"job done {token}")
    PROBES.record("background_done", token)


@require_safe
def background(request: HttpRequest) -> HttpResponse:
    """Answers at once and finishes its work after the response (after_response)."""
    token = request.GET.get("token", "")
    after_response(finish_background_job, token, request.GET.get("release_file", ""))
    return HttpResponse(f"queued {token}\n", content_type="text/plain")


# WebSockets ------------------------------------------------------------------------------------
# The handshake is a GET through MIDDLEWARE; what a view returns before accept() denies it.


@websocket
async def ws_echo(request: HttpRequest, ws: WebSocket) -> None:
    """Sends every message back as it came: text as text, binary as binary."""
    await ws.accept()
    async for message in ws:
        await ws.send(message)


@websocket
async def ws_whoami(request: HttpRequest, ws: WebSocket) -> None:
    """Sends who the handshake's session says the user is, then closes: proof that the
    handshake ran the session and authentication middleware."""
    user = await request.auser()
    await ws.accept()
    await ws.send_json({"username": user.username if user.is_authenticated else "anonymous"})
    await ws.close()


@websocket
async def ws_denied(request: HttpRequest, ws: WebSocket) -> HttpResponse:
    """Refuses every handshake with its own 403, never accepting."""
    return HttpResponseForbidden("WebSockets are not for you here.")


@websocket
async def ws_fails(request: HttpRequest, ws: WebSocket) -> None:
    """Accepts, then fails on the first message: the socket closes with 1011."""
    await ws.accept()
    await ws.receive()
    raise RuntimeError("the WebSocket view failed")


# Chat ------------------------------------------------------------------------------------------
# Each room is a broadcast group (asgi_bridge.broadcast). Groups live in this process's memory
# for now: a deployment with several processes needs the Redis backend, which is coming.

CHAT_MESSAGE_MAX_LENGTH = 1000


@require_safe
def chat_page(request: HttpRequest, room: str = "lobby") -> HttpResponse:
    """A chat room whose page talks to ws_chat over a WebSocket."""
    socket_path = reverse("demo:ws_chat", args=[room])
    context = {"room": room, "socket_path": socket_path, "max_length": CHAT_MESSAGE_MAX_LENGTH}
    return render(request, "demo/chat.html", context)


@websocket
async def ws_chat(request: HttpRequest, ws: WebSocket, room: str) -> None:
    """Broadcasts every text message to the room, as ``{"user": ..., "text": ...}``."""
    user = await request.auser()
    username = user.get_username() if user.is_authenticated else "anonymous"
    await ws.accept()
    # The socket leaves the group when its connection ends.
    await ws.join(chat_group(room))
    async for message in ws:
        if not isinstance(message, str):
            # 1003: the socket received a kind of data it does not take.
            await ws.close(1003, "The chat takes text messages only.")
            return
        if len(message) > CHAT_MESSAGE_MAX_LENGTH:
            limit = f"{CHAT_MESSAGE_MAX_LENGTH:,}"
            await ws.send_json({"error": f"Messages are limited to {limit} characters."})
            continue
        if message.strip():
            await broadcast(chat_group(room), {"user": username, "text": message})


def chat_group(room: str) -> str:
    return f"chat-{room}"


@require_POST
@csrf_exempt
def chat_announce(request: HttpRequest, room: str) -> JsonResponse:
    """A sync view that speaks in a chat room: ``broadcast_sync`` reaches the room's sockets in
    every server process (with ASGI_BRIDGE["BROADCAST"] on Redis)."""
    text = request.POST.get("text", "")[:CHAT_MESSAGE_MAX_LENGTH]
    broadcast_sync(chat_group(room), {"user": "announcer", "text": text})
    return JsonResponse({"announced": text})


@websocket
async def ws_probe_group(request: HttpRequest, ws: WebSocket, group: str) -> None:
    """Joins ``group`` and says "joined" once subscribed, then only listens (the end-to-end
    broadcast tests count what it gets)."""
    await ws.accept()
    await ws.join(group)
    await ws.send("joined")
    async for _ in ws:
        pass


@require_POST
@csrf_exempt
def probe_broadcast(request: HttpRequest, group: str) -> JsonResponse:
    """Broadcasts ``str(n)`` for n in [start, start + count) to ``group`` with broadcast_sync,
    one by one; says which went out and which failed (Redis down: BroadcastError)."""
    start = read_query_number(request, "start", 0, int)
    count = read_query_number(request, "count", 1, int)
    sent, failed = [], []
    for number in range(start, start + count):
        try:
            broadcast_sync(group, str(number))
        except BroadcastError:
            failed.append(number)
        else:
            sent.append(number)
    return JsonResponse({"sent": sent, "failed": failed})


@require_safe
def probe_broadcast_state(request: HttpRequest) -> JsonResponse:
    """This process's broadcast groups: how many have members here, and (on Redis) those its
    subscribing connection is subscribed to; and, after a full garbage collection, how many
    memory blocks Python holds (what the end-to-end tests watch for leaks, where RSS only shows
    what the allocator kept)."""
    backend = groups()
    subscribed = getattr(backend, "subscribed_groups", lambda: set())()
    gc.collect()
    return JsonResponse(
        {
            "groups": backend.group_count(),
            "subscribed": sorted(subscribed),
            "python_blocks": sys.getallocatedblocks(),
        }
    )


# Small pieces the views share ------------------------------------------------------------------


def digest_chunks(chunks: Iterable[bytes]) -> Digest:
    sha256 = hashlib.sha256()
    size = 0
    for chunk in chunks:
        sha256.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": sha256.hexdigest()}


def describe_form_errors(form: Form) -> str:
    return "; ".join(
        f"{field}: {message}" for field, messages in form.errors.items() for message in messages
    )


def read_query_number(
    request: HttpRequest, name: str, default: Number, parse: Callable[[str], Number]
) -> Number:
    """Read a finite, non-negative number from the query string; 400 if it is anything else."""
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise BadRequest(f"Query parameter {name!r} must be a number, not {raw!r}.") from None
    if not (math.isfinite(value) and value >= 0):
        raise BadRequest(f"Query parameter {name!r} must be finite and >= 0, not {raw!r}.")
    return value
