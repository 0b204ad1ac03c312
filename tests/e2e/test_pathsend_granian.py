"""pathsend under granian, which advertises it: the client gets each response's own bytes.

example_project's ``/probe/pathsend/<case>/`` views return FileResponses whose file name may
lead elsewhere than their content; each says in ``X-Probe-Content-SHA256`` what Django itself
reads from an identical response.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest


class TestPathsendGranian:
    server_name = "granian"

    @pytest.mark.parametrize(
        "case",
        [
            # A ContentFile named after another file on disk: that file must not be sent.
            "hostile-name",
            # gzip.open() of a file on disk: its decompressed bytes, not the file.
            "gzip",
            # A plain file at its start: sent by path, with its size as Content-Length.
            "real-file",
        ],
    )
    def test_body_is_the_responses_own_content(self, client: httpx.Client, case: str) -> None:
        response = client.get(f"/probe/pathsend/{case}/")
        assert response.status_code == 200, response.text[:2000]
        received = hashlib.sha256(response.content).hexdigest()
        assert received == response.headers["x-probe-content-sha256"], response.content[:200]
        assert response.headers["content-length"] == str(len(response.content))
