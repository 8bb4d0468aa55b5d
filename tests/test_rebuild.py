"""`jobqueue rebuild`: a damaged store's counters and indexes recomputed from its jobs
(store/rebuild.py), checked with tests/store_audit.py, the same oracle the transitions'
tests use: it compares `stats` and the indexes with every stored job."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator

import pytest
import redis

from jobqueue.model import Job, JobOptions, JobStatus, new_job_ids, partition_of_type
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result
from jobqueue.store.rebuild import INDEXES, Rebuilder
from jobqueue.worker import Worker

from .conftest import CLUSTER_URLS, eventually, redis_env
from .harness import Harness
from .store_audit import audit
from .test_cli import jobqueue
from .test_store import start

pytestmark = pytest.mark.redis_targets

T = "rebuilt"
HOUR_MS = 3_600_000


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """A keyspace of the test's own: no server's scheduler or reaper races the damage."""
    return private_store


@pytest.fixture
def sync(redis_url: str) -> redis.Redis:
    """The audit's blocking client."""
    client_class = redis.RedisCluster if redis_url in CLUSTER_URLS else redis.Redis
    return client_class.from_url(redis_url)


def rebuild(store: Harness, redis_url: str, *options: str) -> dict[str, object]:
    """Runs `jobqueue rebuild --json` on the store's keyspace; its report of the type."""
    env = {**os.environ, **redis_env(redis_url), "JOBQUEUE_PREFIX": store.settings.prefix}
    result = jobqueue("rebuild", "--type", T, "--json", *options, env=env)
    assert result.returncode == 0, result
    assert f"rebuild {T}: job keys:" in result.stderr  # the progress
    report = json.loads(result.stdout)
    assert report["dry_run"] == ("--dry-run" in options)
    [of_type] = report["types"]
    assert of_type["type"] == T
    return of_type  # type: ignore[no-any-return]


async def jobs_in_every_state(store: Harness, blocking: OwnConnection) -> dict[str, Job]:
    """One job COMPLETED, FAILED, RUNNING, CANCELLED and EXPIRED, two PENDING and due,
    one PENDING and scheduled, all of type T."""
    for name in ("completed", "failed", "running", "cancelled"):
        await store.enqueue(T, name.encode(), options=JobOptions(max_attempts=1))
    jobs = {"completed": await start(store, blocking, T)}
    assert await store.complete(jobs["completed"]) == Result(Outcome.OK)
    jobs["failed"] = await start(store, blocking, T)
    assert (await store.transitions.fail(jobs["failed"], "boom", None)).outcome is Outcome.DEAD_LETTERED
    jobs["running"] = await start(store, blocking, T)
    [next_ready] = await store.redis.lrange(store.keys.queue(T).ready, -1, -1)
    jobs["cancelled"] = await store.get(next_ready.decode())
    await store.cancel(jobs["cancelled"].id)
    jobs["pending"] = await store.enqueue(T, b"due")
    jobs["pending2"] = await store.enqueue(T, b"due")
    jobs["scheduled"] = await store.enqueue(T, b"later", int(time.time() * 1000) + HOUR_MS)
    expiring = await store.enqueue(T, b"", None, JobOptions(expires_in_ms=50))
    await eventually(lambda: _expired(store, expiring.id), what="the expiry passed and expire ended the job")
    jobs["expired"] = expiring
    for name, status in (("completed", JobStatus.COMPLETED), ("failed", JobStatus.FAILED),
                         ("running", JobStatus.RUNNING), ("cancelled", JobStatus.CANCELLED),
                         ("pending", JobStatus.PENDING), ("scheduled", JobStatus.PENDING),
                         ("expired", JobStatus.EXPIRED)):  # fmt: skip
        assert (await store.get(jobs[name].id)).status is status, name
    return jobs


async def _expired(store: Harness, job_id: str) -> bool:
    return await store.transitions.expire(T, [job_id]) == [job_id]


async def damage(store: Harness, jobs: dict[str, Job]) -> str:
    """Loses the type's counters and indexes, then adds wrong entries: an id with no job in
    `live`, a PENDING job in `completed`. Returns the id with no job."""
    queue = store.keys.queue(T)
    await store.redis.delete(queue.stats, *(getattr(queue, index) for index in INDEXES))
    [ghost] = new_job_ids(partition_of_type(T), 1)
    await store.redis.zadd(queue.live, {ghost: 1})
    await store.redis.zadd(queue.completed, {jobs["pending"].id: 1})
    return ghost


async def snapshot(store: Harness) -> dict[str, bytes | None]:
    """The type's counters and indexes, as DUMP has them."""
    queue = store.keys.queue(T)
    names = [queue.stats, *(getattr(queue, index) for index in INDEXES)]
    return {name: await store.redis.dump(name) for name in names}


async def test_a_store_without_counters_and_indexes_is_rebuilt_and_a_second_run_fixes_nothing(
    store: Harness, blocking: OwnConnection, sync: redis.Redis, redis_url: str
) -> None:
    jobs = await jobs_in_every_state(store, blocking)
    assert audit(sync, store.keys, T) == []
    await damage(store, jobs)
    assert len(audit(sync, store.keys, T)) == 7  # the two counters and the five indexes

    report = await asyncio.to_thread(rebuild, store, redis_url)
    assert report["added"] == {"live": 4, "completed": 1, "failed": 1, "cancelled": 1, "expired": 1}
    assert report["removed"] == {"live": 1, "completed": 1, "failed": 0, "cancelled": 0, "expired": 0}
    assert report["pending"] == {"stored": 0, "counted": 3}
    assert report["running"] == {"stored": 0, "counted": 1}
    assert audit(sync, store.keys, T) == []
    # What the reads show again: the counts, and the lists.
    [counts] = (await store.store.stats.read(T)).queues
    assert (counts.pending, counts.running, counts.completed, counts.failed) == (3, 1, 1, 1)
    assert (counts.cancelled, counts.expired) == (1, 1)

    again = await asyncio.to_thread(rebuild, store, redis_url)
    assert sum(again["added"].values()) + sum(again["removed"].values()) == 0  # type: ignore[attr-defined]
    assert again["rescored"] == 0 and again["pending"] == {"stored": 3, "counted": 3}


async def test_dry_run_changes_nothing_and_reports_the_differences(
    store: Harness, blocking: OwnConnection, sync: redis.Redis, redis_url: str
) -> None:
    jobs = await jobs_in_every_state(store, blocking)
    await damage(store, jobs)
    problems = audit(sync, store.keys, T)
    before = await snapshot(store)

    report = await asyncio.to_thread(rebuild, store, redis_url, "--dry-run")
    assert await snapshot(store) == before
    assert audit(sync, store.keys, T) == problems
    assert report["added"] == {"live": 4, "completed": 1, "failed": 1, "cancelled": 1, "expired": 1}
    assert report["removed"] == {"live": 1, "completed": 1, "failed": 0, "cancelled": 0, "expired": 0}
    assert report["pending"] == {"stored": 0, "counted": 3}
    assert report["running"] == {"stored": 0, "counted": 1}


async def test_the_text_output_says_what_it_fixed(
    store: Harness, blocking: OwnConnection, redis_url: str
) -> None:
    jobs = await jobs_in_every_state(store, blocking)
    await damage(store, jobs)
    env = {**os.environ, **redis_env(redis_url), "JOBQUEUE_PREFIX": store.settings.prefix}
    dry = await asyncio.to_thread(jobqueue, "rebuild", "--dry-run", "--count", "2", env=env)
    assert dry.returncode == 0, dry
    assert dry.stdout.startswith(f"{T}: ") and "would fix: live +4 -1, completed +1 -1" in dry.stdout
    assert "pending 0 -> 3, running 0 -> 1" in dry.stdout
    done = await asyncio.to_thread(jobqueue, "rebuild", env=env)  # every registered type
    assert "fixed: live +4 -1" in done.stdout
    again = await asyncio.to_thread(jobqueue, "rebuild", env=env)
    assert again.stdout.strip() == f"{T}: 8 job keys read; nothing to fix"


def test_bad_options_are_refused_naming_them() -> None:
    bad_type = jobqueue("rebuild", "--type", "no spaces")
    assert bad_type.returncode == 2 and "--type" in bad_type.stderr, bad_type
    bad_count = jobqueue("rebuild", "--count", "0")
    assert bad_count.returncode == 2 and "--count" in bad_count.stderr, bad_count
    nobody = jobqueue("rebuild", "--redis-url", "redis://:secret@127.0.0.1:1/0")
    assert nobody.returncode == 1 and "jobqueue: Redis at redis://" in nobody.stderr, nobody
    assert "secret" not in nobody.stderr and "Traceback" not in nobody.stderr


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_rebuild_beside_a_draining_worker_leaves_the_store_true(
    store: Harness, sync: redis.Redis
) -> None:
    """Jobs change state while the rebuild reads them (no run ends before it has begun):
    each repair is atomic, the transitions keep what it repaired, and the counters are
    set from the indexes at one instant, at the end. Without the rebuild, the drain
    would take `pending` below zero."""
    for _ in range(4):
        await asyncio.gather(*(store.enqueue(T, b"") for _ in range(50)))
    queue = store.keys.queue(T)
    await store.redis.delete(queue.stats, queue.live)
    rebuilding = asyncio.Event()
    done = 0

    async def handler(job: Job) -> None:
        nonlocal done
        await rebuilding.wait()
        done += 1

    def progress(job_type: str, what: str, seen: int) -> None:
        rebuilding.set()

    worker = Worker(T, handler, settings=store.settings, concurrency=8, heartbeat_s=0.1)
    async with serving(worker):
        report = await Rebuilder(store.redis, store.keys).rebuild(T, count=5, progress=progress)

        async def drained() -> bool:
            return await store.redis.zcard(queue.completed) == 200

        await eventually(drained, timeout=60, what="the worker drained the type")
    assert report.jobs_seen >= 1 and done == 200
    assert audit(sync, store.keys, T) == []
