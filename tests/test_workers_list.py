"""ListWorkers: the live workers' registry entries, their jobs held and last heartbeat;
an entry goes when its worker leaves or is found dead. Through the Python client and grpcurl."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from jobqueue.client import Client
from jobqueue.model import Job, JobStatus, new_job_ids, partition_of_type
from jobqueue.settings import Settings
from jobqueue.worker import Worker

from .conftest import Spawn, eventually, status_is
from .harness import Harness
from .test_api import SERVICE, grpcurl, grpcurl_json, new_type
from .test_worker import running

pytestmark = pytest.mark.redis_targets


async def test_a_live_worker_is_listed_with_its_jobs_held(
    store: Harness, settings: Settings, server_url: str
) -> None:
    job_type, other_type = new_type(), new_type()
    hold = asyncio.Event()

    async def handler(job: Job) -> None:
        await hold.wait()

    async def idle(job: Job) -> None:
        pass

    worker = Worker(job_type, handler, settings=settings, concurrency=3, heartbeat_s=0.1, liveness_s=2.0)
    other = Worker(other_type, idle, settings=settings, heartbeat_s=0.1)
    began = int(time.time() * 1000)
    async with running(worker), running(other), Client(server_url) as client:
        jobs = [await store.enqueue(job_type, "") for _ in range(2)]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.RUNNING), what="the jobs running")

        async def held_two() -> bool:
            return [w.jobs_held for w in await client.workers(job_type)] == [2]

        await eventually(held_two, what="the worker listed with its 2 jobs")
        # Stale ids in its held set (the set may keep them: recovery checks each job) are
        # not counted: a job gone, and one not RUNNING under it.
        [gone] = new_job_ids(partition_of_type(job_type), 1)
        waiting = await store.enqueue(job_type, "", int(time.time() * 1000) + 3_600_000)
        await store.redis.sadd(store.keys.queue(job_type).held(worker.worker_id), gone, waiting.id)
        assert [w.jobs_held for w in await client.workers(job_type)] == [2]
        [listed] = await client.workers(job_type)
        assert listed.id == worker.worker_id
        assert (listed.host, listed.pid) == (socket.gethostname(), os.getpid())
        assert listed.types == (job_type,) and listed.concurrency == 3
        assert began - 1000 <= listed.started_at <= int(time.time() * 1000)
        # The last heartbeat is recent (every 0.1 s), by the Redis clock.
        assert abs(listed.last_heartbeat_at - time.time() * 1000) < 5_000
        assert listed.last_heartbeat_at >= listed.started_at - 1000

        # Every type: both workers, by id; through grpcurl too.
        every = await client.workers()
        assert {worker.worker_id, other.worker_id} <= {w.id for w in every}
        assert [w.id for w in every] == sorted(w.id for w in every)
        body = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/ListWorkers", data={"type": job_type}))
        [shown] = body["workers"]
        assert shown["id"] == worker.worker_id and shown["jobsHeld"] == 2 and shown["types"] == [job_type]
        assert shown["pid"] == os.getpid() and shown["concurrency"] == 3
        assert abs(int(shown["lastHeartbeatAt"]) - time.time() * 1000) < 5_000
        assert int(shown["startedAt"]) == listed.started_at
        hold.set()

    # Both left: their entries are gone, and they are no longer listed.
    assert not await store.redis.hexists(store.keys.workers, worker.worker_id)
    assert not await store.redis.hexists(store.keys.workers, other.worker_id)
    async with Client(server_url) as client:
        assert await client.workers(job_type) == []


async def test_a_killed_workers_entry_goes_when_the_reaper_forgets_it(store: Harness, spawn: Spawn) -> None:
    process = spawn()  # tests/worker_apps.py: `sleepy`, liveness 1 s

    async def listed() -> list[str]:
        return [w.id for w in await store.store.registry.live("sleepy") if w.pid == process.pid]

    [worker_id] = await eventually(listed, timeout=30, what="the worker listed")
    assert await store.redis.hexists(store.keys.workers, worker_id)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    reaper = store.reaper(["sleepy"])

    async def forgotten() -> bool:
        await reaper.reap_once()
        return not await store.redis.hexists(store.keys.workers, worker_id)

    await eventually(forgotten, timeout=30, what="the dead worker's entry removed")
    assert await listed() == []


async def test_an_entry_without_a_live_heartbeat_is_not_listed(store: Harness) -> None:
    """A worker that died before its first heartbeat left an entry and no liveness: not live."""
    registry = store.store.registry
    await registry.register(
        "ghost", host="h", pid=1, types=("ghost-type",), concurrency=1, started_at=1, liveness_ms=1000
    )
    await store.redis.hset(store.keys.workers, "garbage", b"not json")
    assert await registry.live() == []
    assert await registry.live("ghost-type") == []


async def test_a_stalled_worker_forgotten_by_the_reaper_is_listed_again_when_it_wakes(
    store: Harness, spawn: Spawn
) -> None:
    """SIGSTOP past its liveness: the reaper forgets it; SIGCONT: its next beat finds it
    forgotten and writes its entry again."""
    process = spawn()  # tests/worker_apps.py: `sleepy`, liveness 1 s

    async def listed() -> list[str]:
        return [w.id for w in await store.store.registry.live("sleepy") if w.pid == process.pid]

    [worker_id] = await eventually(listed, timeout=30, what="the worker listed")
    os.kill(process.pid, signal.SIGSTOP)
    try:
        reaper = store.reaper(["sleepy"])

        async def forgotten() -> bool:
            await reaper.reap_once()
            return not await store.redis.hexists(store.keys.workers, worker_id)

        await eventually(forgotten, timeout=30, what="the stalled worker forgotten")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert await eventually(listed, timeout=30, what="the worker listed again") == [worker_id]
