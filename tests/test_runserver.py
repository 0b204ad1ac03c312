"""Tests of asgi_bridge's ``runserver``: real ``manage.py runserver`` processes, no mocks.

Each server test starts example_project's runserver in its own process group on a free port (with
the helpers of tests/e2e/conftest.py), waits until it answers, and stops it by process group when
the test ends, passed or failed. Tests that change files change a temporary copy of the project.
The system check is tested in-process.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import django
import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings
from websockets.asyncio.client import connect as websockets_connect

from asgi_bridge.devserver import configured_server
from tests.e2e.conftest import (
    EXAMPLE_PROJECT,
    RunningServer,
    ServerEnvironment,
    bracketed,
    find_free_port,
    migrated_environment,
    start_retrying_taken_ports,
)

STATIC_FILE = EXAMPLE_PROJECT / "demo" / "static" / "demo" / "style.css"
STATIC_URL = "/static/demo/style.css"
SYNC_VIEW_TEXT = "Hello from a sync view"
RELOADED_VIEW_TEXT = "Hello from a reloaded view"
RELOAD_TIMEOUT = 40.0
# StatReloader looks at files once a second; a change made before its first look goes unseen.
RETOUCH_SECONDS = 3.0
LOG_TIMEOUT = 5.0
BANNER = "Starting ASGI/asgi_bridge development server at {url}/"

StartRunserver = Callable[..., RunningServer]


# Starting and inspecting servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def runserver_environment(tmp_path_factory: pytest.TempPathFactory) -> ServerEnvironment:
    """A migrated throwaway database and a log directory for the module's servers."""
    return migrated_environment(tmp_path_factory, "runserver")


@pytest.fixture
def runserver(runserver_environment: ServerEnvironment) -> Iterator[StartRunserver]:
    """Start ``manage.py runserver``; every server started is stopped when the test ends."""
    started: list[RunningServer] = []

    def start(
        *arguments: str,
        host: str = "127.0.0.1",
        debug: bool = False,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> RunningServer:
        environment = {
            **runserver_environment.env,
            "DJANGO_DEBUG": "1" if debug else "0",
            **(env or {}),
        }
        server = start_retrying_taken_ports(
            lambda: spawn_runserver(
                arguments,
                host,
                cwd or runserver_environment.cwd,
                environment,
                runserver_environment,
            ),
            f"runserver {' '.join(arguments)}",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def spawn_runserver(
    arguments: tuple[str, ...],
    host: str,
    cwd: Path,
    env: dict[str, str],
    environment: ServerEnvironment,
) -> RunningServer:
    port = find_free_port(host)
    log_path = environment.log_dir / f"runserver-{port}.log"
    command = [
        sys.executable,
        "manage.py",
        "runserver",
        f"{bracketed(host)}:{port}",
        *arguments,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer("runserver", host, port, process.pid, log_path, process)


def read_log(server: RunningServer) -> str:
    return server.log_path.read_text(errors="replace")


def wait_for_log(server: RunningServer, text: str, timeout: float = LOG_TIMEOUT) -> str:
    """The server's log once it contains ``text``; fail with the log if it never does."""
    deadline = time.monotonic() + timeout
    while text not in (log := read_log(server)):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared in the log of {server.describe()}")
        time.sleep(0.1)
    return log


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux: /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in children.split()]


def environ_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def serving_thread(server: RunningServer) -> str:
    """The name of the thread that ran example_project's sync /probe/thread/ view."""
    response = httpx.get(f"{server.base_url}/probe/thread/", timeout=10.0)
    assert response.status_code == 200, server.describe()
    thread: str = response.json()["thread"]
    return thread


def stop_cleanly(server: RunningServer) -> None:
    """Stop the server by process group and check that it exited by itself with code 0."""
    server.stop()
    assert server.process.returncode == 0, server.describe()


# Serving through asgi_bridge -------------------------------------------------------------------


def test_serves_through_asgi_bridge_under_the_autoreloader(runserver: StartRunserver) -> None:
    server = runserver()

    log = read_log(server)
    assert BANNER.format(url=server.base_url) in log, server.describe()
    assert "Quit the server with CONTROL-C." in log
    assert serving_thread(server).startswith("asgi_bridge-"), server.describe()
    # Each request is logged as Django's runserver logs it.
    wait_for_log(server, '"GET /probe/thread/ HTTP/1.1" 200')
    # The process started is the reloader's parent; the server runs in its child.
    (child,) = child_pids(server.pid)
    assert "RUN_MAIN=true" in environ_of(child)
    stop_cleanly(server)


def test_noreload_serves_from_one_process(runserver: StartRunserver) -> None:
    server = runserver("--noreload", debug=True)

    assert serving_thread(server).startswith("asgi_bridge-"), server.describe()
    assert child_pids(server.pid) == []
    log = read_log(server)
    assert BANNER.format(url=server.base_url) in log, server.describe()
    assert "Watching for file changes" not in log
    stop_cleanly(server)


def test_ipv6_address(runserver: StartRunserver) -> None:
    server = runserver("--noreload", host="::1")

    assert BANNER.format(url=server.base_url) in read_log(server), server.describe()
    assert server.base_url.startswith("http://[::1]:")
    assert serving_thread(server).startswith("asgi_bridge-"), server.describe()


@pytest.mark.parametrize(
    ("debug", "arguments", "status"),
    [
        pytest.param(True, (), 200, id="DEBUG"),
        # example_project serves a collected STATIC_ROOT itself (ASGI_BRIDGE["STATIC_FILES"]);
        # here its STATIC_ROOT is empty, so what is served is runserver's, from the finders.
        pytest.param(False, ("--insecure", "--noreload"), 200, id="insecure"),
        pytest.param(False, ("--insecure", "--nostatic", "--noreload"), 404, id="nostatic"),
        pytest.param(False, ("--noreload",), 404, id="not-DEBUG"),
    ],
)
def test_static_files(
    runserver: StartRunserver,
    tmp_path: Path,
    debug: bool,
    arguments: tuple[str, ...],
    status: int,
) -> None:
    server = runserver(*arguments, debug=debug, env={"EXAMPLE_STATIC_ROOT": str(tmp_path)})

    response = httpx.get(f"{server.base_url}{STATIC_URL}", timeout=10.0)
    assert response.status_code == status, server.describe()
    if status == 200:
        assert response.content == STATIC_FILE.read_bytes()
        # Served by asgi_bridge.static from the finders: validators, and no caching.
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Accept-Ranges"] == "bytes"
        ranged = httpx.get(
            f"{server.base_url}{STATIC_URL}", headers={"Range": "bytes=0-4"}, timeout=10.0
        )
        assert (ranged.status_code, ranged.content) == (206, STATIC_FILE.read_bytes()[:5])


def test_a_collected_static_root_is_served_without_debug(runserver: StartRunserver) -> None:
    """The production path: STATIC_ROOT collected, DEBUG off, asgi_bridge's STATIC_FILES."""
    server = runserver("--noreload")

    response = httpx.get(f"{server.base_url}{STATIC_URL}", timeout=10.0)
    assert response.status_code == 200, server.describe()
    assert response.content == STATIC_FILE.read_bytes()
    assert response.headers["Cache-Control"] == "public, max-age=60"


def test_noasgi_runs_djangos_wsgi_server(runserver: StartRunserver) -> None:
    server = runserver("--noasgi", "--insecure")

    log = read_log(server)
    # Django 6.1 names the protocol in its runserver banner.
    banner = (
        "Starting WSGI development server"
        if django.VERSION >= (6, 1)
        else ("Starting development server")
    )
    assert f"{banner} at {server.base_url}/" in log, server.describe()
    assert "asgi_bridge" not in log
    assert not serving_thread(server).startswith("asgi_bridge-")
    response = httpx.get(f"{server.base_url}{STATIC_URL}", timeout=10.0)
    assert response.status_code == 200, server.describe()
    assert response.headers["server"].startswith("WSGIServer/")


def test_a_signal_stops_the_server_gracefully(runserver: StartRunserver) -> None:
    # -v 2 shows uvicorn's own lines, among them the end of the lifespan shutdown.
    server = runserver("-v", "2")
    wait_for_log(server, "Application startup complete.")

    stop_cleanly(server)
    assert "Application shutdown complete." in read_log(server), server.describe()


def test_djangos_own_handler_is_served_and_noted(runserver: StartRunserver) -> None:
    server = runserver("--noreload", env={"EXAMPLE_HANDLER": "stock"})

    log = read_log(server)
    assert "example_project.asgi.application is Django's own ASGIHandler" in log, server.describe()
    assert not serving_thread(server).startswith("asgi_bridge-")


def settings_module(directory: Path, name: str, body: str) -> dict[str, str]:
    """Write example_project's settings plus ``body`` as module ``name``; the env to use it."""
    (directory / f"{name}.py").write_text(
        f"from example_project.settings import *  # noqa: F403\n\n{body}\n"
    )
    pythonpath = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    return {"DJANGO_SETTINGS_MODULE": name, "PYTHONPATH": pythonpath}


def test_without_asgi_application_asgi_bridge_is_served(
    runserver: StartRunserver, tmp_path: Path
) -> None:
    env = settings_module(tmp_path, "no_asgi_application", "del ASGI_APPLICATION")
    server = runserver("--noreload", env=env)

    assert "Serving asgi_bridge.get_asgi_application() with asgi_bridge" in read_log(server)
    assert serving_thread(server).startswith("asgi_bridge-"), server.describe()


def test_hypercorn_from_the_setting(runserver: StartRunserver, tmp_path: Path) -> None:
    env = settings_module(
        tmp_path,
        "hypercorn_settings",
        'ASGI_BRIDGE = {**ASGI_BRIDGE, "RUNSERVER_SERVER": "hypercorn"}  # noqa: F405',
    )
    server = runserver(env=env)

    assert " on hypercorn " in read_log(server), server.describe()
    assert serving_thread(server).startswith("asgi_bridge-"), server.describe()
    response = httpx.get(f"{server.base_url}/hello/sync/", timeout=10.0)
    assert response.headers.get("server", "").startswith("hypercorn"), server.describe()
    stop_cleanly(server)


# The autoreloader ------------------------------------------------------------------------------


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of example_project's code to change files in."""
    copy = tmp_path / "example_project"
    shutil.copytree(
        EXAMPLE_PROJECT,
        copy,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "db.sqlite3", "var"),
    )
    return copy


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}; update this test"
    path.write_text(text.replace(old, new))


def keep_touching_until(ready: Callable[[], bool], touched: Path, what: str) -> None:
    """Wait until ``ready()``, touching ``touched`` again now and then, in case the reloader
    took its first look at the files after the change."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    next_touch = time.monotonic() + RETOUCH_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"never {what}")
        if time.monotonic() > next_touch:
            os.utime(touched)
            next_touch = time.monotonic() + RETOUCH_SECONDS
        time.sleep(0.2)


def answers(server: RunningServer, path: str, body: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(f"{server.base_url}{path}", timeout=5.0).text == body
        except httpx.TransportError:
            return False  # between two children, or none serving

    return check


def test_a_changed_file_restarts_the_server(runserver: StartRunserver, project_copy: Path) -> None:
    views = project_copy / "demo" / "views.py"
    server = runserver(debug=True, cwd=project_copy)
    assert httpx.get(f"{server.base_url}/hello/sync/").text == SYNC_VIEW_TEXT
    (first_child,) = child_pids(server.pid)

    rewrite(views, SYNC_VIEW_TEXT, RELOADED_VIEW_TEXT)
    keep_touching_until(
        answers(server, "/hello/sync/", RELOADED_VIEW_TEXT),
        views,
        f"served the changed view; {server.describe()}",
    )

    log = wait_for_log(server, f"{views.resolve()} changed, reloading.")
    assert log.count("Watching for file changes with StatReloader") >= 2, server.describe()
    assert child_pids(server.pid) != [first_child]
    stop_cleanly(server)


def test_the_reloader_outlives_an_error_in_the_code(
    runserver: StartRunserver, project_copy: Path
) -> None:
    views = project_copy / "demo" / "views.py"
    server = runserver(debug=True, cwd=project_copy)

    rewrite(views, "def hello_sync(", "def hello_sync((")
    keep_touching_until(
        lambda: "SyntaxError" in read_log(server),
        views,
        f"reported the SyntaxError; {server.describe()}",
    )
    # The child that failed keeps watching the files, and is replaced once they are fixed.
    (failed_child,) = child_pids(server.pid)
    views.write_text(
        views.read_text()
        .replace("def hello_sync((", "def hello_sync(")
        .replace(SYNC_VIEW_TEXT, RELOADED_VIEW_TEXT)
    )
    keep_touching_until(
        answers(server, "/hello/sync/", RELOADED_VIEW_TEXT),
        views,
        f"served the fixed view; {server.describe()}",
    )

    assert child_pids(server.pid) != [failed_child]
    stop_cleanly(server)


# Settings and checks, in-process ---------------------------------------------------------------


# contenttypes and auth: their checks, registered once imported, need them installed.
BASE_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]


def run_checks() -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("check", stdout=stdout, stderr=stderr)
    return stdout.getvalue() + stderr.getvalue()


@override_settings(INSTALLED_APPS=[*BASE_APPS, "django.contrib.staticfiles", "asgi_bridge"])
def test_check_warns_when_staticfiles_shadows_runserver() -> None:
    output = run_checks()
    assert "asgi_bridge.W001" in output
    assert "Put 'asgi_bridge' before 'django.contrib.staticfiles' in INSTALLED_APPS." in output


@override_settings(INSTALLED_APPS=[*BASE_APPS, "asgi_bridge", "django.contrib.staticfiles"])
def test_check_is_quiet_when_asgi_bridge_comes_first() -> None:
    assert "asgi_bridge.W001" not in run_checks()


@override_settings(ASGI_BRIDGE={"RUNSERVER_SERVER": "granian"})
def test_an_unsupported_server_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="RUNSERVER_SERVER"):
        configured_server()


@override_settings(ASGI_BRIDGE={})
def test_uvicorn_is_the_default_server() -> None:
    assert configured_server() == "uvicorn"


def websocket_echo(server: RunningServer) -> str:
    """One text frame through the example project's ws/echo/ view on ``server``."""

    async def echo() -> str:
        url = server.base_url.replace("http://", "ws://", 1) + "/ws/echo/"
        async with websockets_connect(url, proxy=None, open_timeout=10) as socket:
            await socket.send("through runserver")
            return str(await asyncio.wait_for(socket.recv(), 10))

    return asyncio.run(echo())


@pytest.mark.parametrize("server_name", ["uvicorn", "hypercorn"])
def test_websockets_are_served(runserver: StartRunserver, tmp_path: Path, server_name: str) -> None:
    env = settings_module(
        tmp_path,
        f"{server_name}_websocket_settings",
        f'ASGI_BRIDGE = {{**ASGI_BRIDGE, "RUNSERVER_SERVER": "{server_name}"}}  # noqa: F405',
    )
    server = runserver("--noreload", env=env)
    assert websocket_echo(server) == "through runserver", server.describe()
    stop_cleanly(server)
