"""The ``asgi_client`` pytest fixture, loaded through the ``pytest11`` entry point.

pytest imports this module for every project that has asgi_bridge installed, so it imports
neither Django nor asgi_bridge.testing until a test asks for the fixture. It also keeps a test
run's objects collectable: a lifespan startup driven by a test does not freeze them
(``ASGI_BRIDGE["FREEZE_GC"]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from asgi_bridge.garbage import never_freeze

if TYPE_CHECKING:
    from asgi_bridge.testing import ASGIClient


def pytest_configure(config: pytest.Config) -> None:
    never_freeze()


@pytest.fixture
def asgi_client() -> ASGIClient:
    """An ``ASGIClient`` for the project's application, built at its first request.

    Its methods are coroutines: await them in an async test (pytest-asyncio or anyio), or call
    them through ``asgiref.sync.async_to_sync`` in a sync one, one event loop per call.
    """
    from asgi_bridge.testing import ASGIClient

    return ASGIClient()
