"""ASGI entry point: serves the example project through asgi_bridge instead of Django's handler.

Run it with any ASGI server, for example::

    uvicorn example_project.asgi:application --app-dir example_project
"""

import os

# Chosen before anything below can touch django.conf.settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

from django.conf import settings

from asgi_bridge import get_asgi_application

application = get_asgi_application()

if settings.DEBUG:
    # The demo has no separate static file server, so let staticfiles serve /static/ in DEBUG.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
