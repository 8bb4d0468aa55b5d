"""Worker liveness: the jobs of a worker that stops heartbeating come back at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobqueue.model import JobStatus
from jobqueue.redis_server import RedisServer
from jobqueue.settings import Settings
from jobqueue.store.client import connect
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result

from .conftest import eventually, status_is
from .harness import Harness
from .test_scheduler import background

LONG_LEASE_MS = 600_000  # far longer than any test: only liveness can explain a recovery


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """Liveness driven by the test alone (see `private_store`)."""
    return private_store


async def claim_as(store: Harness, blocking: OwnConnection, worker_id: str) -> str:
    job_id = await store.pop(blocking, "t", 1)
    assert job_id is not None
    await store.claimed("t", job_id, worker_id, LONG_LEASE_MS, 3)
    return job_id


async def test_a_dead_workers_jobs_come_back_before_their_leases_expire(
    store: Harness, blocking: OwnConnection
) -> None:
    for _ in range(3):
        await store.enqueue("t", b"")
    dead = [await claim_as(store, blocking, "dead") for _ in range(2)]
    alive = await claim_as(store, blocking, "alive")
    await store.transitions.heartbeat("t", "dead", [], LONG_LEASE_MS, liveness_ms=50)
    reaper = store.reaper(["t"], reaper_interval_s=0.05)
    async with background(reaper.run()):
        await store.transitions.heartbeat("t", "alive", [(alive, 1)], LONG_LEASE_MS, liveness_ms=60_000)
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


async def test_a_worker_that_came_back_keeps_its_jobs(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job_id = await claim_as(store, blocking, "w")
    await store.transitions.heartbeat("t", "w", [(job_id, 1)], LONG_LEASE_MS, liveness_ms=1)
    await eventually(lambda: store.inspect.dead_workers("t"), what="registry expiry")
    await store.transitions.heartbeat(
        "t", "w", [(job_id, 1)], LONG_LEASE_MS, liveness_ms=60_000
    )  # it resumes
    assert await store.transitions.recover("t", job_id, dead_worker="w") == Result(Outcome.ALIVE)
    assert await store.transitions.forget_worker("t", "w") == Result(Outcome.ALIVE)
    assert (await store.get(job_id)).status is JobStatus.RUNNING


async def test_recovery_by_worker_ignores_jobs_it_no_longer_holds(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    job_id = await claim_as(store, blocking, "old")
    await store.redis.hset(store.keys.job(job_id), "worker_id", "new")  # since re-claimed by another
    assert await store.transitions.recover("t", job_id, dead_worker="old") == Result(Outcome.MOVED)


async def test_reapers_give_workers_a_grace_period_after_a_redis_restart(tmp_path: Path) -> None:
    """A fresh Redis (as after a restart) saw no heartbeat: nothing is taken back until the grace ends."""
    with RedisServer(tmp_path) as server:
        redis = connect(server.url)
        store = Harness(redis, Settings(redis_url=server.url))
        blocking = store.own_connection()
        try:
            await store.enqueue("t", b"")
            job_id = await claim_as(store, blocking, "w")
            await store.redis.zadd(store.keys.queue("t").leases, {job_id: 0})  # expired
            await store.transitions.heartbeat("t", "w", [], LONG_LEASE_MS, liveness_ms=1)  # and "dead"
            await eventually(lambda: store.inspect.dead_workers("t"), what="registry expiry")
            assert await store.reaper(["t"], restart_grace_s=3600).reap_once() == 0
            assert (await store.get(job_id)).status is JobStatus.RUNNING
            assert await store.reaper(["t"], restart_grace_s=0).reap_once() == 1
        finally:
            await redis.aclose()
            await blocking.aclose()
