"""Management commands of the asgi_bridge app."""
