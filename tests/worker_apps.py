"""Workers that tests run as real subprocesses (`jobqueue worker tests/worker_apps.py:NAME`).

Handlers report to Redis (the test's only window into a process it may kill):
RPUSH test:started "<id> <attempt> <pid>" when a run starts, and
RPUSH test:finished likewise when it ends. The payload is the run time in seconds.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from jobqueue.settings import Settings
from jobqueue.worker import Job, Worker

_redis: Redis | None = None


async def _report(key: str, job: Job) -> None:
    global _redis  # noqa: PLW0603 - one client per process, made lazily inside the loop
    if _redis is None:
        _redis = Redis.from_url(Settings.from_env().redis_url)
    await _redis.rpush(key, f"{job.id} {job.attempt} {os.getpid()}")


async def sleepy(job: Job) -> None:
    await _report("test:started", job)
    await asyncio.sleep(float(job.payload or b"0"))
    await _report("test:finished", job)


# A long lease and a short liveness: a dead worker's jobs come back through liveness.
worker = Worker(
    "sleepy", sleepy, lease_s=30.0, liveness_s=1.0, heartbeat_s=0.2, shutdown_grace_s=0.5, concurrency=4
)
