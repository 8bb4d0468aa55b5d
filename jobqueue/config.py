"""Settings shared by the server and the workers, read from the environment.

Servers and workers of one deployment must agree on these (same Redis, same
key prefix); options of one worker (concurrency, lease...) are `Worker`
arguments instead.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
from collections.abc import Mapping
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.driver_info import DriverInfo
from redis.exceptions import DataError
from redis.maint_notifications import MaintNotificationsConfig

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def redis_url_from_env(env: Mapping[str, str]) -> str:
    """JOBQUEUE_REDIS_URL, then REDIS_URL, then REDIS_ADDR (host:port, as go-job-queue used)."""
    url = env.get("JOBQUEUE_REDIS_URL") or env.get("REDIS_URL")
    if url:
        return url
    addr = env.get("REDIS_ADDR")
    if addr:
        return f"redis://{addr}/0"
    return DEFAULT_REDIS_URL


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    # Prefix of every Redis key, so that several deployments can share one Redis.
    prefix: str = "jq"
    # How long COMPLETED, FAILED and CANCELLED jobs stay readable.
    retention_s: float = 24 * 3600.0
    max_payload_bytes: int = 1 << 20
    host: str = "0.0.0.0"
    port: int = 8080
    # Origins allowed to call the API from a browser; "*" allows any. Empty: CORS off.
    cors_origins: tuple[str, ...] = ()
    # How often reapers look for expired leases and for popped-but-unclaimed ids.
    reaper_interval_s: float = 1.0
    # How long an id may sit popped but unclaimed before the reaper re-queues it.
    claim_timeout_s: float = 5.0
    # After Redis restarts, how long reapers wait before taking jobs back by
    # liveness or lease: the outage stopped every heartbeat, and live workers
    # need a moment to reconnect and check in.
    restart_grace_s: float = 10.0
    # How long an idempotency key keeps returning the job first enqueued with it.
    idempotency_window_s: float = 24 * 3600.0
    # Slow clients (server/slow.py, main.py): an idle connection is closed after
    # idle_timeout_s (under Hypercorn a request's head must come within it too); a
    # request body may pause body_idle_timeout_s and take body_timeout_s in all; a
    # response waits at most send_timeout_s on a client that reads none of it.
    idle_timeout_s: float = 75.0
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 120.0
    send_timeout_s: float = 60.0

    @property
    def retention_ms(self) -> int:
        return int(self.retention_s * 1000)

    @property
    def idempotency_window_ms(self) -> int:
        return int(self.idempotency_window_s * 1000)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {"redis_url": redis_url_from_env(env)}
        for field in dataclasses.fields(cls):
            raw = env.get(f"JOBQUEUE_{field.name.upper()}")
            if raw is None or field.name == "redis_url":
                continue
            values[field.name] = _parse(field.name, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(name: str, raw: str, kind: object) -> Any:
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
    except ValueError:
        raise ValueError(f"JOBQUEUE_{name.upper()}={raw!r} is not a number") from None
    if name == "cors_origins":
        return tuple(origin.strip() for origin in raw.split(",") if origin.strip())
    return raw


# Idle connections are probed after 10 s, every 5 s, 3 times; unacknowledged
# writes give up after 30 s (Linux). A vanished Redis is noticed in about 30 s.
_KEEPALIVE: dict[int, int] = {
    getattr(socket, name): value
    for name, value in (
        ("TCP_KEEPIDLE", 10),
        ("TCP_KEEPINTVL", 5),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 30_000),
    )
    if hasattr(socket, name)
}


def connect(url: str, *, max_connections: int | None = 256) -> Redis:
    """A client that returns bytes.

    With `max_connections` the pool waits for a free connection when all are in
    use (redis-py's default pool raises instead, after 100). None: no bound and
    no wait, for a caller that bounds its own concurrency (a worker does): the
    waiting pool's condition and timeout cost ~5% of a busy worker's CPU, and
    the unbounded pool is a lean one (`_UnboundedPool`). (Not redis-py's own
    None, which is 100 and then MaxConnectionsError: a worker with concurrency
    200 failed half its jobs that way.)

    A new connection makes one round trip (CLIENT SETINFO) before its first
    command, not three (PING, HELLO 3, CLIENT SETINFO): ~40% less CPU, e.g. 386
    against 530 µs, and a cold pool serves 10 concurrent commands in 3.2 ms, not
    5.6 (`python bench/connect_cost.py URL`). A burst of handlers on a cold pool
    pays it once per connection.

    Maintenance notifications (a Redis Enterprise feature) are off: while they are
    on, redis-py 8 hands out pooled connections without checking that they
    survived a Redis restart, and the first commands after one fail.
    """
    tcp_only: dict[str, Any] = {}
    if not url.startswith("unix:"):
        tcp_only = {
            "socket_keepalive": True,
            "socket_keepalive_options": _KEEPALIVE,
            "socket_connect_timeout": 5,
        }
    bound: dict[str, Any] = {}
    if max_connections is not None:
        bound = {"max_connections": max_connections, "timeout": 10}
    pool = (BlockingConnectionPool if max_connections is not None else _UnboundedPool).from_url(
        url,
        decode_responses=False,
        # No per-command timeout: redis-py implements it with asyncio.wait_for around
        # every write, which costs ~10% of a worker's CPU and, on Python 3.11, can
        # swallow a task's cancellation. A dead peer is detected by TCP instead
        # (_KEEPALIVE); a slow Redis is waited for, not treated as down.
        socket_timeout=None,
        health_check_interval=30,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        driver_info=_driver_info(),
        # RESP2: redis-py 8's default RESP3 costs a HELLO round trip per connection.
        protocol=2,
        **tcp_only,
        **bound,
    )
    pool.connection_class = _LEAN.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


class _UnboundedPool(ConnectionPool):
    """A pool with no bound that hands out and takes back connections at half the
    cost: redis-py's own takes a lock and records metrics and events (OpenTelemetry,
    credential re-auth; neither is used here) around each command, ~8 µs of a 35 µs
    pooled command (10 concurrent RPUSH loops, CPU per command: 34.9 -> 26.5 µs).
    Connections are still checked on the way out (connected, no unread data), as
    redis-py does. No lock is needed: nothing awaits between taking a connection
    and marking it in use, and one event loop runs one task at a time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "max_connections": 2**31})

    async def get_connection(self, *_: Any, **__: Any) -> AbstractConnection:
        try:
            connection = self._available_connections.pop()
        except IndexError:
            connection = self.make_connection()  # type: ignore[no-untyped-call]
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._available_connections.append(connection)


@functools.cache
def _driver_info() -> DriverInfo:
    """What every connection names itself with (CLIENT SETINFO), made once: left to
    itself, redis-py 8 reads its own version from the package metadata for each new
    connection, ~2 ms of blocked event loop each time a pool grows."""
    return DriverInfo()


class _LeanConnection(AbstractConnection):
    """A connection that costs less per command and per connect:
    - commands are packed by hiredis' C packer, as redis-py's sync client does: its
      asyncio client packs them in Python, ~10% of a busy worker's CPU and a third
      of a big enqueue batch's;
    - a new connection makes one round trip before its first command, not three
      (see `connect`)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # A command name with a space ("CLIENT SETINFO") is sent as separate words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"cannot send {args!r} to Redis: {exc}") from exc

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        # redis-py would PING a connection it has just opened (a health check is due
        # on its first command); the handshake's own reply proves it alive.
        await super().on_connect_check_health(check_health=False)


class _LeanTCPConnection(_LeanConnection, Connection):
    pass


class _LeanUnixConnection(_LeanConnection, UnixDomainSocketConnection):
    pass


_LEAN: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _LeanTCPConnection,
    UnixDomainSocketConnection: _LeanUnixConnection,
}
