"""Facts about the machine and the software under test, printed above every benchmark run.

Also measures how busy the CPUs are with other work, since a shared machine makes ratios noisy.
"""

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import servers
import throughput

BUSY_WARNING_PERCENT = 10.0
REPORTED_PACKAGES = (
    "django",
    "asgiref",
    "asgi-bridge",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "gunicorn",
)


def installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def in_process_facts() -> str:
    """The CPU, the versions that decide what a handler does without a server, and the
    revision: the second header line of the in-process tools."""
    names = ("django", "asgiref", "asgi_bridge", "uvloop")
    packages = ", ".join(f"{name} {installed_version(name)}" for name in names)
    return f"{cpu_model()}; {packages}; git {git_revision()}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def total_memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def git_revision() -> str:
    """HEAD, and whether asgi_bridge/ differs from it: the numbers belong to the working tree."""
    repo = Path(__file__).resolve().parent.parent
    # Read-only queries; optional locks off so a concurrent git command is never disturbed.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    if not head:
        return "no commit yet"
    changed = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "asgi_bridge"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    return f"{head} (asgi_bridge/ has uncommitted changes)" if changed else head


def cpu_totals() -> tuple[int, int]:
    """Clock ticks of all CPUs since boot: in all, and idle (idle + iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_cpu_seconds() -> float:
    """CPU time every process on the machine has used since boot, all CPUs together."""
    total, idle = cpu_totals()
    return (total - idle) / servers.CLOCK_TICKS


def busy_cpu_percent(seconds: float = 1.0) -> float:
    """CPU use by everything on the machine over a short sample taken while the benchmark idles."""
    total_before, idle_before = cpu_totals()
    time.sleep(seconds)
    total_after, idle_after = cpu_totals()
    elapsed = total_after - total_before
    return round(100 * (1 - (idle_after - idle_before) / elapsed), 1) if elapsed else 0.0


def warn_if_busy(when: str) -> float:
    busy = busy_cpu_percent()
    if busy > BUSY_WARNING_PERCENT:
        print(
            f"WARNING ({when}): other processes used {busy:.0f}% of the CPUs during a 1 s idle "
            "sample; the numbers will be noisy and ratios unreliable.",
            flush=True,
        )
    return busy


def print_facts(facts: dict[str, Any]) -> None:
    """The facts, a line each, the packages' versions on one line."""
    for key, value in facts.items():
        if key == "packages":
            value = ", ".join(f"{name} {version}" for name, version in value.items())
        print(f"{key}: {value}")


def machine_facts(usable_cores: int, load_generator: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cores": usable_cores,
        "cpu": cpu_model(),
        "memory_gib": total_memory_gib(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: installed_version(name) for name in REPORTED_PACKAGES},
        "git_revision": git_revision(),
        "load_generator": load_generator,
        "pinning": f"server on core {servers.SERVER_CORE}, clients on core {throughput.LOAD_CORE}",
    }
