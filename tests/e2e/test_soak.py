"""The soak of issue 21 in its CI size: ``bench/soak.py --ci`` runs 60 s of mixed traffic against
example_project on uvicorn and exits non-zero when the server's RSS, file descriptors, threads or
database connections trend upward after warm-up, or when the client's operations fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, SUMMARY_PROPERTY

SOAK = REPO_ROOT / "bench" / "soak.py"
# 60 s of traffic, plus migrate, collectstatic, start-up, the idle sample and the plot.
SOAK_TIMEOUT = 150


def test_soak_on_uvicorn_stays_flat(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--ci", "--results-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SOAK_TIMEOUT,
    )
    output = result.stdout + result.stderr
    slopes = [" ".join(line.split()) for line in output.splitlines() if "/min" in line]
    record_property(SUMMARY_PROPERTY, "soak --ci: " + "; ".join(slopes))
    assert result.returncode == 0, output[-6000:]
    assert list(tmp_path.glob("soak-*.png")), output[-2000:]
