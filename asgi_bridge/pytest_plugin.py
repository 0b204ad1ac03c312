"""The ``asgi_client`` pytest fixture, loaded through the ``pytest11`` entry point.

pytest imports this module for every project that has asgi_bridge installed, so it imports
neither Django nor asgi_bridge.testing until a test asks for the fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from asgi_bridge.testing import ASGIClient


@pytest.fixture
def asgi_client() -> ASGIClient:
    """An ``ASGIClient`` for the project's application, built at its first request.

    Its methods are coroutines: await them in an async test (pytest-asyncio or anyio), or call
    them through ``asgiref.sync.async_to_sync`` in a sync one, one event loop per call.
    """
    from asgi_bridge.testing import ASGIClient

    return ASGIClient()
