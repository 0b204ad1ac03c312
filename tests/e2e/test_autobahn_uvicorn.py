"""The Autobahn|Testsuite's fuzzing client against example_project's ws/echo/ view on uvicorn.

``wstest`` (Python 2 only; scripts/test installs autobahntestsuite into pyenv's 2.7.18) runs
every case but 9.* (performance, up to 16 MiB messages), 12.* and 13.* (permessage-deflate) in
about 15 s. Framing, UTF-8 validation and close handshakes are the server's work: uvicorn's
``websockets`` library answers them before a message reaches the application. The cases it
answers differently from Autobahn's strict reading are listed in SERVER_CASES with the reason;
every other case must pass. What is the handler's (echoing every complete message, text and
binary, fragmented or not, in order) is in cases 1, 2, 5, 6 and 10.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import SUMMARY_PROPERTY, RunningServer

WSTEST = Path(
    os.environ.get(
        "AUTOBAHN_WSTEST", Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "wstest"
    )
)
EXCLUDED = ["9.*", "12.*", "13.*"]
# Cases where uvicorn's websockets library, not the application, decides the outcome.
SERVER_CASES = {
    # A close frame between two fragments of a message: the library closes with 1002 (protocol
    # error) before the message is complete; Autobahn expects 1000. The application never sees
    # the unfinished message.
    "7.1.5": "FAILED",
}


class TestAutobahnUvicorn:
    server_name = "uvicorn"

    def test_fuzzing_client(
        self, server: RunningServer, tmp_path: Path, record_property: pytest.RecordProperty
    ) -> None:
        run_fuzzing_client(server, tmp_path, record_property)


def run_fuzzing_client(
    server: RunningServer, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    if not WSTEST.exists():
        pytest.fail(
            f"{WSTEST} is missing: install it with "
            "~/.pyenv/versions/2.7.18/bin/python -m pip install autobahntestsuite"
        )
    reports = tmp_path / "reports"
    spec = {
        "outdir": str(reports),
        "servers": [
            {
                "agent": "asgi_bridge",
                "url": f"ws://{server.host}:{server.port}/ws/echo/",
            }
        ],
        "cases": ["*"],
        "exclude-cases": EXCLUDED,
        "exclude-agent-cases": {},
    }
    spec_file = tmp_path / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec))
    finished = subprocess.run(
        [str(WSTEST), "-m", "fuzzingclient", "-s", str(spec_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads((reports / "index.json").read_text())["asgi_bridge"]
    behaviours = collections.Counter(case["behavior"] for case in results.values())
    unexpected = {
        case_id: case["behavior"]
        for case_id, case in results.items()
        if case["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
        and SERVER_CASES.get(case_id) != case["behavior"]
    }
    assert not unexpected, (unexpected, server.describe())
    # NON-STRICT: the right outcome, reached by closing at once rather than failing later;
    # the close itself must be right.
    wrong_closes = {
        case_id: case["behaviorClose"]
        for case_id, case in results.items()
        if case["behavior"] == "NON-STRICT" and case["behaviorClose"] != "OK"
    }
    assert not wrong_closes, wrong_closes
    record_property(
        SUMMARY_PROPERTY,
        f"{len(results)} cases ({', '.join(EXCLUDED)} excluded): "
        + ", ".join(f"{count} {name}" for name, count in sorted(behaviours.items()))
        + f"; the server's own outcomes: {', '.join(sorted(SERVER_CASES))}",
    )
