"""The scheduler and the reaper as running coroutines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from jobqueue.events import Event
from jobqueue.model import JobStatus

from .conftest import eventually, every_node, subscribers
from .harness import Harness

pytestmark = pytest.mark.redis_targets


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """Transitions driven by the test alone (see `private_store`)."""
    return private_store


@contextlib.asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results


async def ready(store: Harness, job_type: str = "t") -> list[str]:
    return [i.decode() for i in await store.redis.lrange(store.keys.queue(job_type).ready, 0, -1)]


async def test_scheduler_promotes_due_jobs_of_every_type(store: Harness) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    a = await store.enqueue("a", b"", now + 300)
    b = await store.enqueue("b", b"", now + 400)
    async with background(store.scheduler().run()):

        async def both() -> bool:
            return await ready(store, "a") == [a.id] and await ready(store, "b") == [b.id]

        await eventually(both, what="promotion")


async def test_an_earlier_job_wakes_a_sleeping_scheduler(store: Harness) -> None:
    """The scheduler sleeps until the next due job, not on a tick: only the wake-up can beat the hour."""
    now = (await store.enqueue("warmup", b"")).created_at
    await store.enqueue("t", b"", now + 3_600_000)
    async with background(store.scheduler(refresh_s=3600).run()):

        async def sleeping() -> bool:
            # The scheduler has subscribed once it is asleep on the channel.
            return await subscribers(store.redis, store.keys.schedule_channel) == 1

        await eventually(sleeping, what="scheduler subscribed")
        soon = await store.enqueue("t", b"", now + 500)
        await eventually(lambda: _contains(store, soon.id), timeout=10, what="wake-up and promotion")


async def _contains(store: Harness, job_id: str) -> bool:
    return job_id in await ready(store)


async def test_several_schedulers_promote_each_job_exactly_once(store: Harness) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    ids = [(await store.enqueue("t", b"", now + 300 + i % 50)).id for i in range(400)]
    schedulers = [store.scheduler(batch=10).run() for _ in range(4)]
    async with background(*schedulers):

        async def all_ready() -> bool:
            return len(await ready(store)) >= len(ids)

        await eventually(all_ready, what="all promoted")
        assert await store.redis.zcard(store.keys.queue("t").scheduled) == 0
    assert sorted(await ready(store)) == sorted(ids)


async def test_scheduler_survives_a_redis_connection_kill(store: Harness) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    async with background(store.scheduler(refresh_s=0.5).run()):

        async def subscribed() -> bool:
            return await subscribers(store.redis, store.keys.schedule_channel) == 1

        await eventually(subscribed, what="subscription")
        await store.redis.client_kill_filter(_type="pubsub", **every_node(store.redis))
        job = await store.enqueue("t", b"", now + 300)
        await eventually(lambda: _contains(store, job.id), what="promotion after reconnect")


async def test_reaper_brings_back_expired_leases_and_unclaimed_pops(store: Harness, redis_url: str) -> None:
    blocking = store.own_connection()
    try:
        await store.enqueue("t", b"")
        await store.enqueue("t", b"")
        leased_id = await store.pop(blocking, "t", 1)
        assert leased_id is not None
        await store.claimed("t", leased_id, "dead-worker", 100, default_max_attempts=3)
        popped_id = await store.pop(blocking, "t", 1)  # popped, never claimed
    finally:
        await blocking.aclose()
    reaper = store.reaper(reaper_interval_s=0.05, claim_timeout_s=0.2)
    async with background(reaper.run()):

        async def both_back() -> bool:
            return sorted(await ready(store)) == sorted([leased_id, popped_id]) and (
                store.events[Event.RECOVERED],
                store.events[Event.SWEPT],
            ) == (1, 1)

        await eventually(both_back, what="recovery")
    assert (await store.get(leased_id)).status is JobStatus.PENDING
