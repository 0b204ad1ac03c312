"""Settings for the benchmark project: production-like (DEBUG off, default middleware).

Paths that differ per run come from the environment, set by bench/run.py:
BENCH_DB is the SQLite database file and BENCH_FILE the file served by /file/.
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A fixed key is fine: the project only ever listens on loopback during a benchmark run.
SECRET_KEY = "bench-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"

DEBUG = False

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "benchsite",
]

# The list `django-admin startproject` generates, so each request pays realistic middleware cost.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "benchsite.urls"

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

# Outside the repository by default, so a stray run leaves nothing behind.
DEFAULT_DB = Path(tempfile.gettempdir()) / "asgi_bridge_bench.sqlite3"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", str(DEFAULT_DB)),
    },
}
# The same database through persistent connections, for the /orm-persistent/ row: a handler whose
# threads live on can reuse them; one that makes a thread per request cannot.
DATABASES["persistent"] = {**DATABASES["default"], "CONN_MAX_AGE": 60}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

BENCH_FILE = os.environ.get("BENCH_FILE", "")

# Errors should reach the terminal of whoever runs the benchmark; nothing else should.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# asgi_bridge's settings; BENCH_THREADS sizes its thread pool, and BENCH_FREEZE_GC=0 turns
# FREEZE_GC off to measure what it buys (the defaults otherwise).
ASGI_BRIDGE: dict[str, object] = {}
if os.environ.get("BENCH_THREADS"):
    ASGI_BRIDGE["THREADS"] = int(os.environ["BENCH_THREADS"])
if os.environ.get("BENCH_FREEZE_GC") == "0":
    ASGI_BRIDGE["FREEZE_GC"] = False

# bench/broadcast.py: broadcast groups on its throwaway redis-server (BENCH_REDIS_URL).
# BENCH_BROADCAST=redis gives asgi_bridge its Redis backend (without it: the in-memory default);
# BENCH_CHANNEL_LAYER names the channels_redis layer the Channels application uses.
CHANNEL_LAYER_BACKENDS = {
    "RedisChannelLayer": "channels_redis.core.RedisChannelLayer",
    "RedisPubSubChannelLayer": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
if os.environ.get("BENCH_BROADCAST") == "redis":
    ASGI_BRIDGE["BROADCAST"] = {
        "BACKEND": "asgi_bridge.broadcast.RedisBackend",
        "LOCATION": os.environ["BENCH_REDIS_URL"],
    }
if os.environ.get("BENCH_CHANNEL_LAYER"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": CHANNEL_LAYER_BACKENDS[os.environ["BENCH_CHANNEL_LAYER"]],
            "CONFIG": {"hosts": [os.environ["BENCH_REDIS_URL"]]},
        },
    }

# bench/static.py: the static files every contender serves. collectstatic copies them from
# BENCH_STATIC_SOURCE (a STATICFILES_DIRS entry, where Django's ASGIStaticFilesHandler finds them
# through the staticfiles finders) into BENCH_STATIC_ROOT (which asgi_bridge, ServeStatic and
# WhiteNoise serve). BENCH_STATIC names the contender whose settings differ: "bridge" turns on
# asgi_bridge's STATIC_FILES, "whitenoise" adds WhiteNoise's middleware where its docs put it,
# right after SecurityMiddleware.
if os.environ.get("BENCH_STATIC_ROOT"):
    STATIC_ROOT = os.environ["BENCH_STATIC_ROOT"]
    STATICFILES_DIRS = [os.environ["BENCH_STATIC_SOURCE"]]
if os.environ.get("BENCH_STATIC") == "bridge":
    ASGI_BRIDGE["STATIC_FILES"] = True
elif os.environ.get("BENCH_STATIC") == "whitenoise":
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
