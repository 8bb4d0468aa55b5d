"""Store: one deployment's Redis as a process uses it.

It bundles the client, the key layout, the transitions (every write of job
state), the reads (of jobs, of queues' counts, of workers), the queue controls
and the workers' registered defaults and entries, configured by the
deployment's settings: the server, a worker and a Producer each open one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .. import outage
from ..settings import Settings
from .bulk import Bulk
from .client import connect, connection_factory
from .cluster_connection import ClusterConnection
from .connection import OwnConnection
from .controls import QueueControls
from .inspect import Inspector
from .keys import Keyspace
from .listing import Lister
from .registry import WorkerRegistry
from .replication import ReplicaAcks
from .stats import StatsReader
from .transitions import Transitions
from .worker_defaults import WorkerDefaults

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster


class Store:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        """`redis` must return bytes (decode_responses=False): payloads are binary."""
        self.redis = redis
        self.settings = settings
        self.keys = Keyspace(settings.prefix)
        self.transitions = Transitions(
            redis,
            self.keys,
            retention_ms=settings.retention_ms,
            idempotency_window_ms=settings.idempotency_window_ms,
            trace_contexts=settings.tracing,
            replica_acks=ReplicaAcks(
                redis, settings.replica_acks, settings.replica_ack_timeout_s, cluster=settings.redis_cluster
            ),
        )
        # What workers apply to jobs without their own options: they write it, reads show it.
        self.worker_defaults = WorkerDefaults(redis, self.keys)
        self.inspect = Inspector(redis, self.keys, self.worker_defaults)
        # The reads of queues (GetQueueStats, ListWorkers) and their controls (pause).
        self.stats = StatsReader(
            redis, self.keys, retention_ms=settings.retention_ms, max_depth_of=settings.max_depth_of
        )
        self.registry = WorkerRegistry(redis, self.keys)
        self.controls = QueueControls(redis, self.keys)
        # ListJobs' pages over the indexes, and the bulk calls that act on them.
        self.lister = Lister(redis, self.keys, retention_ms=settings.retention_ms)
        self.bulk = Bulk(self.lister, self.transitions)
        # Where every part using this store reports Redis outages (one per process and URL).
        self.outage = outage.of(settings.redis_url)

    @classmethod
    def open(cls, settings: Settings, *, max_connections: int | None = 256) -> Store:
        """A store on a new client for `settings.redis_url` (see client.connect for
        `max_connections`); `aclose()` closes it."""
        redis = connect(
            settings.redis_url,
            max_connections=max_connections,
            timeout_s=settings.redis_timeout_s,
            cluster=settings.redis_cluster,
        )
        return cls(redis, settings)

    def own_connection(self) -> OwnConnection:
        """A connection of the caller's own, outside the pool (for blocking pops); on a
        cluster, one per node, each command sent to its slot's master."""
        url, timeout_s = self.settings.redis_url, self.settings.redis_timeout_s
        if self.settings.redis_cluster:
            cluster = cast("RedisCluster", self.redis)
            return ClusterConnection(cluster, lambda address: connection_factory(url, address), timeout_s)
        return OwnConnection(connection_factory(url, client=self.redis), timeout_s)

    async def aclose(self) -> None:
        await self.redis.aclose()
