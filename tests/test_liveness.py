"""Worker liveness: the jobs of a worker that stops heartbeating come back at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobqueue.config import connect
from jobqueue.model import JobStatus
from jobqueue.reaper import Reaper
from jobqueue.redis_server import RedisServer
from jobqueue.store import JobStore, OwnConnection

from .conftest import eventually, status_is
from .test_scheduler import background

LONG_LEASE_MS = 600_000  # far longer than any test: only liveness can explain a recovery


@pytest.fixture
def store(private_store: JobStore) -> JobStore:
    """Liveness driven by the test alone (see `private_store`)."""
    return private_store


async def claim_as(store: JobStore, blocking: OwnConnection, worker_id: str) -> str:
    job_id = await store.pop(blocking, "t", 1)
    assert job_id is not None
    job, outcome = await store.claim("t", job_id, worker_id, LONG_LEASE_MS, 3)
    assert job is not None, outcome
    return job_id


async def test_a_dead_workers_jobs_come_back_before_their_leases_expire(
    store: JobStore, blocking: OwnConnection
) -> None:
    for _ in range(3):
        await store.enqueue("t", b"")
    dead = [await claim_as(store, blocking, "dead") for _ in range(2)]
    alive = await claim_as(store, blocking, "alive")
    await store.heartbeat("t", "dead", [], LONG_LEASE_MS, liveness_ms=50)
    reaper = Reaper(store, ["t"], interval_s=0.05)
    async with background(reaper.run()):
        await store.heartbeat("t", "alive", [(alive, 1)], LONG_LEASE_MS, liveness_ms=60_000)
        for job_id in dead:
            await eventually(
                status_is(store, job_id, JobStatus.PENDING), what="recovery of the dead worker's jobs"
            )
    queue = store.keys.queue("t")
    assert sorted(i.decode() for i in await store.redis.lrange(queue.ready, 0, -1)) == sorted(dead)
    assert (await store.get(alive)).status is JobStatus.RUNNING
    assert "worker dead died" in (await store.get(dead[0])).last_error
    assert await store.redis.zscore(queue.workers, "dead") is None
    assert not await store.redis.exists(queue.held("dead"))
    assert await store.redis.zscore(queue.workers, "alive") is not None


async def test_a_worker_that_came_back_keeps_its_jobs(store: JobStore, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job_id = await claim_as(store, blocking, "w")
    await store.heartbeat("t", "w", [(job_id, 1)], LONG_LEASE_MS, liveness_ms=1)
    await eventually(lambda: store.dead_workers("t"), what="registry expiry")
    await store.heartbeat("t", "w", [(job_id, 1)], LONG_LEASE_MS, liveness_ms=60_000)  # it resumes
    assert await store.recover("t", job_id, dead_worker="w") == "alive"
    assert not await store.forget_worker("t", "w")
    assert (await store.get(job_id)).status is JobStatus.RUNNING


async def test_recovery_by_worker_ignores_jobs_it_no_longer_holds(
    store: JobStore, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    job_id = await claim_as(store, blocking, "old")
    await store.redis.hset(store.keys.job(job_id), "worker_id", "new")  # since re-claimed by another
    assert await store.recover("t", job_id, dead_worker="old") == "moved"


async def test_reapers_give_workers_a_grace_period_after_a_redis_restart(tmp_path: Path) -> None:
    """A fresh Redis (as after a restart) saw no heartbeat: nothing is taken back until the grace ends."""
    with RedisServer(tmp_path) as server:
        redis = connect(server.url)
        blocking = OwnConnection(redis)
        try:
            store = JobStore(redis)
            await store.enqueue("t", b"")
            job_id = await claim_as(store, blocking, "w")
            await store.redis.zadd(store.keys.queue("t").leases, {job_id: 0})  # expired
            await store.heartbeat("t", "w", [], LONG_LEASE_MS, liveness_ms=1)  # and "dead"
            await eventually(lambda: store.dead_workers("t"), what="registry expiry")
            assert await Reaper(store, ["t"], restart_grace_s=3600).reap_once() == 0
            assert (await store.get(job_id)).status is JobStatus.RUNNING
            assert await Reaper(store, ["t"], restart_grace_s=0).reap_once() == 1
        finally:
            await redis.aclose()
            await blocking.aclose()
