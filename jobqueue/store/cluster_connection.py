"""ClusterConnection: a caller's own connection (store/connection.py) on a Redis Cluster.

A worker's fetcher and a watch hub send one command at a time on a connection of
their own, outside any pool. On a cluster the node depends on the command's keys:
this keeps one `OwnConnection` per node, sends each command to the master of its
keys' slot (from the cluster client's slot map), and, when the map is out of date,
follows the node's answer: MOVED (the slot moved for good: the map is read again,
and the command goes to the new owner) or ASK (the slot is migrating: that once,
ASKING then the command on the node named). Every command sent through it names
its keys where `command_keys` finds them, all on one slot, as jobqueue's keys are
(one hash tag each).

The cluster client's own routing would serve too, but it takes a pooled connection
per command, applies its socket timeout to the blocking pop, and adds its retry
and observability wrappers per command; this keeps `OwnConnection`'s costs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .client import read_slot_map
from .connection import OwnConnection

if TYPE_CHECKING:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import AbstractConnection
    from redis.typing import EncodableT

# How many times one command may be redirected (MOVED, ASK) before the error stands:
# a slot map settling after a failover takes one or two.
MAX_REDIRECTS = 3
# Routes remembered (first key -> node) before they are forgotten all at once.
MAX_ROUTES = 1024
# Failures after which the node a command went to may no longer serve its slot: it was
# killed or hangs (its replica about to take its slots), or the cluster is failing
# over. The slot map may then name a node that is gone: `SlotMap.failed`.
NODE_MAY_BE_GONE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ClusterDownError)


class SlotMap:
    """Which master serves a key's slot, from a cluster client's slot map, and the one
    rule for reading that map again. One per client (`slot_map`), shared by every
    caller that routes by it rather than through the client's own routing: own
    connections (`ClusterConnection`), the replica acks' pipelines and their count
    (`pipeline_on_slot_master`, `ReplicaAcks.wanted`). redis-py re-reads the map after
    its own commands fail, not after theirs: without this, a process whose commands
    all take these routes (a Producer that only enqueues, a worker's fetcher) would
    send them to a dead master until it came back.

    - After a failure that says the node may be gone (`NODE_MAY_BE_GONE`), the map is
      read again before the next route (`master_of`), not at once. The caller backs
      off first, and a replica takes over only after the cluster's node timeout, so a
      map read right after the failure would mostly name the dead master again. And an
      enqueue's replica count is decided from the map before its pipeline is routed:
      both then see the map read once.
    - After MOVED, at once (`read_again`): the caller resends its command to the new
      owner straight away, and its next route should agree."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._stale = False

    def failed(self, error: BaseException) -> bool:
        """Notes a command's failure: True if the node may be gone, the map then to be
        read again before the next route."""
        if isinstance(error, NODE_MAY_BE_GONE):
            self._stale = True
            return True
        return False

    async def master_of(self, key: EncodableT) -> ClusterNode:
        """The master of `key`'s slot; reads the map first if a failure made it stale
        (concurrent callers meanwhile route by the map as it was)."""
        cluster = self.cluster
        await cluster.initialize()  # once per client: the first map
        if self._stale:
            self._stale = False
            try:
                await read_slot_map(cluster)
            except BaseException:
                self._stale = True
                raise
        return cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))

    async def read_again(self) -> None:
        """Reads the map now (a MOVED)."""
        await read_slot_map(self.cluster)
        self._stale = False


_SLOT_MAPS: weakref.WeakKeyDictionary[RedisCluster, SlotMap] = weakref.WeakKeyDictionary()


def slot_map(cluster: RedisCluster) -> SlotMap:
    """The `SlotMap` of a cluster client (made on first use, gone with the client)."""
    found = _SLOT_MAPS.get(cluster)
    if found is None:
        found = _SLOT_MAPS[cluster] = SlotMap(cluster)
    return found


def command_keys(command: Sequence[EncodableT]) -> Sequence[EncodableT]:
    """The keys of a command as jobqueue sends them on its own connections: EVAL and
    EVALSHA's declared keys, XREAD's streams, else the first argument (BLMOVE's source,
    XREVRANGE's stream...)."""
    name = str(command[0]).upper() if not isinstance(command[0], bytes) else command[0].decode().upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3 : 3 + int(command[2])]
    if name == "XREAD":
        words = [str(word).upper() if isinstance(word, str) else word for word in command]
        start = words.index("STREAMS") + 1
        streams = command[start:]
        return streams[: len(streams) // 2]
    return command[1:2]


def _per_node_only() -> AbstractConnection:
    raise RuntimeError("a ClusterConnection connects to each node through its own OwnConnection")


class ClusterConnection(OwnConnection):
    def __init__(
        self,
        cluster: RedisCluster,
        make_connection: Callable[[tuple[str, int]], Callable[[], AbstractConnection]],
        timeout_s: float | None = None,
    ) -> None:
        """`cluster`: the client whose slot map routes the commands; `make_connection`:
        a connection factory for a node's (host, port) (client.connection_factory)."""
        super().__init__(_per_node_only, timeout_s)
        self._slot_map = slot_map(cluster)
        self._make_for = make_connection
        self._nodes: dict[tuple[str, int], OwnConnection] = {}
        self._routes: dict[EncodableT, OwnConnection] = {}  # first key -> its node's connection

    def _node(self, address: tuple[str, int]) -> OwnConnection:
        connection = self._nodes.get(address)
        if connection is None:
            connection = self._nodes[address] = OwnConnection(self._make_for(address), self.timeout_s)
        return connection

    async def execute(self, *command: EncodableT, blocks_s: float = 0) -> Any:
        if self._busy:
            raise RuntimeError("OwnConnection is for one caller at a time")
        self._busy = True
        try:
            return await self._routed(command, blocks_s)
        except Exception as failed:
            if self._slot_map.failed(failed):
                self._routes.clear()  # they may name the node that is gone
            raise
        finally:
            self._busy = False

    async def _routed(self, command: Sequence[EncodableT], blocks_s: float) -> Any:
        keys = command_keys(command)
        route = keys[0] if keys else command[0]
        connection = self._routes.get(route)
        if connection is None:
            connection = await self._route(route, keys)
        for _ in range(MAX_REDIRECTS):
            try:
                return await connection.execute(*command, blocks_s=blocks_s)
            except MovedError as moved:
                # The slot has a new owner (a failover, a migration done): read the map again.
                self._routes.clear()
                await self._slot_map.read_again()
                connection = self._node((moved.host, int(moved.port)))
            except AskError as ask:
                # The slot is migrating and this key has left: ask its new node, this once.
                asked = self._node((ask.host, int(ask.port)))
                await asked.execute("ASKING")
                return await asked.execute(*command, blocks_s=blocks_s)
        return await connection.execute(*command, blocks_s=blocks_s)

    async def _route(self, route: EncodableT, keys: Sequence[EncodableT]) -> OwnConnection:
        """The connection to the master of `keys`' slot, remembered for `route` (the
        first key: a fetcher or a hub sends the same few keys again and again)."""
        node = await self._slot_map.master_of(keys[0] if keys else b"")  # keyless: slot 0's
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        connection = self._routes[route] = self._node((node.host, int(node.port)))
        return connection

    async def aclose(self) -> None:
        await super().aclose()
        nodes, self._nodes = self._nodes, {}
        self._routes.clear()
        for connection in nodes.values():
            await connection.aclose()


async def pipeline_on_slot_master(
    cluster: RedisCluster, keys: Sequence[EncodableT], commands: Sequence[Sequence[EncodableT]]
) -> list[Any]:
    """Sends `commands` pipelined on one pooled connection to the master of `keys`'
    slot, and returns their replies, a command's error reply as its exception (the
    cluster client's pipelines send a keyless command such as WAIT anywhere, and two
    commands on different connections: WAIT answers for its own connection's writes).
    A MOVED to the first command reads the slot map again and sends them all to the
    new owner, at most MAX_REDIRECTS times; an ASK (the slot migrating) stands, as
    TRYAGAIN would: an outage the caller retries. A failure that says the node may be
    gone (a lost connection, CLUSTERDOWN) has the map read again before the next
    enqueue's route (`SlotMap`)."""
    slots = slot_map(cluster)
    for _ in range(MAX_REDIRECTS):
        node = await slots.master_of(keys[0])
        connection = node.acquire_connection()
        replies: list[Any] = []
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            for _command in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException as failed:
            # A connection left with unread replies must not serve another caller.
            await connection.disconnect()
            slots.failed(failed)
            raise
        finally:
            node.release(connection)
        if isinstance(replies[0], MovedError):
            await slots.read_again()
            continue
        if isinstance(replies[0], AskError):
            raise TryAgainError(f"the slot of {keys[0]!r} is migrating: {replies[0]}")
        slots.failed(replies[0])  # CLUSTERDOWN comes as a reply
        return replies
    raise replies[0]
