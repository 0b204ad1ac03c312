"""Peak server memory growth while serving many large downloads, or one very large upload.

Growth is the servers' VmHWM (peak resident set) after the scenario minus their VmRSS after a
warm-up, summed over the serving processes. Each scenario gets a freshly started server; the
peak is also reset after warm-up (``echo 5 > /proc/<pid>/clear_refs``) where the kernel allows.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import http11
from servers import RunningServer

MIB = 1024 * 1024
DOWNLOAD_COUNT = 64
DOWNLOAD_SIZE = 10 * MIB
UPLOAD_SIZE = 200 * MIB
UPLOAD_PIECE = 64 * 1024
SCENARIO_TIMEOUT = 300.0
SAMPLE_INTERVAL = 0.02


@dataclass(frozen=True)
class MemoryScenario:
    key: str
    label: str
    target_mib: float
    run: Callable[[int], Awaitable[list[str]]]


@dataclass
class MemoryResult:
    baseline_rss_mib: float
    peak_hwm_mib: float
    growth_mib: float
    sampled_peak_growth_mib: float
    duration_s: float
    peak_was_reset: bool
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def total_mib(pids: list[int], field: str) -> float:
    return sum(read_status_kib(pid, field) for pid in pids) / 1024


def reset_peak(pids: list[int]) -> bool:
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def download_file(port: int, path: str = "/file/", size: int = DOWNLOAD_SIZE) -> str | None:
    reader, writer = await asyncio.open_connection(http11.HOST, port)
    try:
        writer.write(http11.build_request("GET", path, port, keep_alive=False))
        response = await http11.read_response(reader)
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        return f"download: {type(error).__name__}: {error}"
    finally:
        writer.close()
    if response.status != 200:
        return f"download: status {response.status}"
    if response.body_size != size:
        return f"download: got {response.body_size} bytes, expected {size}"
    return None


async def download_many(port: int) -> list[str]:
    outcomes = await asyncio.gather(*(download_file(port) for _ in range(DOWNLOAD_COUNT)))
    return [outcome for outcome in outcomes if outcome]


async def upload_large(port: int, size: int = UPLOAD_SIZE) -> list[str]:
    reader, writer = await asyncio.open_connection(http11.HOST, port)
    piece = b"u" * UPLOAD_PIECE
    try:
        writer.write(http11.build_request("POST", "/upload/", port, size, keep_alive=False))
        for _ in range(size // UPLOAD_PIECE):
            writer.write(piece)
            # drain() honours TCP back-pressure, so the client never buffers more than a piece.
            await writer.drain()
        response = await http11.read_response(reader, keep_body=True)
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        return [f"upload: {type(error).__name__}: {error}"]
    finally:
        writer.close()
    if response.status != 200:
        return [f"upload: status {response.status}"]
    if response.body.strip() != str(size).encode():
        return [f"upload: server counted {response.body[:40]!r}, expected {size}"]
    return []


SCENARIOS = [
    MemoryScenario("download", f"{DOWNLOAD_COUNT} x 10 MiB downloads", 48, download_many),
    MemoryScenario("upload", "200 MiB upload", 40, upload_large),
]


async def warm_up(port: int) -> None:
    # Exercise the code paths once so imports and thread pools count in the baseline.
    for path in ("/sync-hello/", "/async-hello/", "/stream-sync/"):
        for _ in range(5):
            await http11.request_once(port, "GET", path)
    await download_file(port)
    await upload_large(port, size=MIB)


async def sample_peak(pids: list[int], stop: asyncio.Event) -> float:
    # Sums sampled together give a lower bound on the combined peak; VmHWM sums an upper one.
    peak = 0.0
    while not stop.is_set():
        try:
            peak = max(peak, total_mib(pids, "VmRSS"))
        except OSError:
            break  # the server died; run_scenario reports that
        await asyncio.sleep(SAMPLE_INTERVAL)
    return peak


async def run_scenario(
    server: RunningServer,
    scenario: MemoryScenario,
    warm: Callable[[int], Awaitable[None]] = warm_up,
) -> MemoryResult:
    await warm(server.port)
    await asyncio.sleep(0.5)  # let freed memory settle before reading the baseline
    pids = server.measured_pids()
    was_reset = reset_peak(pids)
    baseline = total_mib(pids, "VmRSS")
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(pids, stop))
    started = time.perf_counter()
    try:
        errors = await asyncio.wait_for(scenario.run(server.port), SCENARIO_TIMEOUT)
    except asyncio.TimeoutError:
        errors = [f"timed out after {SCENARIO_TIMEOUT:.0f}s"]
    duration = time.perf_counter() - started
    stop.set()
    sampled_peak = await sampler
    try:
        peak = total_mib(pids, "VmHWM")
    except OSError:
        peak = float("nan")
        errors.append("server process gone after the scenario (crashed or killed?)")
    return MemoryResult(
        baseline_rss_mib=round(baseline, 1),
        peak_hwm_mib=round(peak, 1),
        growth_mib=round(peak - baseline, 1),
        sampled_peak_growth_mib=round(sampled_peak - baseline, 1),
        duration_s=round(duration, 2),
        peak_was_reset=was_reset,
        errors=errors,
    )


def measure(
    server: RunningServer,
    scenario: MemoryScenario,
    warm: Callable[[int], Awaitable[None]] = warm_up,
) -> MemoryResult:
    """Run one scenario on a fresh server; ``warm`` exercises its code paths first."""
    return asyncio.run(run_scenario(server, scenario, warm))
