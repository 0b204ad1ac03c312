"""Settings for asgi_bridge's unit tests; tests/e2e drive real servers and need none of these."""

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
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
STATIC_URL = "static/"
ASGI_BRIDGE: dict[str, object] = {}
