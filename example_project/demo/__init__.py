"""The demo app: one view per asgi_bridge feature, plus probes that end-to-end tests read."""
