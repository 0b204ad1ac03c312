"""Settings for asgi_bridge's unit tests; tests/e2e drive real servers and need none of these."""

import os
import tempfile

SECRET_KEY = "asgi-bridge-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        # A file, not memory, for the test database: Django never closes an in-memory SQLite
        # connection, and one left open by a TestCase on the main thread would be touched by
        # request_finished (close_old_connections) in later SimpleTestCases, which
        # pytest-django forbids.
        "TEST": {
            "NAME": os.path.join(tempfile.gettempdir(), f"asgi_bridge_tests_{os.getpid()}.sqlite3")
        },
    }
}
USE_TZ = True
STATIC_URL = "static/"
ASGI_BRIDGE: dict[str, object] = {}
