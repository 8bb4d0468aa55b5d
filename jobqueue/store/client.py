"""Redis clients as jobqueue uses them: replies as bytes, a timeout per command
(Settings.redis_timeout_s), dead peers found by TCP keepalive, lean connections and,
for workers, a lean pool.

Everything that opens a connection to Redis goes through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    DefaultParser,
    RedisSSLContext,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisClusterException, RedisClusterUnreachableError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from ..supervise import RedisBusy
from .redis_tls import check_tls_options
from .sentinel_url import SentinelURL, is_sentinel_url, parse_sentinel_url

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


def connect(
    url: str, *, max_connections: int | None = 256, timeout_s: float | None = None, cluster: bool = False
) -> Redis:
    """A client that returns bytes; a command whose reply takes over `timeout_s` fails
    with redis' TimeoutError (None: it waits as long as Redis takes).

    With `max_connections` the pool waits for a free connection when all are in
    use (redis-py's default pool raises instead, after 100). None: no bound and
    no wait, for a caller that bounds its own concurrency (a worker does): the
    waiting pool's condition and timeout cost a busy worker CPU, and the
    unbounded pool is a lean one (`_UnboundedPool`). (Not redis-py's own None,
    which is 100 and then MaxConnectionsError: a worker with concurrency 200
    failed half its jobs that way.)

    A new connection makes one round trip (CLIENT SETINFO) before its first
    command, not three (PING, HELLO 3, CLIENT SETINFO): a burst of handlers on a
    cold pool pays that once per connection (`python bench/connect_cost.py URL`).

    Maintenance notifications (a Redis Enterprise feature) are off: while they are
    on, redis-py 8 hands out pooled connections without checking that they
    survived a Redis restart, and the first commands after one fail.

    `cluster`: `url` names any node of a Redis Cluster (`connect_cluster`). A
    redis+sentinel:// URL names a master that sentinels find (`connect_sentinel`).
    """
    if is_sentinel_url(url):
        if cluster:
            raise ValueError("a redis+sentinel:// URL names no Redis Cluster: leave out --redis-cluster")
        return connect_sentinel(url, max_connections=max_connections, timeout_s=timeout_s)
    check_tls_options(url)
    if cluster:
        return connect_cluster(url, max_connections=max_connections, timeout_s=timeout_s)
    pool = (BlockingConnectionPool if max_connections is not None else _UnboundedPool).from_url(
        url, **_pool_options(url, max_connections, timeout_s)
    )
    lean = _LEAN_TIMED if timeout_s else _LEAN
    pool.connection_class = lean.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


def connect_cluster(url: str, *, max_connections: int | None = 256, timeout_s: float | None = None) -> Redis:
    """A Redis Cluster client (redis-py's) with `connect`'s options, for the cluster
    `url`'s node belongs to: it learns the slot map from that node, sends each command
    to the master of its key's slot, and follows MOVED and ASK itself.

    It pools connections per node, up to `max_connections` each (None: no bound);
    redis-py's cluster pool fails a command when a node's are all in use rather than
    wait. Typed as `Redis`: it has the same commands with the same signatures, and
    jobqueue uses no other (no SELECT, no KEYS, no command over several slots)."""
    options = _pool_options(url, None, timeout_s)
    options.pop("health_check_interval")  # redis-py's cluster nodes do not take it per node
    client = _Cluster.from_url(
        url,
        **options,
        max_connections=2**31 if max_connections is None else max_connections,
        require_full_coverage=True,
        # A MOVED patches the slot's owner in the map (a failover, a slot migrated), and
        # never closes the client: see `_Cluster`.
        reinitialize_steps=0,
    )
    # The lean connections (see `_LeanConnection`) for every node: the nodes made
    # later, as the slot map is read, take their class from the same options.
    kwargs = client.connection_kwargs
    lean = (_LEAN_TIMED if timeout_s else _LEAN).get(kwargs["connection_class"], kwargs["connection_class"])
    kwargs["connection_class"] = lean
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = lean
    return cast("Redis", client)


class ClusterUnreachable(RedisConnectionError):
    """No node of the cluster answered with a slot map that covers every slot: the
    cluster is down or still failing over, an outage like a Redis that refuses
    connections (supervise.REDIS_DOWN)."""


class _Cluster(RedisCluster):
    """redis-py's cluster client, whose failure to read the slot map is an outage
    (`read_slot_map`), and which reads the map before a command's first route.

    redis-py reads the map again in place when a command meets a node gone, a
    CLUSTERDOWN or a slot missing from its map, and closes a connection only once its
    command is answered (`set_nodes`); a MOVED only patches the map here
    (`connect_cluster`: reinitialize_steps=0). Left to itself, a read of the map that
    fails (no node answers, or their maps leave a slot uncovered or disagree: the
    cluster down or failing over) raises from the first read, which would end a
    process started while its cluster is down, and is logged at ERROR after a later
    one, the command then sent by the map as it was. Here every read of the map,
    redis-py's own and the `SlotMap` routes' (`cluster_connection.SlotMap.master_of`),
    fails as `ClusterUnreachable`, an outage like a single Redis that refuses
    connections; a read again that fails closes nothing, and the map is read again
    before the next command or pipeline attempt, not paced by redis-py's backoff. A
    caller's own `aclose()` closes everything.

    A command whose connection really fails after Redis applied it is still sent
    again by redis-py's retry, as on a single Redis (docs/design.md, "Redis Cluster")."""

    # Whether a slot map was read once (then the command table too): a map read again
    # that fails leaves the connections alone.
    _map_read = False

    def _initialize_due(self) -> bool:
        # redis-py paces its reads of the map after a failure; here a pipeline's next
        # attempt reads it first, as a command's does (`execute_command`), so a map that
        # cannot be read is an outage at once for both, not a retried CLUSTERDOWN.
        return self._initialize

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()  # the slot map, before the command's node is chosen
        return await super().execute_command(*args, **kwargs)

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        if self._initialize and self._map_read:
            return await self._read_map_again(additional_startup_nodes_info, last_failed_node_name)
        # The first read goes through `_refresh_topology`: its failure is ClusterUnreachable.
        await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        self._map_read = True
        return self

    async def _refresh_topology(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> None:
        # redis-py's own read of the map in place (after a CLUSTERDOWN) fails as ours does.
        await read_slot_map(self, additional_startup_nodes_info, last_failed_node_name)

    async def _read_map_again(
        self, additional_startup_nodes_info: list[tuple[str, int]] | None, last_failed_node_name: str | None
    ) -> RedisCluster:
        """redis-py's `initialize` once the map was read, its failure an outage that
        leaves the map to be read again (not logged at ERROR, not carried on without)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._initialize:
                await read_slot_map(self, additional_startup_nodes_info, last_failed_node_name)
                self._initialize = False
        return self


async def read_slot_map(
    cluster: RedisCluster,
    additional_startup_nodes_info: list[tuple[str, int]] | None = None,
    last_failed_node_name: str | None = None,
) -> None:
    """Reads the cluster's slot map again (after MOVED, or a node lost: the one that
    failed asked last); a failure to, as `ClusterUnreachable`."""
    try:
        # The base class' read: `_Cluster._refresh_topology` is this function.
        await RedisCluster._refresh_topology(cluster, additional_startup_nodes_info, last_failed_node_name)
    except RedisClusterException as exc:
        _raise_if_unreachable(exc)
        raise


def _raise_if_unreachable(exc: RedisClusterException) -> None:
    """redis-py raises RedisClusterUnreachableError when no node answers, and a bare
    RedisClusterException when the nodes' maps leave slots uncovered or disagree (a
    failover under way): a process started while its cluster is down would die of it,
    and a running one log it as a bug. It raises the bare class for a node without
    cluster mode too, which no retry will fix: that one stands."""
    if isinstance(exc, RedisClusterUnreachableError) or (
        type(exc) is RedisClusterException and "Cluster mode is not enabled" not in str(exc)
    ):
        raise ClusterUnreachable(str(exc)) from exc


def connect_sentinel(url: str, *, max_connections: int | None = 256, timeout_s: float | None = None) -> Redis:
    """A client of the master that the sentinels of a redis+sentinel:// `url` name
    (store/sentinel_url.py), with `connect`'s options: each new connection asks a
    sentinel where the master is, and the pool drops its idle connections when the
    answer changes. A connection still on a master demoted to a replica gets READONLY,
    which redis-py turns into a ConnectionError after dropping it (an outage: the
    caller retries, and the new connection finds the new master)."""
    parsed = parse_sentinel_url(url)
    check_tls_options(parsed.master_url)
    options = _sentinel_master_options(parsed, _pool_options(url, max_connections, timeout_s))
    lean = _LEAN_TIMED if timeout_s else _LEAN
    options["connection_class"] = lean[options["connection_class"]]
    pool_class = _BlockingSentinelPool if max_connections is not None else _UnboundedSentinelPool
    pool = pool_class(parsed.master_name, _sentinels(parsed, timeout_s), **options)
    return _SentinelClient.from_pool(pool)


def _sentinel_master_options(parsed: SentinelURL, options: dict[str, Any]) -> dict[str, Any]:
    """The pool's options and the URL's (credentials, db, TLS), with no address (the
    sentinels give it) and a sentinel-managed connection class."""
    options |= cast("dict[str, Any]", parse_url(parsed.master_url))
    tls = options.pop("connection_class", None) is SSLConnection
    options.pop("host", None)
    options.pop("port", None)
    options["connection_class"] = SentinelManagedSSLConnection if tls else SentinelManagedConnection
    return options


def _sentinels(parsed: SentinelURL, timeout_s: float | None) -> Sentinel:
    """The sentinels' client: TLS and timeouts as the master's, their own credentials."""
    tls = {
        name: value
        for name, value in parse_url(parsed.master_url).items()
        if name.startswith("ssl_") or (name == "connection_class" and value is SSLConnection)
    }
    options: dict[str, Any] = {
        "socket_timeout": timeout_s or 5,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "socket_keepalive_options": _KEEPALIVE,
        "protocol": 2,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "driver_info": _driver_info(),
        "username": parsed.sentinel_username,
        "password": parsed.sentinel_password,
    }
    if tls.pop("connection_class", None) is not None:
        options |= {"ssl": True, **tls}
    return Sentinel(list(parsed.sentinels), sentinel_kwargs=options)


def connection_factory(
    url: str, address: tuple[str, int] | None = None, *, client: Redis | None = None
) -> Callable[[], AbstractConnection]:
    """Makes connections like `connect`'s, outside any pool and without a timeout: for
    a caller that keeps one connection of its own and times its commands itself
    (store/connection.py: a blocking pop waits longer than any other command).
    `address`: (host, port) of another node of the same deployment (a cluster's),
    with the URL's credentials and TLS options. A redis+sentinel:// URL needs the
    `client` `connect` made for it: its sentinels find the master for each connection."""
    if is_sentinel_url(url):
        if client is None or not isinstance(client.connection_pool, SentinelConnectionPool):
            raise ValueError("connection_factory: a redis+sentinel:// URL needs its client (connect's)")
        managed = client.connection_pool
        kwargs = {**managed.connection_kwargs, "socket_timeout": None}
        tls = issubclass(managed.connection_class, SSLConnection)
        untimed = _LEAN[SentinelManagedSSLConnection if tls else SentinelManagedConnection]
        return lambda: untimed(**kwargs)
    check_tls_options(url)
    pool = ConnectionPool.from_url(url, **_pool_options(url, None))
    connection_class = _LEAN.get(pool.connection_class, pool.connection_class)
    kwargs = pool.connection_kwargs
    if address is not None:
        kwargs = {**kwargs, "host": address[0], "port": address[1]}
    return lambda: connection_class(**kwargs)


def _pool_options(url: str, max_connections: int | None, timeout_s: float | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decode_responses": False,
        # A vanished peer is found by TCP (_KEEPALIVE); a hung one (it accepts
        # but never answers) by this timeout.
        "socket_timeout": timeout_s,
        "health_check_interval": 30,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "driver_info": _driver_info(),
        # RESP2: redis-py 8's default RESP3 costs a HELLO round trip per connection.
        "protocol": 2,
    }
    if not url.startswith("unix:"):
        options |= {
            "socket_keepalive": True,
            "socket_keepalive_options": _KEEPALIVE,
            "socket_connect_timeout": 5,
        }
    if max_connections is not None:
        options |= {"max_connections": max_connections, "timeout": 10}
    return options


class _UnboundedPool(ConnectionPool):
    """A pool with no bound that hands out and takes back connections at a fraction
    of the cost: redis-py's own takes a lock and records metrics and events
    (OpenTelemetry, credential re-auth; neither is used here) around each command.
    Connections are still checked on the way out (connected, no unread data), as
    redis-py does. No lock is needed: nothing awaits between taking a connection
    and marking it in use, and one event loop runs one task at a time.

    It keeps its connections in the base class's lists (redis-py 8's own pool
    methods, `disconnect` among them, read them there). It serves a standalone
    Redis only: a Redis Cluster client pools connections per node by itself."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "max_connections": 2**31})

    async def get_connection(self, *_: Any, **__: Any) -> AbstractConnection:
        connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
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


# How often a sentinel pool in use asks the sentinels where the master is.
MASTER_CHECK_S = 1.0


class _FollowsTheMaster(SentinelConnectionPool):
    """A sentinel pool that asks the sentinels where the master is at most every
    MASTER_CHECK_S while it hands out connections, and drops a connection to any other
    Redis as it comes back: after a failover that left the old master running
    (SENTINEL FAILOVER, a partition), redis-py's own pool would keep writing to it
    until Sentinel demotes it, and those writes would be lost. The connections in use
    then (a blocking pop's) learn of it when they fail."""

    _checked_at = -math.inf

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        now = time.monotonic()
        if now - self._checked_at >= MASTER_CHECK_S:
            self._checked_at = now
            # Sentinels out of reach: the connections open stay as they are.
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                await self.get_master_address()  # type: ignore[no-untyped-call]
        connection: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        await super().release(connection)
        master = self.master_address
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if master is not None and connection.is_connected and address != master:
            await connection.disconnect()


class _BlockingSentinelPool(_FollowsTheMaster, BlockingConnectionPool):
    """`connect`'s waiting pool, its connections to the master the sentinels name."""


class _UnboundedSentinelPool(_FollowsTheMaster, _UnboundedPool):
    """`_UnboundedPool`, its connections to the master the sentinels name."""


class _SentinelClient(Redis):
    """Closes its sentinels' connections with its own."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await cast("SentinelConnectionPool", self.connection_pool).sentinel_manager.aclose()


@functools.cache
def _driver_info() -> DriverInfo:
    """What every connection names itself with (CLIENT SETINFO), made once: left to
    itself, redis-py 8 reads its own version from the package metadata for each new
    connection, which blocks the event loop each time a pool grows."""
    return DriverInfo()


class _LeanConnection(AbstractConnection):
    """A connection that costs less per command and per connect:
    - commands are packed by hiredis' C packer, as redis-py's sync client does: its
      asyncio client packs them in Python, a sizeable share of a busy worker's CPU
      and of a big enqueue batch's;
    - a new connection makes one round trip before its first command, not three
      (see `connect`).
    Its BUSY replies raise RedisBusy, an outage (`_Parser`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **(kwargs | {"parser_class": _Parser}))

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


class _Parser(DefaultParser):  # type: ignore[misc,valid-type]
    """redis-py's parser (hiredis'), with one more error class: BUSY (supervise.RedisBusy)."""

    EXCEPTION_CLASSES = {**DefaultParser.EXCEPTION_CLASSES, "BUSY": RedisBusy}


class _TimedWrites(AbstractConnection):
    """A connection with a socket timeout (`connect`'s `timeout_s`) whose writes are
    bounded by a timeout scope: redis-py bounds them with asyncio.wait_for, which
    makes a task per write and, on Python 3.11, can swallow the caller's cancellation
    (a request's, a loop's). Reads are redis-py's own (a timeout scope already)."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        timeout_s = self.socket_timeout
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        try:
            async with asyncio.timeout(timeout_s):
                self._writer.writelines([command] if isinstance(command, bytes) else command)  # type: ignore[union-attr]
                await self._writer.drain()  # type: ignore[union-attr]
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError(f"Timeout writing to {self._host_error()}") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to {self._host_error()}: {exc}") from exc
        except BaseException:
            await self.disconnect(nowait=True)  # part of the command may have gone out
            raise


class _LeanTCPConnection(_LeanConnection, Connection):
    pass


class _LeanUnixConnection(_LeanConnection, UnixDomainSocketConnection):
    pass


class _LeanSSLConnection(_LeanConnection, SSLConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # redis-py builds an SSLContext per connection and loads the system's CAs into
        # each: tens of ms of CPU on the event loop per new connection (`python
        # bench/tls_cost.py`). Connections with the same TLS options share one.
        self.ssl_context = _shared_ssl_context(self.ssl_context)


_SSL_CONTEXTS: dict[tuple[object, ...], RedisSSLContext] = {}


def _shared_ssl_context(context: RedisSSLContext) -> RedisSSLContext:
    """The first context made with the same options as `context` (its files are read
    once, when the first connection connects: a new CA file takes a restart)."""
    options = tuple(
        tuple(value) if isinstance(value, list) else value
        for name in RedisSSLContext.__slots__
        if name != "context"
        for value in (getattr(context, name),)
    )
    return _SSL_CONTEXTS.setdefault(options, context)


class _LeanSentinelConnection(_LeanConnection, SentinelManagedConnection):
    pass


class _LeanSentinelSSLConnection(_LeanConnection, SentinelManagedSSLConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context = _shared_ssl_context(self.ssl_context)


class _LeanTimedTCPConnection(_TimedWrites, _LeanTCPConnection):
    pass


class _LeanTimedUnixConnection(_TimedWrites, _LeanUnixConnection):
    pass


class _LeanTimedSSLConnection(_TimedWrites, _LeanSSLConnection):
    pass


class _LeanTimedSentinelConnection(_TimedWrites, _LeanSentinelConnection):
    pass


class _LeanTimedSentinelSSLConnection(_TimedWrites, _LeanSentinelSSLConnection):
    pass


_LEAN: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _LeanTCPConnection,
    UnixDomainSocketConnection: _LeanUnixConnection,
    SSLConnection: _LeanSSLConnection,
    SentinelManagedConnection: _LeanSentinelConnection,
    SentinelManagedSSLConnection: _LeanSentinelSSLConnection,
}
# The same with the socket timeout's writes bounded by a timeout scope; only where
# there is a timeout: the override costs a coroutine per command.
_LEAN_TIMED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _LeanTimedTCPConnection,
    UnixDomainSocketConnection: _LeanTimedUnixConnection,
    SSLConnection: _LeanTimedSSLConnection,
    SentinelManagedConnection: _LeanTimedSentinelConnection,
    SentinelManagedSSLConnection: _LeanTimedSentinelSSLConnection,
}
