"""A type over several partitions (SetQueuePartitions; docs/design.md, "Partitions of a
type"): enqueues spread, one worker drains them all, FIFO per partition, stats and
ListJobs see one type, a count changed while jobs flow loses none, deduplication
stays exactly-one, the schedulers and reapers cover every partition. Through the
Python client, grpcurl, HTTP+JSON and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.errors import QueueFull
from jobqueue.model import (
    MAX_PARTITIONS,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    UniqueMode,
    partition_of_id,
    partition_of_type,
    partitions_of_type,
)
from jobqueue.producer import Producer
from jobqueue.selection import JobFilter
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.store.keys import Keyspace
from jobqueue.store.rebuild import Rebuilder
from jobqueue.worker import Worker

from .conftest import eventually, status_is
from .harness import Harness
from .store_audit import audit
from .test_api import SERVICE, grpcurl, grpcurl_json, new_type, post_json
from .test_cli import jobqueue
from .test_rebuild import sync  # noqa: F401 - the audit's blocking client
from .test_worker import running

pytestmark = pytest.mark.redis_targets


def test_a_types_partitions_are_distinct_and_the_first_is_its_own() -> None:
    for job_type in ("a", "email", "hot.type"):
        tags = partitions_of_type(job_type, MAX_PARTITIONS)
        assert tags[0] == partition_of_type(job_type)
        assert len(set(tags)) == MAX_PARTITIONS
        assert partitions_of_type(job_type, 3) == tags[:3]  # growing keeps the first ones


async def _completed(client: Client, job_type: str) -> int:
    [queue] = (await client.stats(job_type)).queues
    return queue.completed


async def test_four_partitions_are_drained_by_one_worker_fifo_in_each(
    store: Harness, redis: Redis, settings: Settings, server_url: str
) -> None:
    job_type = new_type()
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    async with Client(server_url) as client:
        assert await client.set_partitions(job_type, 4) == 4
        jobs = [await client.enqueue(job_type, str(i)) for i in range(40)]
        jobs += await client.enqueue_many([EnqueueRequest(job_type, b"batch") for _ in range(20)])
        tags = partitions_of_type(job_type, 4)
        landed = {partition_of_id(job.id) for job in jobs}
        assert landed == set(tags)  # one call after another: each partition in turn
        for tag in tags:  # the jobs are in each partition's own keys
            assert await redis.llen(store.keys.queue(job_type, tag).ready) >= 10
        [queue] = (await client.stats(job_type)).queues
        assert (queue.pending, queue.ready, queue.partitions) == (60, 60, 4)

        worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1, concurrency=1)
        async with running(worker):
            await eventually(lambda: _completed(client, job_type), what="the first completion")

            async def all_done() -> bool:
                return await _completed(client, job_type) == 60

            await eventually(all_done, timeout=60, what="60 jobs completed")
        assert sorted(ran) == sorted(job.id for job in jobs)
        for tag in tags:  # first in, first out within a partition
            enqueued = [job.id for job in jobs if job.id.startswith(tag)]
            assert [job_id for job_id in ran if job_id.startswith(tag)] == enqueued

        [queue] = (await client.stats(job_type)).queues
        assert (queue.pending, queue.running, queue.completed, queue.workers) == (0, 0, 60, 0)
        listed: list[str] = []
        token = ""
        for _ in range(10):  # ListJobs merges the partitions' indexes: one type, paged
            page = await client.list_jobs(
                JobFilter(type=job_type, status=JobStatus.COMPLETED), page_size=25, page_token=token
            )
            listed += [job.id for job in page.jobs]
            token = page.next_page_token
            if not token:
                break
        assert sorted(listed) == sorted(job.id for job in jobs)


async def test_a_count_changed_while_jobs_flow_loses_none(
    settings: Settings, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    job_type = new_type()
    ran: set[str] = set()

    async def handler(job: Job) -> None:
        ran.add(job.id)

    worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1, concurrency=4)
    enqueued: list[Job] = []
    async with Client(server_url) as client, running(worker):

        async def serving() -> bool:  # listed: it runs with the one partition it found
            return bool(await client.workers(job_type))

        await eventually(serving, what="the worker serving")
        for count in (4, 2, 4):
            await client.set_partitions(job_type, count)
            enqueued += [await client.enqueue(job_type, b"") for _ in range(12)]

            async def all_ran(expected: frozenset[str] = frozenset(job.id for job in enqueued)) -> bool:
                return ran >= expected

            # The worker started with one partition: it learns of the others by itself.
            await eventually(all_ran, timeout=30, what=f"every job run, at {count} partitions")
        [queue] = (await client.stats(job_type)).queues
        assert queue.partitions == 4 and queue.pending == 0
    assert "got partition" in caplog.text
    assert {partition_of_id(job.id) for job in enqueued} == set(partitions_of_type(job_type, 4))


async def test_a_shrink_leaves_no_job_stranded(store: Harness, settings: Settings, server_url: str) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        await client.set_partitions(job_type, 3)
        before = [await client.enqueue(job_type, b"") for _ in range(6)]
        assert await client.set_partitions(job_type, 1) == 3  # still covered: the most it had
        after = [await client.enqueue(job_type, b"") for _ in range(3)]
        assert {partition_of_id(job.id) for job in after} == {partition_of_type(job_type)}

        async def handler(job: Job) -> None:
            pass

        worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1)
        async with running(worker):
            for job in before + after:
                await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what="a run")


async def test_deduplication_stays_exactly_one_over_four_partitions(server_url: str) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        await client.set_partitions(job_type, 4)
        idempotent = JobOptions(idempotency_key="order-42")
        racing = await asyncio.gather(*(client.enqueue(job_type, b"", options=idempotent) for _ in range(16)))
        assert len({job.id for job in racing}) == 1
        unique = JobOptions(unique_key="user-7", unique_mode=UniqueMode.WHILE_ACTIVE)
        racing = await asyncio.gather(*(client.enqueue(job_type, b"", options=unique) for _ in range(16)))
        assert len({job.id for job in racing}) == 1
        # Different keys go to different partitions: the keyed jobs spread too.
        keyed = [
            await client.enqueue(job_type, b"", options=JobOptions(idempotency_key=f"k{i}"))
            for i in range(16)
        ]
        assert len({partition_of_id(job.id) for job in keyed}) > 1
        # ListJobs finds a job by its idempotency key in its partition.
        page = await client.list_jobs(JobFilter(type=job_type, idempotency_key="k3"))
        assert [job.id for job in page.jobs] == [keyed[3].id]


async def test_schedulers_and_reapers_cover_every_partition(store: Harness) -> None:
    job_type = new_type()
    await store.store.partitions.set(job_type, 3)
    tags = partitions_of_type(job_type, 3)
    jobs = [await store.enqueue(job_type, b"") for _ in range(3)]
    assert {partition_of_id(job.id) for job in jobs} == set(tags)
    last = tags[2]
    # A job of the last partition claimed by a worker that then dies is recovered there.
    _, _, [taken] = await store.transitions.round(job_type, "w-gone", take=1, partition=last)
    [claimed] = await store.transitions.claim(job_type, [taken], "w-gone", 60_000, 3, partition=last)
    assert isinstance(claimed, Job)
    await store.transitions.heartbeat(
        job_type, "w-gone", [(taken, claimed.lease_token)], 60_000, 1, partition=last
    )

    async def recovered() -> int:
        return await store.reaper([job_type], restart_grace_s=0).reap_once()

    assert await eventually(recovered, what="the dead worker's job taken back") == 1
    assert (await store.get(taken)).status is JobStatus.PENDING
    # Jobs scheduled in every partition are promoted there.
    due_at = int(time.time() * 1000) + 300
    scheduled = [await store.enqueue(job_type, b"", execution_time_ms=due_at) for _ in range(3)]
    assert {partition_of_id(job.id) for job in scheduled} == set(tags)
    scheduler = asyncio.create_task(store.scheduler([job_type]).run())
    try:
        for job in scheduled:
            ready = store.keys.queue(job_type, partition_of_id(job.id)).ready

            async def promoted(ready: str = ready, job_id: str = job.id) -> bool:
                return await store.redis.lpos(ready, job_id) is not None

            await eventually(promoted, what="a scheduled job promoted")
    finally:
        scheduler.cancel()
        await asyncio.gather(scheduler, return_exceptions=True)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "t", "partitions": 0}, "partitions"),
        ({"type": "t", "partitions": MAX_PARTITIONS + 1}, "partitions"),
        ({"type": "bad type", "partitions": 2}, "type"),
    ],
)
async def test_bad_partition_counts_are_refused(
    server_url: str, redis: Redis, store: Harness, data: dict[str, object], field: str
) -> None:
    ran = await grpcurl(server_url, f"{SERVICE}/SetQueuePartitions", data=data)
    assert ran.code == 64 + 3, ran
    assert "Code: InvalidArgument\n" in ran.err and f"{field}:" in ran.err
    reply = await post_json(server_url, "SetQueuePartitions", json.dumps(data))
    assert reply.status == 400, reply
    error = reply.json()
    assert error["code"] == "invalid_argument" and error["message"].startswith(f"{field}:"), error
    assert await redis.hget(store.keys.partitions, str(data["type"])) is None  # nothing stored


async def test_grpcurl_and_json_set_the_count(server_url: str) -> None:
    job_type = new_type()
    reply = grpcurl_json(
        await grpcurl(server_url, f"{SERVICE}/SetQueuePartitions", data={"type": job_type, "partitions": 5})
    )
    assert reply == {"covered": 5}
    answer = await post_json(
        server_url, "SetQueuePartitions", json.dumps({"type": job_type, "partitions": 2})
    )
    assert answer.status == 200 and answer.json() == {"covered": 5}
    stats = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetQueueStats", data={"type": job_type}))
    assert stats["queues"][0]["partitions"] == 2


def test_the_cli_sets_the_count(server_url: str) -> None:
    job_type = new_type()
    done = jobqueue("partitions", job_type, "3", "--url", server_url)
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"{job_type}: enqueues go to 3 partitions"
    done = jobqueue("partitions", job_type, "1", "--url", server_url)
    assert (
        done.stdout.strip()
        == f"{job_type}: enqueues go to 1 partition; its workers still cover 3 (the most it had)"
    )
    stats = jobqueue("stats", "--type", job_type, "--json", "--url", server_url)
    assert json.loads(stats.stdout)["queues"][0].get("partitions", 0) == 1
    refused = jobqueue("partitions", job_type, "0", "--url", server_url)
    assert refused.returncode == 3 and "invalid_argument: partitions:" in refused.stderr, refused


async def test_a_watch_of_a_spread_type_sees_every_partition(server_url: str) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        await client.set_partitions(job_type, 3)
        async with await client.watch_jobs(job_type) as watch:
            jobs = [await client.enqueue(job_type, b"") for _ in range(6)]
            seen: set[str] = set()
            async with asyncio.timeout(20):
                while len(seen) < len(jobs):
                    seen.add((await anext(watch)).id)
        assert seen == {job.id for job in jobs}
        assert len({partition_of_id(job.id) for job in jobs}) == 3


async def test_the_maximum_depth_counts_every_partition(redis: Redis, settings: Settings) -> None:
    store = Store(redis, dataclasses.replace(settings, max_depth=4))
    producer = Producer(store)
    job_type = new_type()
    await store.partitions.set(job_type, 3)
    jobs = [await producer.enqueue(job_type, b"") for _ in range(4)]
    assert len({partition_of_id(job.id) for job in jobs}) == 3  # no partition holds 4
    with pytest.raises(QueueFull):
        await producer.enqueue(job_type, b"")
    with pytest.raises(QueueFull):
        await producer.enqueue_many([EnqueueRequest(job_type, b"")])
    [queue] = (await store.stats.read(job_type)).queues
    assert queue.pending == 4


async def test_list_workers_counts_the_jobs_held_in_every_partition(
    settings: Settings, server_url: str
) -> None:
    job_type = new_type()
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        await release.wait()

    worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1, concurrency=3)
    async with Client(server_url) as client:
        await client.set_partitions(job_type, 3)
        jobs = [await client.enqueue(job_type, b"") for _ in range(3)]
        assert len({partition_of_id(job.id) for job in jobs}) == 3
        async with running(worker):

            async def held() -> int:
                listed = await client.workers(job_type)
                return listed[0].jobs_held if listed else 0

            async def holds_all() -> bool:
                return await held() == 3

            await eventually(holds_all, what="the worker holding a job of each partition")
            release.set()


async def test_progress_is_written_in_each_jobs_own_partition(
    redis: Redis, settings: Settings, server_url: str
) -> None:
    """The progress script's keys are the job's partition's (its hash and that
    partition's events stream): one slot on a cluster, and the watches of the job's
    partition see the report."""
    job_type = new_type()
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        job.set_progress(0.5, f"in {partition_of_id(job.id)}")
        await release.wait()

    worker = Worker(
        job_type, handler, settings=settings, heartbeat_s=0.1, concurrency=3, progress_interval_s=0
    )
    keys = Keyspace(settings.prefix)
    async with Client(server_url) as client:
        await client.set_partitions(job_type, 3)
        jobs = [await client.enqueue(job_type, b"") for _ in range(3)]
        assert len({partition_of_id(job.id) for job in jobs}) == 3
        async with running(worker):

            async def reported(job_id: str) -> bool:
                entries = await redis.xrange(keys.events(partition_of_id(job_id)))
                return (
                    any(
                        fields[b"jobs"].startswith(job_id.encode()) and fields.get(b"progress_message")
                        for _, fields in entries
                    )
                    and (await client.get(job_id)).progress_message == f"in {partition_of_id(job_id)}"
                )

            for job in jobs:
                await eventually(lambda job_id=job.id: reported(job_id), what=f"the progress of {job.id}")
            release.set()


async def test_a_rebuild_repairs_every_partition_of_a_spread_type(
    store: Harness,
    sync: SyncRedis,  # noqa: F811
) -> None:
    job_type = new_type()
    await store.store.partitions.set(job_type, 3)
    jobs = [await store.enqueue(job_type, b"") for _ in range(6)]
    assert audit(sync, store.keys, job_type) == []
    tags = partitions_of_type(job_type, 3)
    for tag in tags:  # counters and the live index lost
        queue = store.keys.queue(job_type, tag)
        await store.redis.delete(queue.stats, queue.live)
    # The audit sees the damage in each partition (named, but for the first).
    problems = audit(sync, store.keys, job_type)
    assert len(problems) == 6
    assert [p.split(":")[0] for p in problems[2:]] == [f"partition {tag}" for tag in tags[1:] for _ in "ab"]
    report = await Rebuilder(store.redis, store.keys).rebuild(job_type)
    assert audit(sync, store.keys, job_type) == []
    assert report.added["live"] == 6 and report.counted == (6, 0)
    [queue] = (await store.store.stats.read(job_type)).queues
    assert queue.pending == 6
    page = await store.store.lister.select(JobFilter(type=job_type), newest_first=True, count=10)
    assert sorted(job.id for job in page.jobs) == sorted(job.id for job in jobs)
