"""ASGI entry point: serves the example project through asgi_bridge instead of Django's handler.

Run it with any ASGI server, for example::

    uvicorn example_project.asgi:application --app-dir example_project

``EXAMPLE_HANDLER=stock`` serves it through Django's own handler instead, for side-by-side
comparisons (the end-to-end tests count database connections under both).
"""

import os

# Chosen before anything below can touch django.conf.settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

from django.core.exceptions import ImproperlyConfigured

HANDLER = os.environ.get("EXAMPLE_HANDLER", "asgi_bridge")
if HANDLER == "asgi_bridge":
    from asgi_bridge import get_asgi_application
elif HANDLER == "stock":
    from django.core.asgi import get_asgi_application
else:
    raise ImproperlyConfigured(
        f"EXAMPLE_HANDLER must be 'asgi_bridge' (the default) or 'stock', not {HANDLER!r}."
    )

application = get_asgi_application()
