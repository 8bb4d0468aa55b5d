"""The read side: what is stored, read without changing it.

Nothing here writes; every change of state is in transitions.py. The coming
queries of the API (list, counts, workers) belong here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import JobNotFound
from ..model import Job, JobStatus, check_job_id
from . import scripts
from .codec import decode_job

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace
    from .worker_defaults import WorkerDefaults


class Inspector:
    def __init__(self, redis: Redis, keys: Keyspace, worker_defaults: WorkerDefaults) -> None:
        self.redis = redis
        self.keys = keys
        self.worker_defaults = worker_defaults
        self._expired = scripts.load(redis, "expired")["expired"]

    async def get(self, job_id: str) -> Job:
        """The job as GetJob shows it: as stored, but a PENDING job enqueued without
        max_attempts shows the default its type's workers registered (the number of
        runs it will get), read in a second round trip (the type is known only then)."""
        job = await self.stored(job_id)
        if job.status is JobStatus.PENDING and not job.max_attempts:
            job.max_attempts = await self.worker_defaults.max_attempts(job.type)
        return job

    async def stored(self, job_id: str) -> Job:
        """The job as its hash holds it."""
        job_id = check_job_id(job_id)
        fields: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        if not fields:
            raise JobNotFound(job_id)
        return decode_job(fields)

    async def result(self, job_id: str) -> bytes | None:
        """The job's stored result; None for a job without one or gone. For the watch
        streams, which send a COMPLETED event's result read when it is sent (the
        stream's entries stay small)."""
        stored: bytes | None = await self.redis.hget(self.keys.job(job_id), "result")  # type: ignore[assignment]
        return stored or None

    async def job_types(self) -> set[str]:
        """Every type ever enqueued (the registry schedulers and reapers iterate)."""
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        return {t.decode() for t in members}

    async def held_by(self, job_type: str, worker_id: str, *, partition: str | None = None) -> list[str]:
        """The ids a worker claimed and has not finished (may include stale ones)."""
        members: set[bytes] = await self.redis.smembers(self.keys.queue(job_type, partition).held(worker_id))  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    async def expired_leases(
        self, job_type: str, limit: int = 100, *, partition: str | None = None
    ) -> list[str]:
        """Running jobs whose lease expired, by the Redis clock."""
        return await self._past_due(self.keys.queue(job_type, partition).leases, limit)

    async def past_expiry(
        self, job_type: str, limit: int = 100, *, partition: str | None = None
    ) -> list[str]:
        """Ids in the type's `expiring` index whose expiry passed, by the Redis clock
        (their jobs may have started or finished since: expire.lua checks)."""
        return await self._past_due(self.keys.queue(job_type, partition).expiring, limit)

    async def dead_workers(
        self, job_type: str, limit: int = 100, *, partition: str | None = None
    ) -> list[str]:
        """Workers of the type whose liveness deadline passed, by the Redis clock."""
        return await self._past_due(self.keys.queue(job_type, partition).workers, limit)

    async def _past_due(self, key: str, limit: int) -> list[str]:
        members = await self._expired.run(self._expired.keys(None, more=[key]), [limit])
        return [m.decode() for m in members]

    async def redis_uptime_s(self) -> float:
        """Seconds since the Redis server started (0 right after a restart)."""
        info: dict[str, Any] = await self.redis.info("server")
        return float(info["uptime_in_seconds"])
