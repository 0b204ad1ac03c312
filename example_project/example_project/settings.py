"""Settings for the asgi_bridge example project: a small SQLite-backed Django site.

Environment variables:

- ``DJANGO_DEBUG=1`` turns DEBUG on (static files are then served by the ASGI app).
- ``EXAMPLE_DB_PATH`` moves the SQLite database (end-to-end tests use a temporary one).
- ``EXAMPLE_BIG_FILE`` moves the 10 MiB file served by ``/download/``.
- ``EXAMPLE_PG_NAME`` switches the database to PostgreSQL (psycopg 3), with ``EXAMPLE_PG_HOST``,
  ``EXAMPLE_PG_PORT``, ``EXAMPLE_PG_USER`` and ``EXAMPLE_PG_PASSWORD``; the end-to-end tests use
  it to count the connections each ASGI handler opens.
- ``EXAMPLE_CONN_MAX_AGE`` sets the database's ``CONN_MAX_AGE`` (seconds), and
  ``EXAMPLE_CONN_HEALTH_CHECKS=1`` turns on its ``CONN_HEALTH_CHECKS``.
- ``EXAMPLE_THREADS`` sets ``ASGI_BRIDGE["THREADS"]``, the size of asgi_bridge's thread pool.
- ``EXAMPLE_STATIC_ROOT`` moves STATIC_ROOT, which asgi_bridge serves (end-to-end tests collect
  the static files into a temporary one).
- ``EXAMPLE_REDIS_URL`` puts broadcast groups on Redis (``ASGI_BRIDGE["BROADCAST"]``), so that
  the chat room works across server processes.
- ``EXAMPLE_THREAD_WAIT_TIMEOUT`` sets ``ASGI_BRIDGE["THREAD_WAIT_TIMEOUT"]``: how long a request
  waits for a thread before a 503.
- ``EXAMPLE_SECURE=1`` deploys as behind TLS: ``SECURE_SSL_REDIRECT`` (``/hello/`` stays
  reachable over plain HTTP, as a health check), HSTS for an hour, and secure session and CSRF
  cookies; the TLS end-to-end tests use it.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# For this example only: the key is public, so never reuse it for a real deployment.
SECRET_KEY = "example-only-insecure-key-for-the-asgi-bridge-demo-do-not-deploy"

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles, whose runserver it replaces: runserver then serves through asgi_bridge.
    "asgi_bridge",
    "django.contrib.staticfiles",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "example_project.asgi.application"
WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH", BASE_DIR / "db.sqlite3"),
    }
}

if os.environ.get("EXAMPLE_PG_NAME"):
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["EXAMPLE_PG_NAME"],
        "HOST": os.environ.get("EXAMPLE_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("EXAMPLE_PG_PORT", "5432"),
        "USER": os.environ.get("EXAMPLE_PG_USER", ""),
        "PASSWORD": os.environ.get("EXAMPLE_PG_PASSWORD", ""),
    }
if os.environ.get("EXAMPLE_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["EXAMPLE_CONN_MAX_AGE"])
if os.environ.get("EXAMPLE_CONN_HEALTH_CHECKS") == "1":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Pinned so migrations stay the same whatever Django's default is.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Without labels, test only this project, not whatever lies under the current directory.
TEST_RUNNER = "example_project.test_runner.ExampleProjectTestRunner"

STATIC_URL = "static/"
# Filled by `manage.py collectstatic` (scripts/demo runs it), and served by asgi_bridge itself
# (ASGI_BRIDGE["STATIC_FILES"] below).
STATIC_ROOT = Path(os.environ.get("EXAMPLE_STATIC_ROOT", BASE_DIR / "var" / "static"))

BIG_FILE_PATH = Path(os.environ.get("EXAMPLE_BIG_FILE", BASE_DIR / "var" / "big.bin"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
    },
    "loggers": {
        # propagate=False: Django's "django" logger also prints to the console in DEBUG.
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # INFO: lifespan shutdown says what after_response() work it waits for.
        "asgi_bridge": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# asgi_bridge's own settings. The demo runs with the defaults; the end-to-end tests set the
# body limits through the environment to prove the 413 and 408 answers on real servers.
ASGI_BRIDGE: dict[str, object] = {
    # Entered at ASGI lifespan startup; what it yields is every request's request.state.
    "LIFESPAN": ["demo.lifespan.process_record"],
    # STATIC_URL from STATIC_ROOT, ahead of the middleware: no separate file server needed.
    "STATIC_FILES": True,
}
if os.environ.get("EXAMPLE_MAX_REQUEST_BODY_SIZE"):
    ASGI_BRIDGE["MAX_REQUEST_BODY_SIZE"] = int(os.environ["EXAMPLE_MAX_REQUEST_BODY_SIZE"])
if os.environ.get("EXAMPLE_BODY_RECEIVE_TIMEOUT"):
    ASGI_BRIDGE["BODY_RECEIVE_TIMEOUT"] = float(os.environ["EXAMPLE_BODY_RECEIVE_TIMEOUT"])
if os.environ.get("EXAMPLE_THREADS"):
    ASGI_BRIDGE["THREADS"] = int(os.environ["EXAMPLE_THREADS"])
if os.environ.get("EXAMPLE_THREAD_WAIT_TIMEOUT"):
    ASGI_BRIDGE["THREAD_WAIT_TIMEOUT"] = float(os.environ["EXAMPLE_THREAD_WAIT_TIMEOUT"])
if os.environ.get("EXAMPLE_REDIS_URL"):
    ASGI_BRIDGE["BROADCAST"] = {
        "BACKEND": "asgi_bridge.broadcast.RedisBackend",
        "LOCATION": os.environ["EXAMPLE_REDIS_URL"],
    }

if os.environ.get("EXAMPLE_SECURE") == "1":
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^hello/"]
    SECURE_HSTS_SECONDS = 3600
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
