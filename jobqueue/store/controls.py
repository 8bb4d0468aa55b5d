"""Queue controls: pausing and resuming a type (PauseQueue, ResumeQueue).

Not job transitions: they change no job, only whether claims take the type's
jobs. While `paused:T` exists, claim and round put a claimed id of the type back
and answer `paused`, and a round takes nothing (the Lua side); enqueue goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import check_job_type

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace
    from .partitions import Partitions


PAUSED = "paused"  # the field of `stats` claims read


class QueueControls:
    def __init__(self, redis: Redis, keys: Keyspace, partitions: Partitions) -> None:
        self.redis = redis
        self.keys = keys
        self.partitions = partitions

    async def pause(self, job_type: str) -> None:
        """Stops claims of the type's jobs (idempotent; the type need not have jobs yet).

        The type joins the registry of types, so that GetQueueStats lists it paused.
        Every partition it has, or ever had, is paused; one given later starts unpaused."""
        job_type = check_job_type(job_type)
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in await self.partitions.covered(job_type):
                pipe.hset(self.keys.queue(job_type, partition).stats, PAUSED, 1)
            pipe.sadd(self.keys.types, job_type)
            await pipe.execute()

    async def resume(self, job_type: str) -> None:
        """Lets claims take the type's jobs again (idempotent)."""
        job_type = check_job_type(job_type)
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in await self.partitions.covered(job_type):
                pipe.hdel(self.keys.queue(job_type, partition).stats, PAUSED)
            await pipe.execute()
