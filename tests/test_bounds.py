"""Every structure jobqueue keeps in Redis is bounded or expires (docs/design.md, "Bounds"):
after a workload, once the retention of its finished jobs has passed, the keyspace is
back to what it was before it: the same keys, kind by kind."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable

import pytest

from jobqueue.model import Job, JobOptions, JobStatus, UniqueMode
from jobqueue.reaper import Reaper
from jobqueue.worker import PermanentError, Worker

from .conftest import eventually
from .harness import Harness

SHORT = {"retention_s": 1.0, "idempotency_window_s": 1.0, "type_idle_s": 0.5}


@pytest.fixture
def soak_store(private_store: Harness) -> Harness:
    return Harness(private_store.redis, dataclasses.replace(private_store.settings, **SHORT))


def every_pass(store: Harness) -> Reaper:
    """A reaper of every type (a server's) that tidies each type at every pass."""
    reaper = store.reaper()
    reaper.upkeep.interval_s = 0.0
    return reaper


async def key_kinds(store: Harness) -> dict[str, int]:
    """The test's keys by kind: `types`, `workers`, or the part after a key's hash tag
    (`job`, `stats`, `idem`, `events`...)."""
    kinds: collections.Counter[str] = collections.Counter()
    async for key in store.redis.scan_iter(match=f"{store.settings.prefix}:*", count=1000):
        rest = key.decode().split(":", 1)[1]
        kinds[rest.split("}:", 1)[1].split(":", 1)[0] if rest.startswith("{") else rest] += 1
    return dict(kinds)


async def handle(job: Job) -> bytes:
    if job.payload == b"fail":
        raise PermanentError("failed on purpose")
    return b"done"


async def run_until(store: Harness, job_type: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Runs a worker of `job_type` on `store` until `done`, then stops it (it leaves)."""
    worker = Worker(job_type, handle, settings=store.settings, heartbeat_s=0.1, run_reaper=False)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        await eventually(done, timeout=30, what=f"the {job_type} jobs finished")
    finally:
        stop.set()
        await serving


async def back_to(store: Harness, reaper: Reaper, baseline: dict[str, int]) -> dict[str, int]:
    async def settled() -> dict[str, int] | None:
        await reaper.reap_once()
        kinds = await key_kinds(store)
        return kinds if kinds == baseline else None

    return await eventually(settled, timeout=30, interval=0.1, what=f"the keyspace back to {baseline}")


async def test_the_keyspace_returns_to_its_baseline_after_retention(soak_store: Harness) -> None:
    store, reaper = soak_store, every_pass(soak_store)
    assert await key_kinds(store) == {}
    # Warm-up: one job through its life; what stays is its partition's events stream.
    warm = await store.enqueue("soak")
    await run_until(store, "soak", lambda: finished(store, [warm.id]))
    baseline = await back_to(store, reaper, {"events": 1})

    now_ms = int(time.time() * 1000)
    jobs = [await store.enqueue("soak", b"ok") for _ in range(30)]
    jobs += [await store.enqueue("soak", b"fail") for _ in range(10)]
    jobs += [await store.enqueue("soak", b"ok", now_ms + 300) for _ in range(5)]  # scheduled
    keyed = [
        await store.enqueue("soak", b"ok", options=JobOptions(idempotency_key=f"k{i % 5}")) for i in range(10)
    ]
    assert len({job.id for job in keyed}) == 5
    unique = JobOptions(unique_key="u", unique_mode=UniqueMode.WHILE_ACTIVE)
    jobs += [await store.enqueue("soak", b"ok", now_ms + 300, unique) for _ in range(3)]  # one job
    cancelled = [await store.enqueue("soak", b"ok", now_ms + 3_600_000) for _ in range(10)]
    for job in cancelled:
        await store.cancel(job.id)
    during = await key_kinds(store)
    assert during["job"] == 61 and during["idem"] == 5 and during["unique"] == 1, during
    await run_until(store, "soak", lambda: finished(store, [j.id for j in jobs + keyed]))
    assert (await store.get(jobs[30].id)).status is JobStatus.FAILED

    assert await back_to(store, reaper, baseline) == {"events": 1}
    events = store.keys.queue("soak").events
    assert 0 < await store.redis.xlen(events) <= 10_000 + 100  # capped (include/changes.lua)


def later() -> int:
    """An execution time an hour from now."""
    return int(time.time() * 1000) + 3_600_000


async def finished(store: Harness, job_ids: list[str]) -> bool:
    statuses = [(await store.get(job_id)).status for job_id in job_ids]
    return all(status.is_final for status in statuses)


async def test_a_forgotten_type_enqueued_again_is_registered_again(soak_store: Harness) -> None:
    """The producer registered the type a moment ago (it does so once per TYPE_REFRESH_S):
    its next enqueue does not, and the reaper that forgot the type registers it again."""
    store, reaper = soak_store, every_pass(soak_store)
    job = await store.enqueue("again", b"", later())  # cancelled, no id lingers in `ready`
    await store.cancel(job.id)

    async def forgotten() -> bool:
        await reaper.reap_once()
        return not await store.redis.sismember(store.keys.types, "again")

    await eventually(forgotten, timeout=30, what="the idle type forgotten")
    assert not await store.redis.exists(store.keys.queue("again").stats)
    await store.enqueue("again")
    await reaper.reap_once()
    assert await store.redis.sismember(store.keys.types, "again")


async def test_an_enqueue_since_the_type_was_found_empty_keeps_it(soak_store: Harness) -> None:
    """tidy forgets a type only if no job was enqueued since the caller found it empty,
    even if the type is empty again (the job was cancelled, and its index trimmed)."""
    store = soak_store
    first = await store.enqueue("busy", b"", later())
    await store.cancel(first.id)
    seen = await eventually(lambda: total_when_empty(store, "busy"), timeout=30, what="the type empty")
    second = await store.enqueue("busy", b"", later())
    await store.cancel(second.id)
    assert await eventually(lambda: total_when_empty(store, "busy"), timeout=30) == seen + 1
    assert await store.transitions.tidy("busy", forget_if_total=seen) == -1
    assert await store.redis.hget(store.keys.queue("busy").stats, "total_enqueued") == b"2"
    assert await store.transitions.tidy("busy", forget_if_total=seen + 1) == 1
    assert not await store.redis.exists(store.keys.queue("busy").stats)


async def total_when_empty(store: Harness, job_type: str) -> int | None:
    """tidy's answer: the type's total_enqueued once it holds nothing (its finished
    indexes trimmed to retention), else None."""
    total = await store.transitions.tidy(job_type)
    return total if total >= 0 else None


async def test_a_paused_type_is_never_forgotten(soak_store: Harness) -> None:
    """Of two idle types, the paused one stays (with its `paused`) after the other is forgotten."""
    store, reaper = soak_store, every_pass(soak_store)
    for job_type in ("paused", "unpaused"):
        job = await store.enqueue(job_type, b"", later())
        await store.cancel(job.id)
    await store.store.controls.pause("paused")

    async def unpaused_forgotten() -> bool:
        await reaper.reap_once()
        return not await store.redis.sismember(store.keys.types, "unpaused")

    await eventually(unpaused_forgotten, timeout=30, what="the unpaused idle type forgotten")
    assert await store.transitions.tidy("paused") == -1
    assert await store.redis.sismember(store.keys.types, "paused")
    assert await store.redis.hget(store.keys.queue("paused").stats, "paused") == b"1"
