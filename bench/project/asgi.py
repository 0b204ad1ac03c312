"""ASGI entry point for the benchmark project: serves the stock or the asgi_bridge handler.

The handler is chosen by the BENCH_HANDLER environment variable (``stock`` or ``bridge``) so
that one project, one settings module and one URLconf serve both sides of the comparison.
"""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

HANDLER = os.environ.get("BENCH_HANDLER", "stock")

if HANDLER == "stock":
    from django.core.asgi import get_asgi_application
elif HANDLER == "bridge":
    from asgi_bridge import get_asgi_application
else:
    raise ImproperlyConfigured(f"BENCH_HANDLER must be 'stock' or 'bridge', not {HANDLER!r}.")

application = get_asgi_application()

# bench/collector.py counts garbage collections through this; nothing happens without it.
from benchsite.gcstats import install_from_environment  # noqa: E402

install_from_environment()
