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
from jobqueue.store.client import connect
from jobqueue.worker import Job, Worker

_redis: Redis | None = None


async def _report(key: str, job: Job) -> None:
    global _redis  # noqa: PLW0603 - one client per process, made lazily inside the loop
    if _redis is None:
        settings = Settings.from_env()
        _redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    await _redis.rpush(key, f"{job.id} {job.attempt} {os.getpid()}")


async def sleepy(job: Job) -> None:
    await _report("test:started", job)
    await asyncio.sleep(float(job.payload or b"0"))
    await _report("test:finished", job)


# A long lease and a short liveness: a dead worker's jobs come back through liveness.
worker = Worker(
    "sleepy", sleepy, lease_s=30.0, liveness_s=1.0, heartbeat_s=0.2, shutdown_grace_s=0.5, concurrency=4
)


async def nap(job: Job) -> None:
    """Sleeps for its payload's seconds, with no round trip to Redis after the sleep (the
    next job may start at once) nor before it: its start is written to TEST_STARTS_FILE,
    "<id> <attempt> <pid>" per line, as it happens."""
    with open(os.environ["TEST_STARTS_FILE"], "a") as starts:  # noqa: ASYNC230 - a line, at once
        starts.write(f"{job.id} {job.attempt} {os.getpid()}\n")
    await asyncio.sleep(float(job.payload or b"0"))


# One slot and one job claimed ahead of it (`worker_apps.py:prefetching`).
prefetching = Worker(
    "prefetching", nap, lease_s=30.0, liveness_s=1.0, heartbeat_s=0.2, concurrency=1, prefetch=1
)


async def no_op(job: Job) -> None:
    """Does nothing: a handler that never talks to Redis (the failover tests)."""


quick = Worker("quick", no_op, lease_s=30.0, liveness_s=2.0, heartbeat_s=0.2, concurrency=8)


# Eight slots, a short liveness: the failover tests' drain (tests/test_cluster_failover.py).
failover = Worker("failover", nap, lease_s=30.0, liveness_s=2.0, heartbeat_s=0.2, concurrency=8)
