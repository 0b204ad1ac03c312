"""Broadcast groups across processes and hosts, on Redis pub/sub.

Each broadcast is one ``PUBLISH`` to the group's channel, whatever the group's size. Each process
holds one subscribing connection, subscribed to the groups that have members in that process,
and fans each message out to them itself; the process that broadcasts delivers to its own members
directly and skips its own message when Redis echoes it back (each message carries the id of the
process that sent it).

Faults: when Redis cannot be reached, ``broadcast`` and ``broadcast_sync`` raise
``BroadcastError`` once this process's own members have the message; other processes lose it.
The subscribing connection reconnects with a backoff capped at ``MAX_BACKOFF`` seconds and
resubscribes its groups; what was broadcast while it was away is lost. Both the outage and its
end are logged at WARNING on the ``asgi_bridge`` logger, once each per outage, with the count of
broadcasts that failed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from ..conf import SETTING_NAME, BroadcastSettings
from ..exceptions import BroadcastError
from .memory import Member, MemoryBackend, encode, give_writers_a_turn

try:
    import redis
    import redis.asyncio
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ImportError as missing:  # RedisBackend() says how to install it.
    redis = None  # type: ignore[assignment]
    redis_import_error: ImportError | None = missing
else:
    redis_import_error = None

logger = logging.getLogger("asgi_bridge")

# The wait before the first reconnection, doubled after each failure up to MAX_BACKOFF.
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 2.0
# Seconds without a word from Redis after which the subscribing connection sends a PING; when
# that PING goes unanswered for as long again, it is taken for dead (a host gone without closing
# it, or frozen).
HEALTH_CHECK_INTERVAL = 15.0
# How long graceful shutdown waits for Redis to confirm the unsubscription.
CLOSE_TIMEOUT = 1.0
# The publishing clients' defaults: fail fast, so that a view waits seconds at most when Redis
# is down; one retry, for a pooled connection that a restart of Redis closed.
PUBLISH_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
# What the payload of a message starts with: the origin process's id, then what kind of frame.
ORIGIN_SIZE = 16
TEXT = b"t"
BINARY = b"b"

Errors = (OSError, RedisError) if redis is not None else (OSError,)


def redacted(location: str) -> str:
    """``location`` without its password, for logs and errors."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBackend:
    """Broadcast groups shared by every process connected to one Redis server."""

    def __init__(
        self,
        location: str,
        *,
        options: dict[str, Any] | None = None,
        prefix: str = "asgi_bridge:",
    ) -> None:
        if redis is None:
            raise ImproperlyConfigured(
                "asgi_bridge.broadcast.RedisBackend needs redis-py: "
                "pip install 'asgi-bridge[redis]'"
            ) from redis_import_error
        self.location = location
        self.options = dict(options or {})
        self.prefix = prefix.encode()
        # Tells this process's messages from the others' when Redis echoes them back.
        self.origin = secrets.token_hex(ORIGIN_SIZE // 2).encode()
        self.local = MemoryBackend()
        self._subscriber: Subscriber | None = None
        self._async_publisher: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self._sync_publisher: redis.Redis | None = None
        self._lock = threading.Lock()
        # Broadcasts that could not be published since Redis was last reachable, if it is not.
        self._failed_since: tuple[float, int] | None = None

    @classmethod
    def from_settings(cls, settings: BroadcastSettings) -> RedisBackend:
        if settings.location is None:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['BROADCAST']['LOCATION'] must be set for RedisBackend, such as "
                "'redis://127.0.0.1:6379/0'."
            )
        return cls(settings.location, options=dict(settings.options), prefix=settings.prefix)

    def __repr__(self) -> str:
        return f"<RedisBackend {redacted(self.location)}>"

    def channel(self, group: str) -> bytes:
        return self.prefix + group.encode()

    # Members.

    async def join(self, group: str, member: Member) -> None:
        """Put ``member`` in ``group``; returns once this process is subscribed to the group (at
        once while Redis is unreachable: the group is subscribed to when it is back)."""
        self.local.add(group, member)
        await self.subscriber().subscribe(self.channel(group))

    def leave(self, group: str, member: Member) -> bool:
        emptied = self.local.leave(group, member)
        if emptied and self._subscriber is not None:
            self._subscriber.unsubscribe(self.channel(group))
        return emptied

    def leave_all(self, member: Member) -> None:
        for group in list(member.groups):
            self.leave(group, member)

    def member_count(self, group: str) -> int:
        return self.local.member_count(group)

    def group_count(self) -> int:
        return self.local.group_count()

    def subscriber(self) -> Subscriber:
        """This process's subscribing connection, on the running event loop."""
        loop = asyncio.get_running_loop()
        subscriber = self._subscriber
        if subscriber is None or subscriber.loop is not loop:
            # A first member, or one on a new event loop (each test has its own): the old
            # loop's connection went with it.
            subscriber = self._subscriber = Subscriber(self, loop)
        return subscriber

    def subscribed_groups(self) -> set[str]:
        """The groups whose subscription Redis has confirmed, on this process's connection."""
        if self._subscriber is None:
            return set()
        prefix = len(self.prefix)
        return {channel[prefix:].decode() for channel in self._subscriber.confirmed}

    # Broadcasting.

    def payload(self, frame: str | bytes) -> bytes:
        if isinstance(frame, str):
            return self.origin + TEXT + frame.encode()
        return self.origin + BINARY + frame

    async def broadcast(self, group: str, message: Any, *, exclude: Any = None) -> int:
        """Deliver to this process's members, then publish for the others: how many members of
        this process took it. Raises BroadcastError if Redis cannot be reached."""
        frame = encode(message)
        delivered = self.local.deliver(group, frame, exclude)
        try:
            await self.async_publisher().publish(self.channel(group), self.payload(frame))
        except Errors as error:
            raise self.failed(group, error) from error
        self.published()
        return delivered

    def broadcast_sync(self, group: str, message: Any, *, exclude: Any = None) -> None:
        """``broadcast`` from sync code, on any thread (a view, a signal receiver, a command)."""
        frame = encode(message)
        self.local.deliver_threadsafe(group, frame, exclude)
        try:
            self.sync_publisher().publish(self.channel(group), self.payload(frame))
        except Errors as error:
            raise self.failed(group, error) from error
        self.published()

    def client_options(self, retry: Any) -> dict[str, Any]:
        return {**PUBLISH_OPTIONS, "retry": retry, **self.options}

    def async_publisher(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._async_publisher is None or self._async_publisher[0] is not loop:
            client = redis.asyncio.Redis.from_url(
                self.location, **self.client_options(AsyncRetry(NoBackoff(), 1))
            )
            self._async_publisher = (loop, client)
        return self._async_publisher[1]

    def sync_publisher(self) -> redis.Redis:
        if self._sync_publisher is None:
            with self._lock:
                if self._sync_publisher is None:
                    self._sync_publisher = redis.Redis.from_url(
                        self.location, **self.client_options(Retry(NoBackoff(), 1))
                    )
        return self._sync_publisher

    def failed(self, group: str, error: BaseException) -> BroadcastError:
        """Count a broadcast that Redis did not take; the first of an outage is logged."""
        with self._lock:
            if self._failed_since is None:
                self._failed_since = (time.monotonic(), 1)
                logger.warning(
                    "Cannot broadcast through Redis at %s (%s): other processes miss this "
                    "process's broadcasts until it is back.",
                    redacted(self.location),
                    error,
                )
            else:
                since, count = self._failed_since
                self._failed_since = (since, count + 1)
        return BroadcastError(group, redacted(self.location), error)

    def published(self) -> None:
        if self._failed_since is None:
            return
        with self._lock:
            if self._failed_since is None:
                return
            since, count = self._failed_since
            self._failed_since = None
        logger.warning(
            "Broadcasting through Redis at %s again after %.1f s; %d broadcasts failed meanwhile.",
            redacted(self.location),
            time.monotonic() - since,
            count,
        )

    async def close(self) -> None:
        """At shutdown: unsubscribe, and close the connections to Redis."""
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()
        publisher, self._async_publisher = self._async_publisher, None
        if publisher is not None:
            with contextlib.suppress(*Errors):
                await publisher[1].aclose()
        sync_publisher, self._sync_publisher = self._sync_publisher, None
        if sync_publisher is not None:
            sync_publisher.close()


class Subscriber:
    """A process's one subscribing connection to Redis: subscribed to the channels of the groups
    that have members here, it hands each message to them; it reconnects when it is lost.

    Subscriptions change as members come and go: ``wanted`` is what should be subscribed, and
    the connection's task sends SUBSCRIBE and UNSUBSCRIBE to make it so, in order. Redis answers
    each SUBSCRIBE of a channel in order, so each answer settles the oldest wait for that channel.
    """

    def __init__(self, backend: RedisBackend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.wanted: set[bytes] = set()
        # Channels subscribed to on the current connection (sent), and those Redis confirmed.
        self.requested: set[bytes] = set()
        self.confirmed: set[bytes] = set()
        # Joins waiting for a SUBSCRIBE not sent yet, and for each one sent, in order.
        self.waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self.in_flight: dict[bytes, deque[list[asyncio.Future[None]]]] = {}
        self.connected = False
        self.changed = asyncio.Event()
        self.last_heard = loop.time()
        self.lost_since: float | None = None
        self.closing = False
        self.task = loop.create_task(self.run(), name="asgi_bridge Redis broadcast subscriber")

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe to ``channel``; returns once Redis confirmed it, or at once while Redis
        cannot be reached (the channel is subscribed to on reconnection)."""
        self.wanted.add(channel)
        if not self.connected and self.lost_since is not None:
            self.changed.set()
            return  # Redis is away: subscribed on reconnection.
        if channel in self.requested:
            pending = self.in_flight.get(channel)
            if not pending:
                return  # Subscribed already.
            waiters = pending[-1]
        else:
            waiters = self.waiting.setdefault(channel, [])
            self.changed.set()
        done = self.loop.create_future()
        waiters.append(done)
        await done

    def unsubscribe(self, channel: bytes) -> None:
        """Unsubscribe from ``channel`` soon, unless it is wanted again before then."""
        self.wanted.discard(channel)
        self.changed.set()

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF
        while not self.closing:
            connection: AbstractConnection | None = None
            try:
                connection = await self.connect()
                backoff = INITIAL_BACKOFF
                await self.serve(connection)
            except Errors as error:
                self.lost(error)
            except Exception:
                # A defect, not a fault of Redis: logged in full, then served on as after one.
                logger.exception("The Redis broadcast subscriber failed; reconnecting.")
            finally:
                self.disconnected()
                if connection is not None:
                    with contextlib.suppress(*Errors):
                        await connection.disconnect()
            if not self.closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def connect(self) -> AbstractConnection:
        pool = redis.asyncio.ConnectionPool.from_url(
            self.backend.location,
            **{
                **PUBLISH_OPTIONS,
                **self.backend.options,
                # Waits for messages for as long as it takes; health checks find a dead peer.
                "socket_timeout": None,
                "retry": AsyncRetry(NoBackoff(), 0),
                # Messages as plain replies (RESP2), not RESP3 pushes that redis-py logs each of.
                "protocol": 2,
            },
        )
        connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            # Bounded: a frozen host accepts the TCP connection but never answers the handshake.
            await asyncio.wait_for(connection.connect(), HEALTH_CHECK_INTERVAL)  # type: ignore[no-untyped-call]
        except asyncio.TimeoutError:
            with contextlib.suppress(*Errors):
                await connection.disconnect()
            raise TimeoutError(f"Redis did not answer for {HEALTH_CHECK_INTERVAL:.1f} s") from None
        self.connected = True
        self.last_heard = self.loop.time()
        if self.lost_since is not None:
            logger.warning(
                "Reconnected to Redis at %s after %.1f s and resubscribed %d broadcast groups; "
                "what was broadcast to them meanwhile did not reach this process.",
                redacted(self.backend.location),
                time.monotonic() - self.lost_since,
                len(self.wanted),
            )
            self.lost_since = None
        return connection

    async def serve(self, connection: AbstractConnection) -> None:
        """Send what changes the subscriptions, and PINGs when Redis has been quiet, while the
        reader hands on what arrives; returns (or raises) when the connection is lost."""
        reader = self.loop.create_task(self.read(connection))
        health = HealthCheck(self)
        try:
            while True:
                await self.update(connection)
                if self.closing:
                    if self.confirmed:
                        await reader  # Until Redis confirms the unsubscription.
                    return
                changed = self.loop.create_task(self.changed.wait())
                done, _ = await asyncio.wait(
                    {reader, changed},
                    timeout=max(health.next_check() - self.loop.time(), 0.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
                if reader in done:
                    reader.result()
                    return
                if health.ping_due():
                    await connection.send_command("PING")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *Errors):
                await reader

    async def update(self, connection: AbstractConnection) -> None:
        """Make the connection's subscriptions what is wanted."""
        self.changed.clear()
        wanted = set() if self.closing else self.wanted
        adding = [channel for channel in wanted if channel not in self.requested]
        removing = [channel for channel in self.requested if channel not in wanted]
        if adding:
            self.requested.update(adding)
            for channel in adding:
                waiters = self.waiting.pop(channel, [])
                self.in_flight.setdefault(channel, deque()).append(waiters)
            await connection.send_command("SUBSCRIBE", *adding)
        if removing:
            self.requested.difference_update(removing)
            await connection.send_command("UNSUBSCRIBE", *removing)

    async def read(self, connection: AbstractConnection) -> None:
        """Hand each message to this process's members of its group; keep track of what Redis
        confirms."""
        prefix = len(self.backend.prefix)
        origin = self.backend.origin
        local = self.backend.local
        while True:
            response = await connection.read_response(push_request=True)
            self.last_heard = self.loop.time()
            if not isinstance(response, list):
                continue  # PONG, outside of subscribed mode.
            kind = response[0]
            if kind == b"message":
                payload: bytes = response[2]
                if payload[:ORIGIN_SIZE] == origin:
                    continue  # This process's own: its members had it when it was sent.
                group = response[1][prefix:].decode()
                data = payload[ORIGIN_SIZE + 1 :]
                frame = data.decode() if payload[ORIGIN_SIZE : ORIGIN_SIZE + 1] == TEXT else data
                local.deliver(group, frame)
                await give_writers_a_turn()
            elif kind == b"subscribe":
                channel = response[1]
                self.confirmed.add(channel)
                pending = self.in_flight.get(channel)
                if pending:
                    self.settle(pending.popleft())
                    if not pending:
                        del self.in_flight[channel]
            elif kind == b"unsubscribe":
                if response[1] is not None:
                    self.confirmed.discard(response[1])
                if self.closing and not self.confirmed:
                    return

    def settle(self, waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def lost(self, error: BaseException) -> None:
        if self.closing:
            return
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            logger.warning(
                "Lost the broadcast connection to Redis at %s (%s): what other processes "
                "broadcast to this process's %d groups does not reach it until it is back. "
                "Reconnecting, every %.1f s at most.",
                redacted(self.backend.location),
                str(error) or type(error).__name__,
                len(self.wanted),
                MAX_BACKOFF,
            )

    def disconnected(self) -> None:
        """The connection is gone: nothing is subscribed, and nobody waits for it."""
        self.connected = False
        self.requested.clear()
        self.confirmed.clear()
        for waiters in self.waiting.values():
            self.settle(waiters)
        for pending in self.in_flight.values():
            for waiters in pending:
                self.settle(waiters)
        self.waiting.clear()
        self.in_flight.clear()

    async def close(self) -> None:
        """Unsubscribe from everything (waiting at most CLOSE_TIMEOUT for Redis to confirm) and
        close the connection."""
        self.closing = True
        self.changed.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, *Errors):
            pass
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *Errors):
                await self.task


class HealthCheck:
    """When the subscribing connection sends a PING, and when it gives up on the answer.

    Redis is quiet on a connection that only listens while nobody broadcasts. After
    HEALTH_CHECK_INTERVAL without a word from it, a PING goes out; any reply, or any message,
    heard after that PING proves the connection alive. Only a PING that stayed unanswered for
    HEALTH_CHECK_INTERVAL makes it dead, so an idle but healthy connection is never dropped,
    however late the timer that checks it wakes.
    """

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.ping_sent: float | None = None

    def unanswered_ping(self) -> float | None:
        """When the PING that nothing was heard after was sent, if there is one."""
        if self.ping_sent is not None and self.subscriber.last_heard < self.ping_sent:
            return self.ping_sent
        return None

    def next_check(self) -> float:
        """The loop time at which ping_due() should next be asked."""
        since = self.unanswered_ping()
        return (self.subscriber.last_heard if since is None else since) + HEALTH_CHECK_INTERVAL

    def ping_due(self) -> bool:
        """Whether to send a PING now; raises TimeoutError when the last one went unanswered
        for HEALTH_CHECK_INTERVAL."""
        now = self.subscriber.loop.time()
        since = self.unanswered_ping()
        if since is not None:
            if now - since >= HEALTH_CHECK_INTERVAL:
                raise TimeoutError(f"Redis did not answer a PING for {now - since:.1f} s")
            return False
        if now - self.subscriber.last_heard >= HEALTH_CHECK_INTERVAL:
            self.ping_sent = now
            return True
        return False
