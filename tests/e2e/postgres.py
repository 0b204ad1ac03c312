"""A throwaway PostgreSQL server for the end-to-end tests: found, started, stopped.

``start_postgres`` runs the machine's ``initdb`` and ``postgres`` in a fresh temporary directory,
listening on 127.0.0.1 only, on a free port, with trust authentication, as the ``postgres``
system user when the tests run as root (PostgreSQL refuses to run as root). The server is the
caller's child in its own process group; ``PostgresServer.stop`` shuts it down fast, kills what
is left and removes the directory. A missing or broken PostgreSQL fails the test that needs it;
only ``ASGI_BRIDGE_SKIP_POSTGRES=1`` turns that into a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import find_free_port, read_log_tail, stop_process_group

try:
    import psycopg
    from psycopg import sql
except ImportError:  # require_postgres() fails the test with the fix.
    psycopg = None  # type: ignore[assignment]

SKIP_ENV = "ASGI_BRIDGE_SKIP_POSTGRES"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
# Who runs the server when the tests run as root: the user Debian's postgresql package creates.
SYSTEM_USER = "postgres"
DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
# PostgreSQL's own default, stated so a report that quotes it stays true on any machine.
MAX_CONNECTIONS = 100
START_TIMEOUT = 30.0
START_ATTEMPTS = 3
INSTALL_HINT = (
    "install PostgreSQL's server (Debian: apt-get install postgresql; scripts/test does it "
    f"when run as root) or set {SKIP_ENV}=1 to skip the tests that need it"
)


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: PATH first, then Debian's newest."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    # Debian keeps the server out of PATH, one directory per major version.
    candidates += sorted(
        (initdb.parent for initdb in DEBIAN_BINDIRS.glob("*/bin/initdb")),
        key=lambda bindir: [int(part) for part in re.findall(r"\d+", bindir.parent.name)],
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


@dataclass(frozen=True)
class ServerUser:
    """The account PostgreSQL runs as; ``None`` ids mean the test process's own."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_this_process(cls) -> ServerUser:
        if os.geteuid() != 0:
            return cls()
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pytest.fail(
                f"PostgreSQL refuses to run as root and there is no {SYSTEM_USER!r} user to run "
                f"it as; {INSTALL_HINT}"
            )
        return cls(entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict[str, Any]:
        """Arguments that make subprocess drop to this user (and no supplementary groups)."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def take(self, path: Path) -> None:
        """Give ``path`` to this user, so the server can write there."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


@dataclass
class PostgresServer:
    """A running PostgreSQL server that accepts the superuser without a password."""

    port: int
    pid: int
    process: subprocess.Popen[bytes]
    directory: Path
    log_path: Path
    host: str = HOST
    # Starts the postmaster again on the same data and port (restart()).
    respawn: Callable[[], PostgresServer] | None = field(default=None, repr=False)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """A new autocommit connection as the superuser, so every query sees fresh statistics."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str, owner: str) -> None:
        """Create a login role without a password and a database it owns."""
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )

    def describe(self) -> str:
        """Say which server this is and show its log, for assertion messages."""
        return (
            f"PostgreSQL pid={self.pid} at {self.host}:{self.port}; log {self.log_path}:\n"
            f"{read_log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Shut the server down and remove its data directory."""
        self.terminate()
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Start the server again after terminate(), on the same port and data."""
        if self.respawn is None:
            raise RuntimeError("this server cannot be restarted")
        started = self.respawn()
        problem = wait_until_accepting(started)
        if problem is not None:
            started.terminate()
            pytest.fail(f"PostgreSQL did not restart: {problem}\n{started.describe()}")
        self.process, self.pid, self.log_path = started.process, started.pid, started.log_path

    def terminate(self) -> None:
        """Fast shutdown, then SIGKILL to the process group if it lingers."""
        # SIGINT to the postmaster is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast`
        # sends: it disconnects clients and exits cleanly.
        stop_process_group(self.process, lambda: os.kill(self.pid, signal.SIGINT))


def require_postgres() -> Path:
    """The server binaries' directory; fail (or skip, when asked to) if there are none."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1")
    if psycopg is None:
        pytest.fail("psycopg 3 is not installed; install the 'test' extra (psycopg[binary])")
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            f"no PostgreSQL server found (initdb and postgres on PATH or in "
            f"{DEBIAN_BINDIRS}/*/bin); {INSTALL_HINT}"
        )
    return bindir


def init_cluster(bindir: Path, data: Path, user: ServerUser, log_dir: Path) -> None:
    """Run initdb into ``data``; fail with its output if it does not succeed."""
    result = subprocess.run(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            # A throwaway cluster: no need to wait for the disk.
            "--no-sync",
        ],
        cwd=data.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        **user.popen_kwargs(),
    )
    (log_dir / "initdb.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(
            f"initdb ({bindir}) failed with code {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


def spawn_postgres(
    bindir: Path,
    directory: Path,
    data: Path,
    user: ServerUser,
    log_dir: Path,
    port: int | None = None,
) -> PostgresServer:
    """Start the postmaster on ``port`` (by default a free one), its output captured to a log
    file (appended to, on a restart)."""
    port = find_free_port(HOST) if port is None else port
    log_path = log_dir / f"postgres-{port}.log"
    settings = {
        "listen_addresses": HOST,
        "port": str(port),
        # TCP only: a socket path under a long temporary directory can exceed the OS's limit.
        "unix_socket_directories": "",
        "max_connections": str(MAX_CONNECTIONS),
        # A throwaway cluster: durability buys nothing and costs time.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        # The log then shows every session, for a failing test's report.
        "log_connections": "on",
        "log_disconnections": "on",
    }
    command = [str(bindir / "postgres"), "-D", str(data)]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **user.popen_kwargs(),
        )
    return PostgresServer(
        port,
        process.pid,
        process,
        directory,
        log_path,
        respawn=lambda: spawn_postgres(bindir, directory, data, user, log_dir, port),
    )


def wait_until_accepting(server: PostgresServer) -> str | None:
    """Poll with a real connection; return None once one succeeds, else why none did."""
    deadline = time.monotonic() + START_TIMEOUT
    last_problem = "no attempt made"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with code {server.process.returncode} before accepting connections"
        try:
            server.connect().close()
        except psycopg.OperationalError as exc:
            last_problem = f"{type(exc).__name__}: {exc}".strip()
        else:
            return None
        time.sleep(0.1)
    return f"not accepting connections after {START_TIMEOUT:.0f} s; last: {last_problem}"


def start_postgres(log_dir: Path) -> PostgresServer:
    """Create a cluster in a new temporary directory and start a server on it."""
    bindir = require_postgres()
    user = ServerUser.for_this_process()
    # Not under pytest's tmp_path: that is private to the test process's user (mode 0700), and
    # the server may run as another user.
    directory = Path(tempfile.mkdtemp(prefix="asgi-bridge-postgres-"))
    try:
        user.take(directory)
        data = directory / "data"
        init_cluster(bindir, data, user, log_dir)
        for _attempt in range(START_ATTEMPTS):
            server = spawn_postgres(bindir, directory, data, user, log_dir)
            problem = wait_until_accepting(server)
            if problem is None:
                return server
            server.terminate()
            if "address already in use" not in read_log_tail(server.log_path).lower():
                break
        pytest.fail(f"PostgreSQL ({bindir}) did not start: {problem}\n{server.describe()}")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_postgres(log_dir: Path) -> Iterator[PostgresServer]:
    """start_postgres(), stopped and its directory removed when the block ends."""
    server = start_postgres(log_dir)
    try:
        yield server
    finally:
        server.stop()
