"""A throwaway redis-server for the tests: started on a free port of 127.0.0.1, stopped by PID.

``start_redis()`` runs the machine's ``redis-server`` with no persistence, in a temporary
directory, as the caller's child in its own process group. ``RedisServer.kill()`` and
``restart()`` (on the same port) are the faults the broadcast tests inflict; ``stop()`` ends it.
A missing redis-server fails the test that needs it, saying how to install it (``scripts/test``
does, as root).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from .conftest import find_free_port, read_log_tail, stop_process_group

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
INSTALL_HINT = "install redis-server (Debian: apt-get install redis-server; scripts/test does it)"


@dataclass
class RedisServer:
    """One redis-server process, on ``port`` of 127.0.0.1."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(f"redis-server is not installed: {INSTALL_HINT}")
        self.starts += 1
        # No persistence: a restart comes back empty, as after a crash of a cache server.
        arguments = [binary, "--bind", HOST, "--port", str(self.port), "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.directory)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                arguments,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start:\n{read_log_tail(self.log_path)}")
            time.sleep(0.02)

    def answers_ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: clients see their connections reset."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=START_TIMEOUT)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP, as a frozen host: connections stay open, and nothing answers on them."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.send_signal(signal.SIGCONT)  # A paused server could not act on SIGTERM.
            stop_process_group(process, lambda: process.send_signal(signal.SIGTERM))

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def client_count(self, kind: str = "pubsub") -> int:
        """How many clients of ``kind`` (CLIENT LIST's types: "pubsub", "normal") are connected."""
        with self.client() as client:
            return len(client.client_list(_type=kind))

    def channels(self) -> list[str]:
        """PUBSUB CHANNELS: the channels some client is subscribed to."""
        with self.client() as client:
            return sorted(channel.decode() for channel in client.pubsub_channels())


def start_redis() -> RedisServer:
    """A fresh redis-server on a free port, in a temporary directory of its own."""
    server = RedisServer(find_free_port(HOST), Path(tempfile.mkdtemp(prefix="asgi_bridge_redis_")))
    server.start()
    return server
