"""Django's own test settings, with asgi_bridge's ASGIHandler and ASGIRequest swapped in.

runtests.py loads settings before it imports any test module, so the test modules' own
``from django.core.handlers.asgi import ASGIHandler, ASGIRequest`` pick up asgi_bridge's classes.
"""

import sys

import django.core.asgi
import django.core.handlers.asgi
import django.test.client
from test_sqlite import *  # noqa: F403  (runtests.py's default settings)

from asgi_bridge import ASGIHandler, ASGIRequest

django.core.handlers.asgi.ASGIHandler = ASGIHandler  # type: ignore[misc]
django.core.handlers.asgi.ASGIRequest = ASGIRequest  # type: ignore[misc]
django.core.asgi.ASGIHandler = ASGIHandler  # type: ignore[misc]
django.test.client.ASGIRequest = ASGIRequest  # type: ignore[misc]

SWAP_BANNER = "asgi_bridge compat: Django's ASGIHandler and ASGIRequest are asgi_bridge's"
print(SWAP_BANNER, file=sys.stderr)
