"""WSGI entry point for the benchmark project: Django's own WSGIHandler, the baseline column.

gunicorn serves it with one sync worker, the deployment issue #3 measures asgi_bridge against.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

application = get_wsgi_application()

# bench/collector.py counts garbage collections through this; nothing happens without it.
from benchsite.gcstats import install_from_environment  # noqa: E402

install_from_environment()
