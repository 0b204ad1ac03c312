"""The development server behind ``manage.py runserver``: an ASGI server run inside the process.

asgi_bridge's ``runserver`` command parses its arguments as Django's does, then calls in here to
load the application, bind the address and serve on uvicorn (or hypercorn) in the main thread.
With the autoreloader, the process it was started as is only a parent that runs a child process
(``RUN_MAIN=true``) again each time the child exits with code 3; the child watches the project's
files with Django's reloader from a second thread, and exits with code 3 when one changes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Literal, NoReturn, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import autoreload
from django.utils.module_loading import import_string

from .conf import bridge_settings
from .types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

# Django's autoreloader starts its child process again whenever the child exits with this code.
RELOAD_EXIT_CODE = 3
# Seconds that requests in flight get to finish when the server stops or reloads: enough for a
# page, short enough that an open stream does not hold a reload up for long.
SHUTDOWN_GRACE = 2
BACKLOG = 128
# How often hypercorn's shutdown trigger looks for a signal or a reload; uvicorn ticks as often.
POLL_SECONDS = 0.1
# Wrappers such as ASGIStaticFilesHandler keep the application they wrap in ``.application``.
MAX_WRAPPERS = 10
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

SignalHandler = Callable[[int, FrameType | None], None]
HandlerKind = Literal["asgi_bridge", "django", "other"]

server_log = logging.getLogger("django.server")


class ServerError(Exception):
    """The ASGI server stopped by itself, for instance because the application failed to start."""


class Terminated(SystemExit):
    """SIGTERM in the main thread: the process exits with code 0, as Django's runserver does."""


# Which server ----------------------------------------------------------------------------------


def configured_server() -> str:
    """The ASGI server runserver runs: ``ASGI_BRIDGE["RUNSERVER_SERVER"]``, uvicorn by default."""
    return bridge_settings().runserver_server


def describe_server(server: str) -> str:
    """The server's name and installed version, for the banner."""
    try:
        return f"{server} {importlib.metadata.version(server)}"
    except importlib.metadata.PackageNotFoundError:
        return server


# Which application -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedApplication:
    """The application runserver serves, where it came from, and whose handler it ends in."""

    application: ASGIApp
    source: str
    handler: HandlerKind


def load_application() -> LoadedApplication:
    """``settings.ASGI_APPLICATION`` if set, else asgi_bridge's handler for the project."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        from . import get_asgi_application

        return LoadedApplication(
            get_asgi_application(), "asgi_bridge.get_asgi_application()", "asgi_bridge"
        )
    try:
        application = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"The ASGI_APPLICATION setting {path!r} could not be imported: {error}"
        ) from error
    return LoadedApplication(application, path, handler_kind(application))


def handler_kind(application: object) -> HandlerKind:
    """Whether requests end in asgi_bridge's handler, Django's own, or something else."""
    from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

    from .handler import ASGIHandler

    for _ in range(MAX_WRAPPERS):
        inner = getattr(application, "application", None)
        if inner is None:
            break
        application = inner
    if isinstance(application, ASGIHandler):
        return "asgi_bridge"
    if isinstance(application, DjangoASGIHandler):
        return "django"
    return "other"


# The request log -------------------------------------------------------------------------------


def log_requests(application: ASGIApp) -> ASGIApp:
    """Wrap ``application`` so that each HTTP response is logged as Django's runserver logs it."""

    async def logged_application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await application(scope, receive, send)
            return
        status: int | None = None
        size = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                size += sent_size(message)
            await send(message)

        try:
            await application(scope, receive, send_and_note)
        finally:
            if status is not None:
                log_request(scope, status, size)

    return logged_application


def sent_size(message: Message) -> int:
    """How many body bytes a response message carries."""
    if message["type"] == "http.response.body":
        return len(message.get("body", b""))
    if message["type"] == "http.response.pathsend":
        try:
            return os.path.getsize(message["path"])
        except OSError:
            return 0
    return 0


def log_request(scope: Scope, status: int, size: int) -> None:
    """One line on the ``django.server`` logger, at the level Django's runserver uses."""
    if status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    else:
        level = logging.INFO
    server_log.log(
        level,
        '"%s" %s %s',
        request_line(scope),
        status,
        size,
        # What Django's ServerFormatter prints the time from and colours the line by.
        extra={"server_time": time.strftime("%d/%b/%Y %H:%M:%S"), "status_code": status},
    )


def request_line(scope: Scope) -> str:
    """The request's first line, as the client sent it."""
    raw_path = scope.get("raw_path")
    target = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    return f"{scope['method']} {target} HTTP/{scope.get('http_version', '1.1')}"


# Serving ---------------------------------------------------------------------------------------


def bind(host: str, port: int, ipv6: bool) -> socket.socket:
    """A socket listening on ``host:port``; OSError, with its errno, when there can be none."""
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The reloader's next child binds the port while the last one's connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Connections made while the application starts wait instead of being refused.
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def server_log_level(verbosity: int) -> int:
    """How much the server logs. At the default verbosity, only warnings and errors: the banner
    and the request log already say what its startup and access lines would."""
    return {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)


def serve(
    server: str, application: ASGIApp, sock: socket.socket, *, log_level: int, stop: threading.Event
) -> None:
    """Serve ``application`` on ``sock`` in this thread until SIGINT, SIGTERM or ``stop``.

    After a signal, the server shuts down gracefully, then the signal is raised again: SIGINT
    ends in KeyboardInterrupt and SIGTERM in whatever its handler was (see exit_on_sigterm).
    """
    SERVERS[server](application, sock, log_level, stop)


def serve_with_uvicorn(
    application: ASGIApp, sock: socket.socket, log_level: int, stop: threading.Event
) -> None:
    import uvicorn

    class StoppableServer(uvicorn.Server):
        async def on_tick(self, counter: int) -> bool:
            return stop.is_set() or await super().on_tick(counter)

    config = uvicorn.Config(
        application,
        interface="asgi3",
        lifespan="auto",
        log_level=log_level,
        # log_requests logs them instead, in Django's format.
        access_log=False,
        # As under Django's runserver, REMOTE_ADDR is the peer's, whatever X-Forwarded-For says.
        proxy_headers=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    try:
        StoppableServer(config).run(sockets=[sock])
    except Terminated:
        raise
    except SystemExit as exit_:
        # uvicorn exits the process when the application fails to start; in the reloader's
        # child, that exit code (3) would read as a request to reload, again and again.
        raise ServerError(f"uvicorn stopped with exit code {exit_.code}; see its log above.") from (
            exit_
        )


def serve_with_hypercorn(
    application: ASGIApp, sock: socket.socket, log_level: int, stop: threading.Event
) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    # hypercorn takes the socket over from its file descriptor, and closes it when done.
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.loglevel = logging.getLevelName(log_level)
    config.graceful_timeout = SHUTDOWN_GRACE
    with signals_noted() as signalled:

        async def stopped() -> None:
            while not (signalled or stop.is_set()):
                await asyncio.sleep(POLL_SECONDS)

        # hypercorn annotates scopes and messages with TypedDicts of its own.
        framework = cast("ASGIFramework", application)
        asyncio.run(hypercorn_serve(framework, config, shutdown_trigger=stopped, mode="asgi"))


# The servers runserver can run. Granian is not among them: it runs the application in worker
# processes of its own, which Django's reloader cannot restart.
SERVERS: dict[str, Callable[[ASGIApp, socket.socket, int, threading.Event], None]] = {
    "uvicorn": serve_with_uvicorn,
    "hypercorn": serve_with_hypercorn,
}


# Signals ---------------------------------------------------------------------------------------


def exit_on_sigterm() -> None:
    """Make SIGTERM exit the process with code 0, as under Django's autoreloader."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)


@contextmanager
def handling_stop_signals(handler: SignalHandler) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with ``handler`` inside the block, as before after it."""
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


@contextmanager
def signals_noted() -> Iterator[list[int]]:
    """Note SIGINT and SIGTERM in the block, then raise them again after it, as uvicorn does."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    with handling_stop_signals(note):
        yield noted
    for signum in reversed(noted):
        signal.raise_signal(signum)


# The autoreloader ------------------------------------------------------------------------------


def run_with_reloader(main: Callable[[], None], reload_requested: threading.Event) -> None:
    """Run ``main`` under Django's autoreloader, in the main thread of the reloader's child.

    ``main`` serves until ``reload_requested`` is set, which happens when a watched file changes.
    """
    try:
        if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
            run_reloader_child(main, reload_requested)
        else:
            sys.exit(restart_child_on_reload())
    except KeyboardInterrupt:
        pass


def run_reloader_child(main: Callable[[], None], reload_requested: threading.Event) -> NoReturn:
    """Serve in this thread and watch files in another; exit to be restarted when one changes."""
    autoreload.ensure_echo_on()
    reloader = autoreload.get_reloader()
    autoreload.logger.info("Watching for file changes with %s", type(reloader).__name__)
    threading.Thread(
        target=watch_files, args=(reloader, reload_requested), name="autoreload", daemon=True
    ).start()
    try:
        # check_errors notes the file of a SyntaxError, so that fixing it triggers a reload.
        autoreload.check_errors(main)()
    except Exception:
        # As under Django's runserver, the error is shown and the reloader keeps watching:
        # fixing the code starts the server again.
        traceback.print_exc()
    reload_requested.wait()
    sys.exit(RELOAD_EXIT_CODE)


def watch_files(reloader: autoreload.BaseReloader, reload_requested: threading.Event) -> None:
    """Run Django's reloader; set ``reload_requested`` when it asks for a reload."""
    try:
        while not reloader.should_stop:
            reloader.run(threading.main_thread())
    except SystemExit as exit_:
        # The reloader calls sys.exit(3) when a file changed, which ends only this thread.
        if exit_.code == RELOAD_EXIT_CODE:
            reload_requested.set()


def restart_child_on_reload() -> int:
    """Run the reloader's child again each time it exits to reload; return its last exit code."""
    environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    arguments = autoreload.get_child_arguments()
    while True:
        exit_code = run_child(arguments, environ)
        if exit_code != RELOAD_EXIT_CODE:
            return exit_code


def run_child(arguments: list[str], environ: dict[str, str]) -> int:
    """Run one child process to its end; return its exit code, or 0 if we were told to stop.

    Django's reloader kills its child as soon as it is told to stop; this one passes SIGTERM on
    and waits, so that the server shuts down gracefully. Told twice, it kills the child.
    """
    child = subprocess.Popen(arguments, env=environ, close_fds=False)
    stops: list[int] = []

    def stop_child(signum: int, frame: FrameType | None) -> None:
        if stops:
            child.kill()
        else:
            child.terminate()
        stops.append(signum)

    with handling_stop_signals(stop_child):
        exit_code = child.wait()
    return 0 if stops else exit_code
