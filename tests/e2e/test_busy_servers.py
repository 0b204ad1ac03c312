"""A saturated thread pool answers 503 after THREAD_WAIT_TIMEOUT, on every server, and its
metrics say so.

Each server runs example_project with one thread and a short wait. A slow sync view holds the
thread; meanwhile a plain sync request must get ``503`` with ``Retry-After``, the slow view still
completes, and ``/metrics/`` (asgi_bridge.metrics.metrics_view) counts the timeout and the 503.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import SUMMARY_PROPERTY, RunningServer, ServerEnvironment, start_server

SERVERS = ["uvicorn", "daphne", "granian", "hypercorn"]
WAIT_TIMEOUT = 0.3
SLOW_SECONDS = 4.0


@pytest.fixture
def one_thread_server(
    request: pytest.FixtureRequest, server_environment: ServerEnvironment
) -> Iterator[RunningServer]:
    environment = dataclasses.replace(
        server_environment,
        env={
            **server_environment.env,
            "EXAMPLE_THREADS": "1",
            "EXAMPLE_THREAD_WAIT_TIMEOUT": str(WAIT_TIMEOUT),
        },
    )
    running = start_server(request.param, "127.0.0.1", environment)
    try:
        yield running
    finally:
        running.stop()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^asgi_bridge_thread_pool_{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


@pytest.mark.parametrize("one_thread_server", SERVERS, indirect=True)
def test_a_saturated_pool_answers_503_after_the_wait(
    one_thread_server: RunningServer, record_property: pytest.RecordProperty
) -> None:
    server = one_thread_server
    with (
        httpx.Client(base_url=server.base_url, timeout=30.0) as client,
        ThreadPoolExecutor(1) as slow_client,
    ):
        slow = slow_client.submit(
            client.get, "/probe/slow/", params={"seconds": SLOW_SECONDS, "token": uuid.uuid4().hex}
        )
        # Until the slow view holds the only thread, a plain request may still get it.
        deadline = time.monotonic() + SLOW_SECONDS
        refused = None
        while refused is None and time.monotonic() < deadline:
            response = client.get("/hello/sync/")
            if response.status_code == 503:
                refused = response
            else:
                assert response.status_code == 200, response.text
                time.sleep(0.05)
        assert refused is not None, f"no 503 while the only thread was busy\n{server.describe()}"
        assert refused.headers["Retry-After"] == "1"
        assert "503" in refused.text
        assert slow.result().status_code == 200, server.describe()
        text = client.get("/metrics/").text
    assert metric(text, "max_threads") == 1
    assert metric(text, "timeouts_total") >= 1, text
    assert metric(text, "busy_responses_total") >= 1, text
    assert metric(text, "waiting") == 0, text
    log = server.log_path.read_text(errors="replace")
    assert "Service Unavailable: No thread came free" in log, server.describe()
    record_property(
        SUMMARY_PROPERTY,
        f"THREADS=1, THREAD_WAIT_TIMEOUT={WAIT_TIMEOUT}: 503 while a slow view held the thread; "
        f"{metric(text, 'timeouts_total'):.0f} timeout(s), "
        f"{metric(text, 'busy_responses_total'):.0f} 503(s) in /metrics/",
    )
