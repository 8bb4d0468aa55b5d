"""Unique keys (modes WHILE_ACTIVE and DEBOUNCE) in the store: each transition that
ends a job frees its key, duplicates racing in one script call or many find one job,
bad input stores nothing. Through the API and the clients: test_unique_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis

from jobqueue.errors import InvalidInput
from jobqueue.model import Enqueued, EnqueueRequest, Job, JobOptions, JobStatus, UniqueMode
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result
from jobqueue.testing import InlineQueue

from .conftest import CLUSTER_URLS, eventually
from .harness import Harness
from .store_audit import audit

pytestmark = pytest.mark.redis_targets


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """Transitions driven by the test alone (see `private_store`)."""
    return private_store


@pytest.fixture
def sync(redis_url: str) -> redis.Redis:
    """For the audit (tests/store_audit.py), which reads with a blocking client."""
    if redis_url in CLUSTER_URLS:
        return redis.RedisCluster.from_url(redis_url)
    return redis.Redis.from_url(redis_url)


ACTIVE = JobOptions(unique_key="report:42", unique_mode=UniqueMode.WHILE_ACTIVE)
LEASE_MS = 30_000


def debounce(delay_ms: int = 0, key: str = "report:42") -> JobOptions:
    return JobOptions(unique_key=key, unique_mode=UniqueMode.DEBOUNCE, debounce_ms=delay_ms)


async def start(store: Harness, blocking: OwnConnection, lease_ms: int = LEASE_MS, attempts: int = 3) -> Job:
    job_id = await store.pop(blocking, "t", 1)
    assert job_id is not None, "no ready job"
    return await store.claimed("t", job_id, "w1", lease_ms, default_max_attempts=attempts)


async def holder(store: Harness, key: str = "report:42") -> str | None:
    stored = await store.redis.get(store.keys.queue("t").unique(key))
    return stored.decode() if stored else None


async def test_while_active_returns_the_pending_then_the_running_job(
    store: Harness, sync: redis.Redis, blocking: OwnConnection
) -> None:
    first = await store.enqueue("t", b"one", None, ACTIVE)
    assert first.enqueued is Enqueued.CREATED
    assert (first.unique_key, first.unique_mode) == ("report:42", UniqueMode.WHILE_ACTIVE)
    again = await store.enqueue("t", b"two", None, ACTIVE)
    assert (again.id, again.payload, again.enqueued) == (first.id, b"one", Enqueued.EXISTING)
    running = await start(store, blocking)
    during = await store.enqueue("t", b"three", None, ACTIVE)
    assert (during.id, during.status, during.enqueued) == (first.id, JobStatus.RUNNING, Enqueued.EXISTING)
    stored = await store.get(first.id)
    assert (stored.unique_key, stored.unique_mode) == ("report:42", UniqueMode.WHILE_ACTIVE)
    # Another type, or another key, is another job.
    assert (await store.enqueue("other", b"", None, ACTIVE)).enqueued is Enqueued.CREATED
    other_key = JobOptions(unique_key="report:43", unique_mode=UniqueMode.WHILE_ACTIVE)
    assert (await store.enqueue("t", b"", None, other_key)).id != first.id
    await store.complete(running)
    assert await holder(store) is None
    after = await store.enqueue("t", b"four", None, ACTIVE)
    assert after.id != first.id and after.enqueued is Enqueued.CREATED
    assert await holder(store) == after.id
    assert audit(sync, store.keys, "t") == []


async def fail_last(store: Harness, job: Job) -> None:
    assert await store.transitions.fail(job, "boom", None) == Result(Outcome.DEAD_LETTERED)


async def retry_then_fail(store: Harness, job: Job) -> None:
    """A retry keeps the key (the job is still PENDING); its last attempt frees it."""
    assert (await store.transitions.fail(job, "boom", 0)).outcome is Outcome.RETRYING
    assert (await store.enqueue("t", b"", None, ACTIVE)).id == job.id
    assert await store.transitions.promote("t", 10) == (1, None)  # due at once (delay 0)


async def cancel(store: Harness, job: Job) -> None:
    assert await store.cancel(job.id) is JobStatus.RUNNING


async def recover_last(store: Harness, job: Job) -> None:
    async def expired() -> list[str]:
        return await store.inspect.expired_leases("t")

    await eventually(expired, what="lease expiry")
    assert await store.transitions.recover("t", job.id) == Result(Outcome.DEAD_LETTERED)


async def complete(store: Harness, job: Job) -> None:
    [record], _, _ = await store.transitions.round("t", job.worker_id, [job])
    assert record.outcome is Outcome.OK


ENDINGS: dict[str, Callable[[Harness, Job], Awaitable[None]]] = {
    "complete": complete,
    "fail": fail_last,
    "cancel": cancel,
    "recover": recover_last,
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_every_final_transition_frees_the_key(
    store: Harness, sync: redis.Redis, blocking: OwnConnection, ending: str
) -> None:
    job = await store.enqueue("t", b"", None, ACTIVE)
    running = await start(store, blocking, lease_ms=50 if ending == "recover" else LEASE_MS, attempts=1)
    assert await holder(store) == job.id
    await ENDINGS[ending](store, running)
    assert (await store.get(job.id)).status.is_final
    assert await holder(store) is None
    assert audit(sync, store.keys, "t") == []
    assert (await store.enqueue("t", b"", None, ACTIVE)).id != job.id


async def test_a_retry_keeps_the_key_and_the_last_failure_frees_it(
    store: Harness, blocking: OwnConnection
) -> None:
    job = await store.enqueue("t", b"", None, ACTIVE)
    await retry_then_fail(store, await start(store, blocking, attempts=2))
    retried = await start(store, blocking, attempts=2)
    assert retried.attempt == 2
    await fail_last(store, retried)
    assert await holder(store) is None
    assert (await store.enqueue("t", b"", None, ACTIVE)).id != job.id


async def test_a_cancelled_pending_job_frees_its_key_and_a_redrive_does_not_take_it_back(
    store: Harness,
) -> None:
    job = await store.enqueue("t", b"", None, ACTIVE)
    assert await store.cancel(job.id) is JobStatus.PENDING
    assert await holder(store) is None
    assert (await store.retry(job.id)).status is JobStatus.PENDING
    assert await holder(store) is None  # the redriven job runs as a plain one
    successor = await store.enqueue("t", b"", None, ACTIVE)
    assert successor.id != job.id and await holder(store) == successor.id
    # The redriven job ending leaves its successor's key alone.
    assert await store.cancel(job.id) is JobStatus.PENDING
    assert await holder(store) == successor.id
    assert await store.transitions.delete(job.id) == Result(Outcome.OK, JobStatus.CANCELLED)
    assert await holder(store) == successor.id


async def test_the_key_expires_as_a_safety_net_after_the_execution_time(store: Harness) -> None:
    now = (await store.enqueue("other", b"")).created_at
    await store.enqueue("t", b"", now + 3_600_000, ACTIVE)
    ttl = await store.redis.pttl(store.keys.queue("t").unique("report:42"))
    week = 7 * 24 * 3600 * 1000
    assert 3_600_000 + week - 60_000 < ttl <= 3_600_000 + week


async def test_debounce_replaces_the_pending_payload_and_moves_its_time(
    store: Harness, sync: redis.Redis
) -> None:
    first = await store.enqueue("t", b"v1", None, debounce(60_000))
    assert first.execution_time_ms == first.created_at + 60_000
    scheduled = store.keys.queue("t").scheduled
    second = await store.enqueue("t", b"v2", None, debounce(120_000))
    assert (second.id, second.enqueued, second.payload) == (first.id, Enqueued.DEBOUNCED, b"v2")
    assert second.execution_time_ms >= first.created_at + 120_000
    assert await store.redis.zscore(scheduled, first.id) == second.execution_time_ms
    # The request's own execution time wins over the delay; now means due now.
    due = await store.enqueue("t", b"v3", second.created_at, debounce(120_000))
    assert (due.id, due.payload, due.execution_time_ms) == (first.id, b"v3", second.created_at)
    assert await store.redis.zscore(scheduled, first.id) is None
    ready = store.keys.queue("t").ready
    assert [i.decode() for i in await store.redis.lrange(ready, 0, -1)] == [first.id]
    assert (await store.get(first.id)).payload == b"v3"
    assert audit(sync, store.keys, "t") == []


async def test_debounce_of_a_due_job_back_into_the_schedule_skips_its_ready_copy(
    store: Harness, blocking: OwnConnection
) -> None:
    first = await store.enqueue("t", b"v1", None, debounce())
    later = await store.enqueue("t", b"v2", None, debounce(3_600_000))
    assert later.id == first.id and later.status is JobStatus.PENDING
    assert await store.redis.zscore(store.keys.queue("t").scheduled, first.id) == later.execution_time_ms
    popped = await store.pop(blocking, "t", 1)
    assert popped == first.id
    claim = await store.claim("t", first.id, "w1", LEASE_MS)
    assert claim == Result(Outcome.NOT_DUE)  # the copy left in ready: skipped, not run early
    assert (await store.get(first.id)).status is JobStatus.PENDING


async def test_debounce_never_touches_a_running_job(
    store: Harness, sync: redis.Redis, blocking: OwnConnection
) -> None:
    first = await store.enqueue("t", b"v1", None, debounce())
    running = await start(store, blocking)
    second = await store.enqueue("t", b"v2", None, debounce(60_000))
    assert second.id != first.id and second.enqueued is Enqueued.CREATED
    assert (await store.get(first.id)).payload == b"v1"
    assert await holder(store) == second.id
    await store.complete(running)  # the running job's end leaves its successor's key
    assert await holder(store) == second.id
    third = await store.enqueue("t", b"v3", None, debounce(60_000))
    assert (third.id, third.enqueued) == (second.id, Enqueued.DEBOUNCED)
    assert audit(sync, store.keys, "t") == []


@pytest.mark.parametrize("mode", [UniqueMode.WHILE_ACTIVE, UniqueMode.DEBOUNCE])
async def test_concurrent_duplicates_make_one_job(store: Harness, mode: UniqueMode) -> None:
    options = JobOptions(unique_key="race", unique_mode=mode)
    jobs = await asyncio.gather(*(store.enqueue("t", f"p{i}".encode(), None, options) for i in range(50)))
    assert len({job.id for job in jobs}) == 1
    batch = await store.enqueue_many([EnqueueRequest("t", b"", None, options) for _ in range(30)])
    assert {job.id for job in batch} == {jobs[0].id}
    assert len(await store.redis.zrange(store.keys.queue("t").live, 0, -1)) == 1
    assert int(await store.redis.hget(store.keys.queue("t").stats, "pending") or 0) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (JobOptions(unique_key="k"), "unique_mode"),
        (JobOptions(unique_mode=UniqueMode.DEBOUNCE), "unique_key"),
        (JobOptions(unique_key="k", unique_mode=7), "unique_mode"),  # type: ignore[arg-type]
        (JobOptions(unique_key="k", unique_mode=UniqueMode.WHILE_ACTIVE, debounce_ms=5), "debounce_ms"),
        (JobOptions(unique_key="k", unique_mode=UniqueMode.DEBOUNCE, debounce_ms=-1), "debounce_ms"),
        (JobOptions(unique_key="k" * 257, unique_mode=UniqueMode.DEBOUNCE), "unique_key"),
    ],
)
async def test_bad_unique_options_are_refused_before_anything_is_stored(
    store: Harness, options: JobOptions, field: str
) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}"):
        await store.enqueue("t", b"", None, options)
    with pytest.raises(InvalidInput, match=rf"^jobs\[1\]\.{field}"):
        await store.enqueue_many([EnqueueRequest("t"), EnqueueRequest("t", options=options)])
    assert await store.redis.keys(f"{store.settings.prefix}:*") == []


async def _scenario(
    enqueue: Callable[..., Awaitable[Job]], cancel: Callable[[str], Awaitable[object]]
) -> list[tuple[Enqueued, int, bytes]]:
    """Both modes' steps; each answer as (what the enqueue did, which job: 0 the first, ...)."""
    ids: list[str] = []
    seen = []
    for payload, options, then_cancel in [
        (b"a1", ACTIVE, False),
        (b"a2", ACTIVE, True),  # cancelled: the key is free
        (b"a3", ACTIVE, False),
        (b"d1", debounce(60_000, "d"), False),
        (b"d2", debounce(60_000, "d"), False),
    ]:
        job = await enqueue("t", payload, None, options)
        if job.id not in ids:
            ids.append(job.id)
        seen.append((job.enqueued, ids.index(job.id), job.payload))
        if then_cancel:
            await cancel(job.id)
    return seen


async def test_the_inline_queue_has_the_same_semantics(store: Harness) -> None:
    inline = InlineQueue(eager=False)
    expected = [
        (Enqueued.CREATED, 0, b"a1"),
        (Enqueued.EXISTING, 0, b"a1"),
        (Enqueued.CREATED, 1, b"a3"),
        (Enqueued.CREATED, 2, b"d1"),
        (Enqueued.DEBOUNCED, 2, b"d2"),
    ]
    assert await _scenario(inline.enqueue, inline.cancel) == expected
    assert await _scenario(store.enqueue, store.cancel) == expected


async def test_a_key_naming_a_final_or_vanished_job_counts_as_free(store: Harness) -> None:
    """A release missed (a transition that forgot it, a job deleted by hand) does not
    hold the key: enqueue reads the holder's status in the same call."""
    done = await store.enqueue("t", b"")
    assert await store.cancel(done.id) is JobStatus.PENDING
    lock = store.keys.queue("t").unique("report:42")
    for stale in (done.id, "0000" + done.id[4:]):  # final, then a job that is not stored
        await store.redis.set(lock, stale)
        job = await store.enqueue("t", b"", None, ACTIVE)
        assert job.enqueued is Enqueued.CREATED and await holder(store) == job.id
        assert await store.cancel(job.id) is JobStatus.PENDING
