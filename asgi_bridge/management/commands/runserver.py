"""``runserver`` through asgi_bridge: Django's runserver, serving on an ASGI server instead.

All but the serving is Django's: the arguments, the autoreloader's file watching, the system checks
and the migration warning. The server is ``ASGI_BRIDGE["RUNSERVER_SERVER"]`` (uvicorn by default),
run in the process by asgi_bridge.devserver; ``--noasgi`` runs Django's own WSGI server instead.
Static files are served in DEBUG through the staticfiles finders, as by staticfiles' runserver
(with asgi_bridge.static's ranges and validators), which this command replaces when
"asgi_bridge" comes first in INSTALLED_APPS (check asgi_bridge.W001 says when it does not).
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import os
import socket
import sys
import threading
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler, StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections
from django.utils import autoreload
from django.utils.version import get_docs_version

import asgi_bridge
from asgi_bridge import devserver
from asgi_bridge.static import DevelopmentStaticFiles
from asgi_bridge.types import ASGIApp

STATICFILES_APP = "django.contrib.staticfiles"


class Command(RunserverCommand):
    help = (
        "Starts a development server that serves the project through asgi_bridge on an ASGI "
        "server, and static files in DEBUG."
    )

    # Set by Django's handle() from the addrport argument and --ipv6.
    addr: str
    port: str
    use_ipv6: bool
    _raw_ipv6: bool
    # The server named by ASGI_BRIDGE, and the event by which the file watcher stops it.
    server_name: str
    reload_requested: threading.Event

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi",
            action="store_false",
            dest="use_asgi",
            help="Run Django's own WSGI development server instead of an ASGI server.",
        )
        if apps.is_installed(STATICFILES_APP):
            parser.add_argument(
                "--nostatic",
                action="store_false",
                dest="use_static_handler",
                help="Do not serve static files at STATIC_URL.",
            )
            parser.add_argument(
                "--insecure",
                action="store_true",
                dest="insecure_serving",
                help="Serve static files even when DEBUG is False.",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["use_asgi"]:
            # Here, so that the reloader's parent process fails at once too.
            self.server_name = devserver.configured_server()
            if importlib.util.find_spec(self.server_name) is None:
                raise CommandError(
                    f"{self.server_name} is not installed: pip install "
                    f"'asgi-bridge[{self.server_name}]', or run Django's server with --noasgi."
                )
        super().handle(*args, **options)

    def run(self, **options: Any) -> None:
        if not options["use_asgi"]:
            super().run(**options)
            return
        self.reload_requested = threading.Event()
        devserver.exit_on_sigterm()
        if options["use_reloader"]:
            main = functools.partial(self.inner_run, None, **options)
            devserver.run_with_reloader(main, self.reload_requested)
        else:
            self.inner_run(None, **options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        if not options["use_asgi"]:
            super().inner_run(*args, **options)
            return
        # An error of django.setup() in the reloader's child, kept by Django to be raised here.
        autoreload.raise_last_exception()
        self.check_project(options)
        if not options["use_threading"]:
            self.stdout.write(
                "--nothreading applies to --noasgi only: under asgi_bridge, sync code runs on "
                "its thread pool (ASGI_BRIDGE['THREADS'])."
            )
        loaded = devserver.load_application()
        application = devserver.log_requests(self.with_static_files(loaded.application, options))
        sock = self.bind_or_exit()
        self.announce(sock.getsockname()[1], loaded)
        try:
            devserver.serve(
                self.server_name,
                application,
                sock,
                log_level=devserver.server_log_level(options["verbosity"]),
                stop=self.reload_requested,
            )
        except devserver.ServerError as error:
            raise CommandError(str(error)) from error
        except KeyboardInterrupt:
            # 'shutdown_message' is a stealth option of Django's runserver (testserver sets it).
            if options.get("shutdown_message"):
                self.stdout.write(options["shutdown_message"])
            sys.exit(0)

    def get_handler(self, *args: Any, **options: Any) -> WSGIHandler:
        """Django's WSGI handler, for --noasgi, serving static files as staticfiles' does."""
        handler = super().get_handler(*args, **options)
        return StaticFilesHandler(handler) if self.serves_static_files(options) else handler

    def check_project(self, options: dict[str, Any]) -> None:
        """System checks and the unapplied migrations warning, as Django's runserver has them."""
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        # Requests run on other threads, which open connections of their own.
        for connection in connections.all(initialized_only=True):
            connection.close()

    def serves_static_files(self, options: dict[str, Any]) -> bool:
        """Whether to serve STATIC_URL, decided as staticfiles' runserver decides it."""
        return (
            apps.is_installed(STATICFILES_APP)
            and options.get("use_static_handler", True)
            and (settings.DEBUG or options.get("insecure_serving", False))
        )

    def with_static_files(self, application: ASGIApp, options: dict[str, Any]) -> ASGIApp:
        """``application``, wrapped to serve static files through the finders if it should and
        does not already (a project's asgi.py may wrap it in ASGIStaticFilesHandler)."""
        if not self.serves_static_files(options) or isinstance(
            application, (ASGIStaticFilesHandler, DevelopmentStaticFiles)
        ):
            return application
        return DevelopmentStaticFiles(application)

    def bind_or_exit(self) -> socket.socket:
        """The listening socket; on failure, the reason on stderr and exit code 1."""
        try:
            return devserver.bind(self.addr, int(self.port), self.use_ipv6)
        except OSError as error:
            self.stderr.write(f"Error: {self.explain_bind_error(error)}")
            sys.exit(1)

    def explain_bind_error(self, error: OSError) -> str:
        address = f"{self.display_addr()}:{self.port}"
        if error.errno == errno.EADDRINUSE:
            return f"{address} is already in use."
        if error.errno == errno.EACCES:
            return f"You are not allowed to listen on {address}."
        if error.errno == errno.EADDRNOTAVAIL:
            return f"{self.addr} is not an address of this machine."
        return str(error)

    def display_addr(self) -> str:
        if self._raw_ipv6:
            return f"[{self.addr}]"
        return "0.0.0.0" if self.addr == "0" else self.addr

    def announce(self, port: int, loaded: devserver.LoadedApplication) -> None:
        """The banner: once bound, so that it shows the port even when 0 was asked for."""
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        server = devserver.describe_server(self.server_name)
        if loaded.handler == "asgi_bridge":
            serving = (
                f"Serving {loaded.source} with asgi_bridge {asgi_bridge.__version__} on {server}."
            )
        else:
            serving = f"Serving {loaded.source} on {server}."
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/asgi_bridge development server at "
            f"{self.protocol}://{self.display_addr()}:{port}/\n"
            f"{serving}\n"
            f"Quit the server with {quit_command}."
        )
        if loaded.handler == "django":
            self.stdout.write(
                self.style.NOTICE(
                    f"Note: {loaded.source} is Django's own ASGIHandler, so requests do not go "
                    "through asgi_bridge. Build it with asgi_bridge.get_asgi_application() to "
                    "serve it through asgi_bridge."
                )
            )
        if os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            self.stdout.write(
                self.style.WARNING(
                    "WARNING: runserver is for development only. In production, run your ASGI "
                    "application under an ASGI server: https://docs.djangoproject.com/en/"
                    f"{get_docs_version()}/howto/deployment/asgi/"
                )
            )
        self.stdout.flush()
