"""Views the unit tests drive through the handler; each records what the tests need to observe."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from asgi_bridge.background import after_response

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


class TrackedFile:
    """A file wrapper whose close() the tests can observe."""

    def __init__(self, name: str) -> None:
        self._file = open(name, "rb")  # noqa: SIM115 (FileResponse closes it)
        self.name = name

    def read(self, size: int = -1) -> bytes:
        observed["file_reads"] = observed.get("file_reads", 0) + 1
        return self._file.read(size)

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def close(self) -> None:
        observed["file_closed"] = True
        self._file.close()


def file_download(request: HttpRequest) -> FileResponse:
    response = FileResponse(TrackedFile(observed["file_path"]))
    if request.GET.get("encoding"):
        # What GZipMiddleware does to a FileResponse: new content, same file_to_stream.
        response.streaming_content = (part.upper() for part in response.streaming_content)
        response["Content-Encoding"] = request.GET["encoding"]
    return response


def blocking(request: HttpRequest) -> HttpResponse:
    """Holds its thread until the test sets observed["release"]."""
    observed["view_thread"] = threading.get_ident()
    observed["view_started"].set()
    observed["release"].wait(5)
    observed["view_returned"] = True
    return HttpResponse("released")


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


urlpatterns = [
    path("", hello),
    path("async/", async_hello),
    path("blocking/", blocking),
    path("meeting/", meeting),
    path("async/waiting/", async_waiting),
    path("stream/sync/", sync_stream),
    path("stream/async/", async_stream),
    path("stream/big/", big_part_stream),
    path("file/", file_download),
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
]
