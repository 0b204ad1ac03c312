"""Counts garbage collections and the CPU they take, for bench/collector.py.

Installed by the project's entry points when BENCH_GC_STATS names a file prefix. Each
collection is timed in thread CPU time (a collection holds the GIL, so wall time would also
count time the VM gave to others). SIGNAL makes the process write its totals so far to
``<prefix>.<pid>`` as JSON.
"""

import gc
import json
import os
import signal
import time
from typing import Any

SIGNAL = signal.SIGRTMIN + 2
_started = [0.0]
# Per generation: collections, CPU seconds, objects found unreachable.
_totals = [[0, 0.0, 0] for _ in range(3)]


def count(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.thread_time()
        return
    totals = _totals[info["generation"]]
    totals[0] += 1
    totals[1] += time.thread_time() - _started[0]
    totals[2] += info["collected"]


def write_totals(prefix: str) -> None:
    with open(f"{prefix}.{os.getpid()}", "w") as target:
        json.dump({"generations": _totals, "frozen": gc.get_freeze_count()}, target)


def install_from_environment() -> None:
    prefix = os.environ.get("BENCH_GC_STATS")
    if not prefix:
        return
    gc.callbacks.append(count)
    signal.signal(SIGNAL, lambda signum, frame: write_totals(prefix))
