"""One view per response path the benchmark compares: plain, JSON, body, streaming, ORM, file,
WebSocket, broadcast."""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from asgi_bridge import broadcast_sync, websocket
from asgi_bridge.websockets import WebSocket
from benchsite.models import Item

HELLO = "Hello, world!"

# About 1 KB once serialized; built once so the view measures the response path, not json input.
JSON_PAYLOAD = {
    "items": [
        {"id": number, "name": f"item-{number:02d}", "tags": ["alpha", "beta"], "price": 9.99}
        for number in range(16)
    ],
}

STREAM_PART = b"x" * 4096
STREAM_PART_COUNT = 16
UPLOAD_READ_SIZE = 65536


async def async_hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HELLO, content_type="text/plain")


def sync_hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HELLO, content_type="text/plain")


def json_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(JSON_PAYLOAD)


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


async def async_parts() -> AsyncIterator[bytes]:
    for _ in range(STREAM_PART_COUNT):
        yield STREAM_PART


def sync_parts() -> Iterator[bytes]:
    for _ in range(STREAM_PART_COUNT):
        yield STREAM_PART


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(async_parts(), content_type="application/octet-stream")


def stream_sync(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(sync_parts(), content_type="application/octet-stream")


def orm(request: HttpRequest) -> JsonResponse:
    return item_rows(Item.objects.all()[:10])


def orm_persistent(request: HttpRequest) -> JsonResponse:
    return item_rows(Item.objects.using("persistent").all()[:10])


def item_rows(items_query: Any) -> JsonResponse:
    items = list(items_query)
    rows = [{"id": item.pk, "name": item.name, "price_cents": item.price_cents} for item in items]
    return JsonResponse({"items": rows})


def file(request: HttpRequest) -> FileResponse:
    return FileResponse(open(settings.BENCH_FILE, "rb"), content_type="application/octet-stream")


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    # Read in pieces, as a view handling a large upload would; only the count is kept.
    received = 0
    while chunk := request.read(UPLOAD_READ_SIZE):
        received += len(chunk)
    return HttpResponse(str(received), content_type="text/plain")


@websocket
async def websocket_echo(request: HttpRequest, ws: WebSocket) -> None:
    """Send every message back as it came (bench/websockets.py); served by asgi_bridge only."""
    await ws.accept()
    async for message in ws:
        await ws.send(message)


@websocket
async def websocket_room(request: HttpRequest, ws: WebSocket, name: str) -> None:
    """Receive group ``name``'s broadcasts (bench/broadcast.py); "joined" once a member."""
    await ws.accept()
    await ws.join(name)
    await ws.send("joined")
    async for _ in ws:
        pass


def send_broadcasts(request: HttpRequest, send: Callable[[str, str], None]) -> JsonResponse:
    """Send ``count`` broadcasts to ``group``, as fast as ``send`` returns or ``rate`` a second.

    Each is the text ``"<tag> <sequence> <send time>"``, the time from time.monotonic(), which
    is system-wide on Linux: the benchmark's clients, in other processes, subtract it from
    their own clock's reading on receipt.
    """
    group, tag = request.GET["group"], request.GET["tag"]
    count, rate = int(request.GET["count"]), float(request.GET.get("rate", "0"))
    started = time.monotonic()
    for sequence in range(count):
        if rate:
            wait = started + sequence / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        send(group, f"{tag} {sequence} {time.monotonic():.6f}")
    return JsonResponse({"sent": count, "started": started, "finished": time.monotonic()})


def broadcast_bridge(request: HttpRequest) -> JsonResponse:
    """asgi_bridge's way from a sync view: ``broadcast_sync(group, message)``."""
    return send_broadcasts(request, broadcast_sync)


def broadcast_channels(request: HttpRequest) -> JsonResponse:
    """Channels' way from a sync view: ``async_to_sync(channel_layer.group_send)(...)``, to
    ``project/channels_asgi.py``'s RoomConsumer."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    channel_layer = get_channel_layer()

    def send(group: str, text: str) -> None:
        async_to_sync(channel_layer.group_send)(group, {"type": "room.message", "text": text})

    return send_broadcasts(request, send)
