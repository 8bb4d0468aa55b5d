"""Acknowledged enqueues and replicas: an enqueue answers only once replicas have it.

Redis replicates asynchronously: a write the master acknowledged and then lost in a
failover (its replica promoted before the write reached it) is gone. With
`replica_acks` N > 0, each enqueue script is followed, on the same connection, by
`WAIT N timeout`: Redis answers once N replicas have every write of that connection
so far, or at the timeout with how many do. Fewer than N: the enqueue fails with
NotReplicated (`unavailable`): the job is on the master and may survive or not, so
the client retries with the same idempotency key.

"auto" (the default) is 1 if the master has a replica when the process first
enqueues, else 0 (no wait: a single Redis pays nothing): one replica, not all, so
that one slow replica does not hold every enqueue. Read once per process: a
deployment that gains or loses its replicas takes a restart to change it.

Only enqueues wait: a completion, a claim or a retry lost in a failover means a job
runs again, which at-least-once delivery allows; a lost enqueue is a lost job. On a
Redis Cluster the WAIT goes to the master that ran the script, on the script's
connection (cluster_connection.pipeline_on_slot_master), and "auto" is decided per
master, the first time an enqueue goes to it: 1 if that master has a replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .cluster_connection import slot_map

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

AUTO = "auto"


class ReplicaAcks:
    """How many replicas an enqueue waits for (`wanted`), and for how long."""

    def __init__(self, redis: Redis, setting: str, timeout_s: float, *, cluster: bool = False) -> None:
        self._redis = redis
        self._cluster = cluster
        self._count = None if setting == AUTO else int(setting)
        self._per_master: dict[str, int] = {}  # "auto" on a cluster: node name -> 0 or 1
        self.timeout_s = timeout_s

    @property
    def timeout_ms(self) -> int:
        return max(1, int(self.timeout_s * 1000))

    async def wanted(self, key: str) -> int:
        """The number of replicas an enqueue whose first key is `key` waits for (the
        first call of "auto" asks its master)."""
        if self._count is not None:
            return self._count
        if not self._cluster:
            self._count = await self._replicas_of(self._redis)
            return self._count
        cluster = cast("RedisCluster", self._redis)
        # Routed as the enqueue's pipeline is (one map, read again after a lost master).
        master = await slot_map(cluster).master_of(key)
        wanted = self._per_master.get(master.name)
        if wanted is None:
            info = await cluster.info("replication", target_nodes=master)
            wanted = self._per_master[master.name] = 1 if int(info.get("connected_slaves", 0)) > 0 else 0
        return wanted

    @staticmethod
    async def _replicas_of(redis: Redis) -> int:
        info = await redis.info("replication")
        return 1 if int(info.get("connected_slaves", 0)) > 0 else 0
