"""The example project's configuration package: settings, URLs and the ASGI/WSGI entry points."""
