"""A throwaway nginx for the tests: one process, on a free port of 127.0.0.1, stopped by PID.

``start_nginx(static_root)`` runs the machine's ``nginx`` in the foreground with no master
process (``daemon off``, ``master_process off``), as the caller's child in its own process group,
with its configuration, pid file, logs and temporary files in a directory of its own. It serves
``static_root`` at ``/static/`` as a deployment would put nginx in front of Django: ``etag on``,
``gzip_static on`` and ``brotli_static on`` (Debian's brotli static module), ``gzip_vary on``,
``max_ranges 16``; everything else answers 404. A missing nginx or brotli module fails the test
that needs it, saying how to install them (``scripts/test`` does, as root).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import find_free_port, read_log_tail, stop_process_group

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
INSTALL_HINT = (
    "install nginx and its brotli static module (Debian: apt-get install nginx "
    "libnginx-mod-http-brotli-static; scripts/test does it)"
)
# Where Debian puts what the configuration below loads.
MIME_TYPES = Path("/etc/nginx/mime.types")
BROTLI_STATIC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so")

CONFIGURATION = """\
daemon off;
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
load_module {brotli_module};

events {{
    worker_connections 512;
}}

http {{
    include {mime_types};
    default_type application/octet-stream;
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server_tokens off;
    sendfile on;

    etag on;
    max_ranges 16;
    gzip_static on;
    brotli_static on;
    gzip_vary on;

    server {{
        listen {host}:{port};
        location /static/ {{
            alias {static_root}/;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


@dataclass
class NginxServer:
    """One nginx process serving a directory at /static/ on ``port`` of 127.0.0.1."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "error.log"

    def describe(self) -> str:
        return f"nginx at {self.base_url}; {self.log_path}:\n{read_log_tail(self.log_path)}"

    def start(self, static_root: Path) -> None:
        # Debian keeps nginx in /usr/sbin, which is not on every user's PATH.
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if binary is None:
            pytest.fail(f"nginx is not installed: {INSTALL_HINT}")
        for needed in (MIME_TYPES, BROTLI_STATIC_MODULE):
            if not needed.is_file():
                pytest.fail(f"{needed} is missing: {INSTALL_HINT}")
        configuration = self.directory / "nginx.conf"
        configuration.write_text(
            CONFIGURATION.format(
                directory=self.directory,
                brotli_module=BROTLI_STATIC_MODULE,
                mime_types=MIME_TYPES,
                host=HOST,
                port=self.port,
                static_root=static_root,
            )
        )
        arguments = [binary, "-p", str(self.directory), "-c", str(configuration)]
        # -e: the log of start-up errors, before the configuration's error_log applies.
        arguments += ["-e", str(self.log_path)]
        with (self.directory / "output.log").open("ab") as output:
            self.process = subprocess.Popen(
                arguments,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"nginx did not start:\n{self.describe()}")
            time.sleep(0.02)

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL to the process group if need be."""
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, lambda: process.send_signal(signal.SIGTERM))


@contextlib.contextmanager
def running_nginx(static_root: Path, directory: Path) -> Iterator[NginxServer]:
    """An nginx serving ``static_root`` at /static/ on a free port, with its files in
    ``directory``; stopped on the way out."""
    server = NginxServer(find_free_port(HOST), directory)
    try:
        server.start(static_root)
        yield server
    finally:
        server.stop()
