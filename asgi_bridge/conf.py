"""The ``ASGI_BRIDGE`` settings dict: defaults, validation and cached access, in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "ASGI_BRIDGE"
DEFAULT_THREADS = 32
# Long enough for any burst a healthy server absorbs; a request that waits longer for a thread
# is better answered 503 now, so that a load balancer or client can retry elsewhere.
DEFAULT_THREAD_WAIT_TIMEOUT = 10.0
# Requests waiting for a thread at once: well past a burst of connections opening together
# (each needs a thread for its middleware), while bounding what a flood can queue up.
DEFAULT_THREAD_QUEUE_SIZE = 1000
# Messages a WebSocket may queue behind a send that waits for a slow client: room for a burst
# of broadcasts, not for a client that has stopped reading.
DEFAULT_WEBSOCKET_SEND_QUEUE_SIZE = 64
DEFAULT_BACKGROUND_SHUTDOWN_TIMEOUT = 30.0
# after_response() work is mostly waiting on I/O (mail, webhooks), which a few threads keep up
# with; few, so that it takes little of the GIL from requests and few more database connections.
DEFAULT_BACKGROUND_THREADS = 4
# About what 4 threads get through in the 30 s shutdown timeout at 0.1 s a job, so a full
# backlog can still drain at shutdown; a waiting job is only a few references.
DEFAULT_BACKGROUND_QUEUE_SIZE = 1000
# The ASGI servers runserver can run (asgi_bridge.devserver.SERVERS); the first is the default.
RUNSERVER_SERVERS = ("uvicorn", "hypercorn")
# The broadcast backends under the names the docs give them (asgi_bridge.broadcast is the
# function that broadcasts, so these are not module paths); any other dotted path is imported.
BROADCAST_BACKENDS = {
    "asgi_bridge.broadcast.MemoryBackend": "asgi_bridge.broadcasting.memory.MemoryBackend",
    "asgi_bridge.broadcast.RedisBackend": "asgi_bridge.broadcasting.redis.RedisBackend",
}
DEFAULT_BROADCAST_PREFIX = "asgi_bridge:"
# Seconds browsers may keep a static file whose name carries no content hash, as WhiteNoise's
# default: short, so that a deploy shows within a minute. Hashed names are kept for a year.
DEFAULT_STATIC_MAX_AGE = 60
# Ranges one request may ask for; more are answered with the whole file, so that many small or
# overlapping ranges cannot multiply the work of a request.
DEFAULT_STATIC_MAX_RANGES = 16
# Apache's mod_reqtimeout default: a body must keep up 500 bytes a second on average, after a
# grace of 20 s (BODY_RECEIVE_TIMEOUT, when set, is the grace instead). Mobile uploads run at
# kilobytes a second or more; a trickle that holds a connection open for hours does not.
DEFAULT_BODY_MIN_RATE = 500
DEFAULT_BODY_MIN_RATE_GRACE = 20.0


@dataclass(frozen=True)
class BroadcastSettings:
    """Validated values of ``ASGI_BRIDGE["BROADCAST"]``: where broadcast groups live."""

    # Dotted path to the backend class, as written in the setting.
    backend: str = "asgi_bridge.broadcast.MemoryBackend"
    # The backend's server: a redis:// (rediss://, unix://) URL for RedisBackend.
    location: str | None = None
    # Keyword arguments for the backend's client (redis-py's connection pools).
    options: Mapping[str, Any] = field(default_factory=dict)
    # Prepended to each group's name to make its pub/sub channel, so projects can share a server.
    prefix: str = DEFAULT_BROADCAST_PREFIX
    # The CHANNEL_LAYERS alias that each broadcast is also sent to with group_send, or None.
    channel_layer: str | None = None

    @property
    def backend_path(self) -> str:
        """The importable dotted path of the backend class."""
        return BROADCAST_BACKENDS.get(self.backend, self.backend)


@dataclass(frozen=True)
class BridgeSettings:
    """Validated values of the ``ASGI_BRIDGE`` dict."""

    max_request_body_size: int | None = None
    body_receive_timeout: float | None = None
    # The average bytes per second a request body must keep up once its grace is over; None:
    # no minimum.
    body_min_rate: int | None = DEFAULT_BODY_MIN_RATE
    # Pooled threads that run requests' sync code; also the most database connections a
    # process keeps open with CONN_MAX_AGE.
    threads: int = DEFAULT_THREADS
    # How long a request waits for its first thread before a 503; None waits for ever.
    thread_wait_timeout: float | None = DEFAULT_THREAD_WAIT_TIMEOUT
    # How many requests may wait for a thread at once before more get a 503; None: no limit.
    thread_queue_size: int | None = DEFAULT_THREAD_QUEUE_SIZE
    # Seconds between log lines of the thread pool's metrics (asgi_bridge.metrics); None: none.
    metrics_log_interval: float | None = None
    # Whether a WebSocket handshake's Origin is checked (asgi_bridge.websockets.handshake).
    websocket_origin_check: bool = True
    # Whether a handshake without an Origin header (not a browser) is allowed.
    websocket_allow_no_origin: bool = True
    # Origins allowed besides the request's host, ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS.
    websocket_allowed_origins: tuple[str, ...] = ()
    # Messages a WebSocket queues while a send waits for a slow client, before closing (1013).
    websocket_send_queue_size: int = DEFAULT_WEBSOCKET_SEND_QUEUE_SIZE
    # Dotted paths to async context managers run for the ASGI lifespan, in order.
    lifespan: tuple[str, ...] = ()
    # How long lifespan shutdown waits for after_response() work before cancelling it.
    background_shutdown_timeout: float | None = DEFAULT_BACKGROUND_SHUTDOWN_TIMEOUT
    # Threads of their own that run after_response() sync work, never a request's; also the
    # most requests' worth of that work, sync or async, that runs at once.
    background_threads: int = DEFAULT_BACKGROUND_THREADS
    # How many after_response() jobs may wait to run before after_response() raises
    # BackgroundQueueFull.
    background_queue_size: int = DEFAULT_BACKGROUND_QUEUE_SIZE
    # The ASGI server that manage.py runserver serves the project on.
    runserver_server: str = RUNSERVER_SERVERS[0]
    # Whether lifespan startup takes the objects alive then out of the garbage collector's way.
    freeze_gc: bool = True
    # Where broadcast groups live (asgi_bridge.broadcasting).
    broadcast: BroadcastSettings = field(default_factory=BroadcastSettings)
    # Whether STATIC_URL is served from STATIC_ROOT, and MEDIA_URL from MEDIA_ROOT, before the
    # middleware chain (asgi_bridge.static).
    static_files: bool = False
    media_files: bool = False
    # Cache-Control max-age of static files whose names carry no hash; None sends none.
    static_max_age: int | None = DEFAULT_STATIC_MAX_AGE
    # The most ranges a request may ask for before it gets the whole file instead.
    static_max_ranges: int = DEFAULT_STATIC_MAX_RANGES
    # Whether a symbolic link may lead outside STATIC_ROOT or MEDIA_ROOT (collectstatic --link).
    static_follow_symlinks: bool = False


def _optional_positive_int(key: str, value: Any) -> int | None:
    if value is None:
        return None
    return _positive_int(key, value, expected="a positive integer (bytes) or None")


def _optional_positive_count(key: str, value: Any) -> int | None:
    if value is None:
        return None
    return _positive_int(key, value, expected="a positive integer or None")


def _optional_positive_seconds(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{key!r}] must be a positive number of seconds or None, not {value!r}."
        )
    return float(value)


def _strings(
    key: str, value: Any, *, kind: str, each: str, example: str, valid: Callable[[str], bool]
) -> tuple[str, ...]:
    """A list or tuple of strings, each of them ``valid``."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{key!r}] must be a list of {kind}, not {value!r}."
        )
    for item in value:
        if not isinstance(item, str) or not valid(item):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}[{key!r}] must contain {each} such as {example!r}, not {item!r}."
            )
    return tuple(value)


def _dotted_paths(key: str, value: Any) -> tuple[str, ...]:
    return _strings(
        key,
        value,
        kind="dotted paths",
        each="dotted paths",
        example="myapp.lifespan.http_client",
        valid=lambda path: "." in path,
    )


def _origins(key: str, value: Any) -> tuple[str, ...]:
    return _strings(
        key,
        value,
        kind="origins",
        each="origins with a scheme,",
        example="https://example.com",
        valid=lambda origin: "://" in origin,
    )


def _runserver_server(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in RUNSERVER_SERVERS:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{key!r}] must be one of "
            f"{', '.join(repr(name) for name in RUNSERVER_SERVERS)}, not {value!r}."
        )
    return value


def _broadcast(key: str, value: Any) -> BroadcastSettings:
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{key!r}] must be a dict such as "
            '{"BACKEND": "asgi_bridge.broadcast.RedisBackend", '
            f'"LOCATION": "redis://127.0.0.1:6379/0"}}, not {value!r}.'
        )
    known = {"BACKEND", "LOCATION", "OPTIONS", "PREFIX", "CHANNEL_LAYER"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown key {unknown[0]!r} in {SETTING_NAME}[{key!r}]. "
            f"Valid keys are: {', '.join(sorted(known))}."
        )

    def name(item: str) -> str:
        return f"{SETTING_NAME}[{key!r}][{item!r}]"

    backend = value.get("BACKEND", BroadcastSettings.backend)
    if not isinstance(backend, str) or "." not in backend:
        raise ImproperlyConfigured(
            f"{name('BACKEND')} must be the dotted path of a backend class such as "
            f"'asgi_bridge.broadcast.RedisBackend', not {backend!r}."
        )
    location = value.get("LOCATION")
    if location is not None and (not isinstance(location, str) or "://" not in location):
        raise ImproperlyConfigured(
            f"{name('LOCATION')} must be a URL such as 'redis://127.0.0.1:6379/0', "
            f"not {location!r}."
        )
    options = value.get("OPTIONS", {})
    if not isinstance(options, Mapping) or not all(isinstance(each, str) for each in options):
        raise ImproperlyConfigured(
            f"{name('OPTIONS')} must be a dict of keyword arguments, not {options!r}."
        )
    prefix = value.get("PREFIX", DEFAULT_BROADCAST_PREFIX)
    if not isinstance(prefix, str):
        raise ImproperlyConfigured(f"{name('PREFIX')} must be a string, not {prefix!r}.")
    channel_layer = value.get("CHANNEL_LAYER")
    if channel_layer is not None and not isinstance(channel_layer, str):
        raise ImproperlyConfigured(
            f"{name('CHANNEL_LAYER')} must be a CHANNEL_LAYERS alias such as 'default', "
            f"or None, not {channel_layer!r}."
        )
    return BroadcastSettings(backend, location, dict(options), prefix, channel_layer)


def _optional_seconds_count(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{key!r}] must be a whole number of seconds (0 or more) or None, "
            f"not {value!r}."
        )
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be True or False, not {value!r}.")
    return value


def _positive_int(key: str, value: Any, expected: str = "a positive integer") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be {expected}, not {value!r}.")
    return value


# Each key maps to the dataclass field it fills and the validator for its value.
_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "MAX_REQUEST_BODY_SIZE": ("max_request_body_size", _optional_positive_int),
    "BODY_RECEIVE_TIMEOUT": ("body_receive_timeout", _optional_positive_seconds),
    "BODY_MIN_RATE": ("body_min_rate", _optional_positive_count),
    "THREADS": ("threads", _positive_int),
    "THREAD_WAIT_TIMEOUT": ("thread_wait_timeout", _optional_positive_seconds),
    "THREAD_QUEUE_SIZE": ("thread_queue_size", _optional_positive_count),
    "METRICS_LOG_INTERVAL": ("metrics_log_interval", _optional_positive_seconds),
    "WEBSOCKET_ORIGIN_CHECK": ("websocket_origin_check", _bool),
    "WEBSOCKET_ALLOW_NO_ORIGIN": ("websocket_allow_no_origin", _bool),
    "WEBSOCKET_ALLOWED_ORIGINS": ("websocket_allowed_origins", _origins),
    "WEBSOCKET_SEND_QUEUE_SIZE": ("websocket_send_queue_size", _positive_int),
    "LIFESPAN": ("lifespan", _dotted_paths),
    "BACKGROUND_SHUTDOWN_TIMEOUT": ("background_shutdown_timeout", _optional_positive_seconds),
    "BACKGROUND_THREADS": ("background_threads", _positive_int),
    "BACKGROUND_QUEUE_SIZE": ("background_queue_size", _positive_int),
    "RUNSERVER_SERVER": ("runserver_server", _runserver_server),
    "FREEZE_GC": ("freeze_gc", _bool),
    "BROADCAST": ("broadcast", _broadcast),
    "STATIC_FILES": ("static_files", _bool),
    "MEDIA_FILES": ("media_files", _bool),
    "STATIC_MAX_AGE": ("static_max_age", _optional_seconds_count),
    "STATIC_MAX_RANGES": ("static_max_ranges", _positive_int),
    "STATIC_FOLLOW_SYMLINKS": ("static_follow_symlinks", _bool),
}


def parse_settings(raw: Any) -> BridgeSettings:
    """Validate a raw ``ASGI_BRIDGE`` value, raising ImproperlyConfigured naming the bad key."""
    if raw is None:
        return BridgeSettings()
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"The {SETTING_NAME} setting must be a dict, not {type(raw).__name__}."
        )
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown key {unknown[0]!r} in the {SETTING_NAME} setting. "
            f"Valid keys are: {', '.join(sorted(_KEYS))}."
        )
    values = {
        field: validate(key, raw[key]) for key, (field, validate) in _KEYS.items() if key in raw
    }
    return BridgeSettings(**values)


@lru_cache(maxsize=1)
def bridge_settings() -> BridgeSettings:
    """The validated settings; computed once, recomputed after ``override_settings``."""
    return parse_settings(getattr(settings, SETTING_NAME, None))


@receiver(setting_changed, dispatch_uid="asgi_bridge.conf.reset")
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        bridge_settings.cache_clear()
