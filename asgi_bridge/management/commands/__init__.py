"""asgi_bridge's management commands: ``runserver``, served through asgi_bridge."""
