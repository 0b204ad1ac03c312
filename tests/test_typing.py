"""The public API type-checks in a user's code: mypy --strict, with django-stubs, over samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).parent / "typing_samples"


def test_websocket_views_type_check_in_urlpatterns() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(SAMPLES / "websocket_urls.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SAMPLES.parent.parent,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
