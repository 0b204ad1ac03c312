"""End-to-end tests: example_project behind real ASGI servers, driven over HTTP."""
