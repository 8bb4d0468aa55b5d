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
Redis Cluster, "auto" means 0 and N > 0 is refused (WAIT must go to the node that ran
the script, on its connection: not built yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

AUTO = "auto"


class ReplicaAcks:
    """How many replicas an enqueue waits for (`wanted`), and for how long."""

    def __init__(self, redis: Redis, setting: str, timeout_s: float, *, cluster: bool = False) -> None:
        if cluster and setting not in (AUTO, "0"):
            raise ValueError(
                f"replica_acks (JOBQUEUE_REPLICA_ACKS) {setting} is not supported on a Redis Cluster yet: "
                "use auto or 0"
            )
        self._redis = redis
        self._count = 0 if cluster else (None if setting == AUTO else int(setting))
        self.timeout_s = timeout_s

    @property
    def timeout_ms(self) -> int:
        return max(1, int(self.timeout_s * 1000))

    async def wanted(self) -> int:
        """The number of replicas to wait for (the first call of "auto" asks Redis)."""
        if self._count is None:
            info = await self._redis.info("replication")
            self._count = 1 if int(info.get("connected_slaves", 0)) > 0 else 0
        return self._count
