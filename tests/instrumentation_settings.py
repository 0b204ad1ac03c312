"""Settings for the instrumentation parity tests: sessions and auth, so that a request can log in.

tests/instrumentation_driver.py runs with these in a process of its own; the database is a file
it names in ASGI_BRIDGE_INSTRUMENTATION_DB, shared by every thread that serves a request.
"""

import os

SECRET_KEY = "asgi-bridge-instrumentation-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.instrumentation_urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ASGI_BRIDGE_INSTRUMENTATION_DB", ":memory:"),
    }
}
# MD5 keeps creating the test user fast; nothing here is a real password.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
ASGI_BRIDGE: dict[str, object] = {}
# The 500s are the point of the tests: Django's error log would only fill the driver's stderr.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
