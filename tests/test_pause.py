"""PauseQueue / ResumeQueue: a paused type accepts jobs and no live worker runs them; after
resume they run promptly. Through the Python client and grpcurl."""

from __future__ import annotations

import logging

import pytest

from jobqueue.client import Client
from jobqueue.model import Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.worker import Worker

from .conftest import eventually, status_is
from .harness import Harness
from .test_api import SERVICE, grpcurl, grpcurl_json, new_type
from .test_worker import running

pytestmark = pytest.mark.redis_targets

PAUSED_LINE = "is paused: claiming none of its jobs"
RESUMED_LINE = "was resumed: claiming its jobs again"


async def test_a_paused_types_jobs_wait_and_run_promptly_after_resume(
    store: Harness, settings: Settings, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    job_type = new_type()
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1, concurrency=2)
    async with running(worker), Client(server_url) as client:
        await client.pause(job_type)
        await client.pause(job_type)  # idempotent
        [queue] = (await client.stats(job_type)).queues
        assert queue.paused
        jobs = [await client.enqueue(job_type, str(i)) for i in range(3)]  # enqueue goes on

        async def worker_met_the_pause() -> bool:
            return PAUSED_LINE in caplog.text

        await eventually(worker_met_the_pause, what="the worker meeting the pause")
        # It took a job's id and put it back unclaimed: nothing ran, nothing was claimed.
        assert ran == []
        for job in jobs:
            stored = await store.get(job.id)
            assert (stored.status, stored.attempt) == (JobStatus.PENDING, 0)
        [queue] = (await client.stats(job_type)).queues
        assert (queue.pending, queue.ready, queue.running, queue.paused) == (3, 3, 0, True)

        grpcurl_json(await grpcurl(server_url, f"{SERVICE}/ResumeQueue", data={"type": job_type}))
        for job in jobs:
            # Promptly: the worker pops again within a second of meeting the pause.
            await eventually(
                status_is(store, job.id, JobStatus.COMPLETED), timeout=5, what="runs after resume"
            )
        assert sorted(ran) == sorted(job.id for job in jobs)
        assert not (await client.stats(job_type)).queues[0].paused
    assert caplog.text.count(PAUSED_LINE) == 1 and caplog.text.count(RESUMED_LINE) == 1


async def test_pause_shows_in_stats_through_grpcurl_even_for_a_type_without_jobs(
    store: Harness, server_url: str
) -> None:
    job_type = new_type()
    grpcurl_json(await grpcurl(server_url, f"{SERVICE}/PauseQueue", data={"type": job_type}))
    assert await store.redis.hget(store.keys.queue(job_type).stats, "paused") == b"1"
    body = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetQueueStats", data={}))
    [queue] = [q for q in body["queues"] if q["type"] == job_type]
    assert queue["paused"] is True
    grpcurl_json(await grpcurl(server_url, f"{SERVICE}/ResumeQueue", data={"type": job_type}))
    grpcurl_json(await grpcurl(server_url, f"{SERVICE}/ResumeQueue", data={"type": job_type}))  # idempotent
    assert await store.redis.hget(store.keys.queue(job_type).stats, "paused") is None
    body = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetQueueStats", data={"type": job_type}))
    assert "paused" not in body["queues"][0]  # false: protobuf JSON leaves it out
