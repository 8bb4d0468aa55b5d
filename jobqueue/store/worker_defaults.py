"""What a type's workers apply to a job enqueued without its own options, kept in
Redis so that a read can show it before any worker claims the job.

A worker registers its defaults when it starts: one HSET on its type's `defaults`
hash, under the type's hash tag. The last worker started wins: any worker of the
type may claim the next job, and a deployment that changes a default restarts its
workers. The hash does not expire, like the `types` registry: a job enqueued
while no worker runs still shows what the type's workers applied last. Only
`max_attempts` is registered (the one option a reader needs before the first
claim, to tell how many runs a job will get).

A claim does not read it: the claiming worker's own default is what applies,
passed with the claim, so the hot path is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace

MAX_ATTEMPTS = "max_attempts"


class WorkerDefaults:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    async def register(self, job_type: str, max_attempts: int) -> None:
        """Records what a worker of `job_type` applies (when it starts)."""
        await self.redis.hset(self.keys.queue(job_type).defaults, MAX_ATTEMPTS, max_attempts)

    async def max_attempts(self, job_type: str) -> int:
        """The registered default; 0 while no worker of the type has registered one."""
        value: bytes | None = await self.redis.hget(self.keys.queue(job_type).defaults, MAX_ATTEMPTS)  # type: ignore[assignment]
        return int(value) if value and value.isdigit() else 0
