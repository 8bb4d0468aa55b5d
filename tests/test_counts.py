"""The write side of counts, indexes and events: every transition keeps them true.

docs/design.md, "Counts, indexes and events": each script updates the type's
counters, its indexes and the partition's events stream in the same call. After
each transition here, `store_audit.audit` compares them with the stored jobs.
"""

from __future__ import annotations

import pytest
import redis

from jobqueue.model import EnqueueRequest, JobOptions, JobStatus, new_job_ids, partition_of_type
from jobqueue.store.codec import NewJob
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result

from .harness import Harness
from .store_audit import audit
from .test_store import LEASE_MS, start

T = "counted"


@pytest.fixture
def store(private_store: Harness) -> Harness:
    return private_store


@pytest.fixture
def sync(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def assert_true(sync: redis.Redis, store: Harness, job_type: str = T) -> None:
    assert audit(sync, store.keys, job_type) == []


def stats(sync: redis.Redis, store: Harness) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in sync.hgetall(store.keys.queue(T).stats).items()}


def total(counted: dict[str, int], what: str) -> int:
    """A total as GetQueueStats reads it: the folded total plus every minute slot's count."""
    slots = sum(v for k, v in counted.items() if k[0] == what[0] and k[1:].isdigit())
    return counted.get(f"total_{what}", 0) + slots


def events(sync: redis.Redis, store: Harness) -> list[tuple[str, int, int, str, str]]:
    """(id, status, attempt, worker, error) of each job event, in order."""
    found = []
    for _, fields in sync.xrange(store.keys.queue(T).events):
        assert fields[b"type"] == T.encode()
        for job in fields[b"jobs"].decode().split(" "):
            job_id, status, attempt = job.split(":")
            found.append((
                job_id, int(status), int(attempt),
                fields.get(b"worker", b"").decode(), fields.get(b"error", b"").decode(),
            ))  # fmt: skip
    return found


async def test_a_job_life_is_counted_indexed_and_told(
    store: Harness, blocking: OwnConnection, sync: redis.Redis
) -> None:
    job = await store.enqueue(T, b"x", options=JobOptions(max_attempts=2))
    assert_true(sync, store)
    assert stats(sync, store)["pending"] == 1
    running = await start(store, blocking, T)
    assert_true(sync, store)
    assert (await store.transitions.fail(running, "boom", 0)).outcome is Outcome.RETRYING
    assert_true(sync, store)
    await store.transitions.promote(T, 10)
    running = await start(store, blocking, T)
    assert running.attempt == 2
    assert await store.complete(running) == Result(Outcome.OK)
    assert await store.complete(running) == Result(Outcome.OK)  # a replay counts nothing
    assert_true(sync, store)
    counted = stats(sync, store)
    assert (counted["pending"], counted["running"]) == (0, 0)
    assert (counted["total_enqueued"], counted["total_retried"], total(counted, "completed")) == (1, 1, 1)
    assert events(sync, store) == [
        (job.id, int(JobStatus.PENDING), 0, "", ""),
        (job.id, int(JobStatus.RUNNING), 1, "w1", ""),
        (job.id, int(JobStatus.PENDING), 1, "w1", "boom"),
        (job.id, int(JobStatus.RUNNING), 2, "w1", ""),
        (job.id, int(JobStatus.COMPLETED), 2, "w1", ""),
    ]


async def test_dead_letters_cancels_redrives_releases_and_recoveries_are_counted(
    store: Harness, blocking: OwnConnection, sync: redis.Redis
) -> None:
    jobs = await store.enqueue_many([EnqueueRequest(T, b"") for _ in range(6)])
    await store.cancel(jobs[5].id)  # a pending job
    assert_true(sync, store)
    dead = await start(store, blocking, T)
    assert (await store.transitions.fail(dead, "fatal", None)).outcome is Outcome.DEAD_LETTERED
    assert_true(sync, store)
    cancelled = await start(store, blocking, T)
    await store.cancel(cancelled.id)  # a running job
    assert_true(sync, store)
    released = await start(store, blocking, T)
    assert (await store.transitions.release(released)).ok
    assert_true(sync, store)
    crashed = await start(store, blocking, T)
    await store.redis.zadd(store.keys.queue(T).leases, {crashed.id: 0})  # its lease expired
    assert (await store.transitions.recover(T, crashed.id)).outcome is Outcome.RECOVERED
    assert_true(sync, store)
    for job in (dead, cancelled):
        await store.retry(job.id)
        assert_true(sync, store)
    counted = stats(sync, store)
    assert counted["pending"] == 5 and counted["running"] == 0
    assert (total(counted, "failed"), counted["total_cancelled"]) == (1, 2)


async def test_the_last_attempt_recovered_is_a_dead_letter_in_the_index(
    store: Harness, blocking: OwnConnection, sync: redis.Redis
) -> None:
    await store.enqueue(T, b"", options=JobOptions(max_attempts=1))
    crashed = await start(store, blocking, T)
    await store.redis.zadd(store.keys.queue(T).leases, {crashed.id: 0})
    assert (await store.transitions.recover(T, crashed.id)).outcome is Outcome.DEAD_LETTERED
    assert_true(sync, store)
    assert sync.zscore(store.keys.queue(T).failed, crashed.id) is not None


async def test_a_new_minute_trims_the_finished_index_and_moves_old_counts_into_the_total(
    store: Harness, blocking: OwnConnection, sync: redis.Redis
) -> None:
    """The first completion of a minute trims the index to what is still retained, and
    a bucket slot reused for a new minute moves its old count into the total first."""
    await store.enqueue_many([EnqueueRequest(T, b"") for _ in range(3)])
    queue = store.keys.queue(T)
    first = await start(store, blocking, T)
    await store.complete(first)
    sync.zadd(queue.completed, {first.id: 1})  # as if it finished long ago: its retention is over
    second = await start(store, blocking, T)
    await store.complete(second)
    assert sync.zcard(queue.completed) == 2  # the same minute: not trimmed yet
    sync.hset(queue.stats, mapping={f"m{slot}": 0 for slot in range(60)})  # every slot an hour old
    third = await start(store, blocking, T)
    await store.complete(third)
    assert {m.decode() for m in sync.zrange(queue.completed, 0, -1)} == {second.id, third.id}
    counted = stats(sync, store)
    assert counted["total_completed"] == 2  # the old slot's two completions
    assert total(counted, "completed") == 3


async def test_a_paused_type_is_neither_claimed_nor_taken(
    store: Harness, blocking: OwnConnection, sync: redis.Redis
) -> None:
    queue = store.keys.queue(T)
    jobs = await store.enqueue_many([EnqueueRequest(T, b"") for _ in range(3)])
    sync.hset(queue.stats, "paused", 1)
    job_id = await store.pop(blocking, T, 1)
    assert job_id == jobs[0].id
    assert await store.claim(T, job_id, "w1", LEASE_MS) == Result(Outcome.PAUSED)
    assert sync.lrange(queue.ready, -1, -1) == [job_id.encode()]  # back, next in line
    assert sync.llen(queue.popped) == 0
    _, claims, taken = await store.transitions.round(T, "w1", take=10, lease_ms=LEASE_MS)
    assert (claims, taken) == ([], [])
    assert_true(sync, store)
    sync.hdel(queue.stats, "paused")
    assert [job.id for job in [await start(store, blocking, T)]] == [jobs[0].id]


async def test_enqueue_over_the_maximum_depth_is_full_and_stores_nothing(
    store: Harness, sync: redis.Redis
) -> None:
    await store.enqueue_many([EnqueueRequest(T, b"") for _ in range(2)])
    enqueued = store.keys.queue(T)
    before = sync.zcard(enqueued.live)
    jobs = [NewJob(EnqueueRequest(T, b""), "", ()) for _ in range(3)]  # as the enqueuer builds them
    for new, job_id in zip(jobs, new_job_ids(partition_of_type(T), 3), strict=True):
        new.job_id = job_id
    _, outcomes = await store.transitions.enqueue(T, jobs, max_depth=3)
    assert [isinstance(o, int) for o in outcomes] == [True, False, False]
    assert outcomes[1:] == [b"full", b"full"]
    assert sync.zcard(enqueued.live) == before + 1
    assert_true(sync, store)
