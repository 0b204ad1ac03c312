"""ASGI entry point for bench/static.py: the project behind each ASGI way of serving static files.

BENCH_HANDLER picks one, each serving STATIC_URL and handing every other request to Django:

- ``bridge``: ``asgi_bridge.get_asgi_application()``; the settings turn on
  ``ASGI_BRIDGE["STATIC_FILES"]`` when BENCH_STATIC=bridge, and it serves STATIC_ROOT itself.
- ``stock``: Django's ``ASGIStaticFilesHandler`` around its own ASGI application, what
  ``runserver`` uses. It serves through ``django.contrib.staticfiles.views.serve`` with
  ``insecure=True`` (so DEBUG=False does not stop it), which looks files up with the staticfiles
  finders: it serves the STATICFILES_DIRS copy that collectstatic copied into STATIC_ROOT.
- ``servestatic``: ``servestatic.ServeStaticASGI`` around Django's ASGI application, serving
  STATIC_ROOT at STATIC_URL.
"""

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

HANDLER = os.environ.get("BENCH_HANDLER", "bridge")

if HANDLER == "bridge":
    from asgi_bridge import get_asgi_application

    application = get_asgi_application()
elif HANDLER == "stock":
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application as get_django_application

    application = ASGIStaticFilesHandler(get_django_application())
elif HANDLER == "servestatic":
    from django.core.asgi import get_asgi_application as get_django_application
    from servestatic import ServeStaticASGI

    django_application = get_django_application()  # sets Django up before settings are read
    application = ServeStaticASGI(
        django_application, root=settings.STATIC_ROOT, prefix=settings.STATIC_URL
    )
else:
    raise ImproperlyConfigured(
        f"BENCH_HANDLER must be 'bridge', 'stock' or 'servestatic', not {HANDLER!r}."
    )
