"""Each state transition (one Lua script each) against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from jobqueue.errors import InvalidInput, JobAlreadyFinished, JobNotFound, PayloadTooLarge
from jobqueue.model import EnqueueRequest, Job, JobOptions, JobStatus, new_job_id, partition_of_type
from jobqueue.settings import Settings
from jobqueue.store.connection import OwnConnection
from jobqueue.store.keys import Keyspace
from jobqueue.store.outcomes import OK, Outcome, Result

from .conftest import eventually
from .harness import Harness

pytestmark = pytest.mark.redis_targets


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """Transitions driven by the test alone (see `private_store`)."""
    return private_store


LEASE_MS = 30_000
LIVENESS_MS = 5_000


async def start(
    store: Harness, blocking: OwnConnection, job_type: str = "t", lease_ms: int = LEASE_MS
) -> Job:
    """Pops and claims the next ready job of `job_type`, as a worker would."""
    job_id = await store.pop(blocking, job_type, 1)
    assert job_id is not None, "no ready job"
    return await store.claimed(job_type, job_id, "w1", lease_ms, default_max_attempts=3)


async def ready_ids(store: Harness, job_type: str = "t") -> list[str]:
    return [i.decode() for i in await store.redis.lrange(store.keys.queue(job_type).ready, 0, -1)]


# -- enqueue ------------------------------------------------------------------


async def test_enqueue_now_goes_straight_to_the_ready_list(store: Harness) -> None:
    job = await store.enqueue("t", b"\x00payload")
    assert uuid.UUID(job.id).version == 4
    assert job.id.startswith(partition_of_type("t"))
    assert job.status is JobStatus.PENDING
    assert job.execution_time_ms == job.created_at == job.updated_at > 0
    assert await ready_ids(store) == [job.id]
    assert await store.redis.zcard(store.keys.queue("t").scheduled) == 0
    assert await store.get(job.id) == job
    assert await store.inspect.job_types() == {"t"}


async def test_enqueue_later_goes_to_the_schedule(store: Harness) -> None:
    now = (await store.enqueue("t", b"")).created_at
    later = await store.enqueue("t", b"", now + 60_000)
    assert later.execution_time_ms == now + 60_000
    assert later.id not in await ready_ids(store)
    assert await store.redis.zscore(store.keys.queue("t").scheduled, later.id) == now + 60_000


async def test_enqueue_in_the_past_is_ready_and_keeps_its_time(store: Harness) -> None:
    job = await store.enqueue("t", b"", 1_000)
    assert job.execution_time_ms == 1_000
    assert await ready_ids(store) == [job.id]
    assert (await store.get(job.id)).execution_time_ms == 1_000


@pytest.mark.parametrize("bad", ["", " ", "a b", "tab\t", "{tag}", "new\nline", "x" * 129, "ü"])
async def test_enqueue_refuses_bad_types(store: Harness, bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^type: "):
        await store.enqueue(bad, b"")
    assert await store.inspect.job_types() == set()


async def test_enqueue_accepts_every_allowed_character(store: Harness) -> None:
    job = await store.enqueue("Az09_.:-" + "x" * 120, b"")
    assert len(job.type) == 128


async def test_enqueue_refuses_bad_times_and_big_payloads(store: Harness) -> None:
    with pytest.raises(InvalidInput, match=r"^execution_time_ms: "):
        await store.enqueue("t", b"", -1)
    with pytest.raises(InvalidInput, match=r"^execution_time_ms: "):
        await store.enqueue("t", b"", 10**16)
    with pytest.raises(PayloadTooLarge, match=r"^payload: "):
        await store.enqueue("t", b"x" * (store.settings.max_payload_bytes + 1))
    await store.enqueue("t", b"x" * store.settings.max_payload_bytes)


async def test_get_and_cancel_check_ids(store: Harness) -> None:
    for call in (store.get, store.cancel):
        with pytest.raises(InvalidInput, match=r"^id: "):
            await call("not-a-uuid")
        with pytest.raises(InvalidInput, match=r"^id: "):
            await call("")
        with pytest.raises(JobNotFound):
            await call(str(uuid.uuid4()))
    job = await store.enqueue("t", b"")
    assert (await store.get(job.id.upper())).id == job.id


# -- the key layout -----------------------------------------------------------


def hash_tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_every_key_of_a_job_and_its_queue_shares_one_hash_tag() -> None:
    keys = Keyspace("p")
    tag = partition_of_type("email")
    queue = keys.queue("email")
    job_key = keys.job(new_job_id(tag))
    every = [*queue.named().values(), queue.held("a-worker"), queue.idempotency("any {key}")]
    assert {hash_tag(k) for k in every} == {tag}
    assert hash_tag(job_key) == tag
    assert all(k.startswith("p:") for k in (job_key, keys.types))


# -- promote --------------------------------------------------------------------


async def test_promote_moves_only_due_jobs_earliest_first(store: Harness) -> None:
    now = (await store.enqueue("other", b"")).created_at
    due_late = await store.enqueue("t", b"", now + 200)
    due_early = await store.enqueue("t", b"", now + 100)
    future = await store.enqueue("t", b"", now + 3_600_000)
    moved, delay = await store.transitions.promote("t", 1000)
    assert moved == 0
    assert delay is not None and 0 < delay <= 100

    async def promoted() -> bool:
        await store.transitions.promote("t", 1000)
        return len(await ready_ids(store)) == 2

    await eventually(promoted, what="both due jobs promoted")
    # Workers pop from the right: the earlier job comes out first.
    assert await ready_ids(store) == [due_late.id, due_early.id]
    moved, delay = await store.transitions.promote("t", 1000)
    assert moved == 0 and delay is not None and delay > 3_500_000
    assert await store.redis.zrange(store.keys.queue("t").scheduled, 0, -1) == [future.id.encode()]


async def test_promote_reports_the_wait_to_the_microsecond(store: Harness) -> None:
    """A wait rounded to whole ms would make a scheduler sleep up to 1 ms too long."""

    async def redis_time_ms() -> float:
        seconds, micros = await store.redis.time()
        return seconds * 1000 + micros / 1000

    due = int(await redis_time_ms()) + 1000
    await store.enqueue("t", b"", due)
    for _ in range(5):
        before = await redis_time_ms()
        moved, delay = await store.transitions.promote("t", 1000)
        after = await redis_time_ms()
        assert moved == 0 and delay is not None
        assert due - after <= delay <= due - before


async def test_promote_reports_no_next_job(store: Harness) -> None:
    assert await store.transitions.promote("t", 1000) == (0, None)


async def test_several_schedulers_promote_each_job_once(store: Harness) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    ids = {(await store.enqueue("t", b"", now + 300)).id for _ in range(300)}

    async def scheduler() -> None:
        while len(await ready_ids(store)) < len(ids):
            await store.transitions.promote("t", limit=7)

    await asyncio.wait_for(asyncio.gather(*(scheduler() for _ in range(4))), 20)
    ready = await ready_ids(store)
    assert sorted(ready) == sorted(ids)  # each id exactly once


# -- claim, heartbeat, finish ---------------------------------------------------


async def test_claim_starts_a_leased_run(store: Harness, blocking: OwnConnection) -> None:
    queued = await store.enqueue("t", b"data")
    job = await start(store, blocking)
    assert job.id == queued.id and job.payload == b"data"
    assert job.status is JobStatus.RUNNING
    assert (job.attempt, job.lease_token, job.worker_id) == (1, 1, "w1")
    assert job.started_at >= queued.created_at and job.updated_at == job.started_at
    lease = await store.redis.zscore(store.keys.queue("t").leases, job.id)
    assert lease == job.started_at + LEASE_MS
    assert await store.redis.llen(store.keys.queue("t").popped) == 0


async def test_claim_skips_cancelled_missing_and_gone_ids(store: Harness, blocking: OwnConnection) -> None:
    cancelled = await store.enqueue("t", b"")
    await store.cancel(cancelled.id)
    expired = await store.enqueue("t", b"")
    await store.redis.delete(store.keys.job(expired.id))
    assert await store.pop(blocking, "t", 1) == cancelled.id
    assert await store.claim("t", cancelled.id, "w", LEASE_MS) == Result(
        Outcome.WRONG_STATE, JobStatus.CANCELLED
    )
    assert await store.pop(blocking, "t", 1) == expired.id
    assert await store.claim("t", expired.id, "w", LEASE_MS) == Result(Outcome.NOT_FOUND)
    assert await store.claim("t", expired.id, "w", LEASE_MS) == Result(Outcome.GONE)
    assert await store.redis.llen(store.keys.queue("t").popped) == 0


async def test_pop_blocks_until_a_job_arrives(store: Harness, blocking: OwnConnection) -> None:
    waiting = asyncio.create_task(store.pop(blocking, "t", 10))
    await asyncio.sleep(0.2)  # let the pop block; what matters is that it is woken below
    assert not waiting.done()
    job = await store.enqueue("t", b"")
    assert await asyncio.wait_for(waiting, 5) == job.id


async def test_pop_times_out_empty(store: Harness, blocking: OwnConnection) -> None:
    assert await store.pop(blocking, "t", 0.05) is None


async def test_heartbeat_extends_held_leases_and_reports_lost_ones(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    await store.enqueue("t", b"")
    first = await start(store, blocking, lease_ms=1_000)
    second = await start(store, blocking, lease_ms=1_000)
    await store.cancel(second.id)
    held = [(first.id, first.lease_token), (second.id, second.lease_token)]
    assert (await store.transitions.heartbeat("t", "w1", held, 60_000, LIVENESS_MS)).lost == [
        (second.id, JobStatus.CANCELLED)
    ]
    lease = await store.redis.zscore(store.keys.queue("t").leases, first.id)
    assert lease is not None and lease > first.started_at + 50_000
    queue = store.keys.queue("t")
    assert await store.redis.smembers(queue.held("w1")) == {first.id.encode()}  # the lost one left
    alive_until = await store.redis.zscore(queue.workers, "w1")
    assert alive_until is not None and alive_until > first.started_at + LIVENESS_MS - 1000
    assert (
        await store.transitions.heartbeat("t", "w1", [(first.id, first.lease_token + 1)], 60_000, LIVENESS_MS)
    ).lost == [(first.id, JobStatus.RUNNING)]
    assert (await store.transitions.heartbeat("t", "w1", [], 1, LIVENESS_MS)).lost == []


async def test_complete_sets_retention_and_clears_the_lease(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    assert await store.complete(job) == OK
    done = await store.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.finished_at >= job.started_at and done.updated_at == done.finished_at
    ttl = await store.redis.pttl(store.keys.job(job.id))
    assert store.settings.retention_ms - 60_000 < ttl <= store.settings.retention_ms
    assert await store.redis.zcard(store.keys.queue("t").leases) == 0
    assert await store.complete(job) == OK  # a retry changes nothing
    assert (await store.get(job.id)).finished_at == done.finished_at
    assert await store.transitions.fail(job, "x", None) == Result(Outcome.STALE, JobStatus.COMPLETED)


async def test_complete_takes_the_next_batch_in_the_same_call(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    later = [(await store.enqueue("t", b"")).id for _ in range(3)]
    queue = store.keys.queue("t")
    outcomes, _, taken = await store.transitions.round("t", job.worker_id, [job], take=2)
    assert outcomes == [OK] and taken == later[:2]  # oldest first
    assert (await store.get(job.id)).status is JobStatus.COMPLETED
    assert [i.decode() for i in await store.redis.lrange(queue.popped, 0, -1)] == later[1::-1]
    assert await ready_ids(store) == later[2:]
    assert await store.transitions.round("t", job.worker_id, take=5) == ([], [], later[2:])
    assert await store.transitions.round("t", job.worker_id, take=5) == ([], [], [])  # nothing ready
    assert await store.transitions.round("t", job.worker_id, [job]) == ([OK], [], [])  # a replay


async def test_a_round_records_claims_what_the_last_one_took_and_takes_more(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    later = [(await store.enqueue("t", b"")).id for _ in range(4)]
    queue = store.keys.queue("t")
    _, _, taken = await store.transitions.round("t", "w2", take=2)
    assert taken == later[:2]

    outcomes, claims, taken = await store.transitions.round(
        "t", job.worker_id, [job], claim=[*later[:2], later[0]], take=5, lease_ms=LEASE_MS, via=blocking
    )
    assert outcomes == [OK] and (await store.get(job.id)).status is JobStatus.COMPLETED
    assert [(c.id, c.status, c.attempt, c.worker_id) for c in claims[:2] if isinstance(c, Job)] == [
        (i, JobStatus.RUNNING, 1, job.worker_id) for i in later[:2]
    ]
    assert claims[2] == Result(Outcome.GONE)  # claimed already: out of popped
    assert taken == later[2:]  # after the claims: popped now holds only these
    assert [i.decode() for i in await store.redis.lrange(queue.popped, 0, -1)] == later[:1:-1]
    assert await store.redis.smembers(queue.held(job.worker_id)) == {i.encode() for i in later[:2]}


async def test_give_back_returns_taken_ids_next_in_line_in_their_order(store: Harness) -> None:
    ids = [(await store.enqueue("t", b"")).id for _ in range(4)]
    _, _, taken = await store.transitions.round("t", "w", take=3)
    assert taken == ids[:3]
    await store.claim("t", ids[1], "w", LEASE_MS)  # no longer the worker's to give back
    assert await store.transitions.give_back("t", taken) == 2
    assert await store.redis.llen(store.keys.queue("t").popped) == 0
    assert await ready_ids(store) == [ids[3], ids[2], ids[0]]  # popped from the right: ids[0] next


async def test_fail_stores_the_error(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    assert await store.transitions.fail(job, "ValueError: boom", None) == Result(Outcome.DEAD_LETTERED)
    failed = await store.get(job.id)
    assert (failed.status, failed.last_error) == (JobStatus.FAILED, "ValueError: boom")
    assert 0 < await store.redis.pttl(store.keys.job(job.id)) <= store.settings.retention_ms


async def test_retention_is_configurable(redis: Redis, blocking: OwnConnection) -> None:
    store = Harness(redis, Settings(retention_s=5.0))
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    await store.complete(job)
    assert 0 < await redis.pttl(store.keys.job(job.id)) <= 5_000
    pending = await store.enqueue("t", b"")
    assert await redis.pttl(store.keys.job(pending.id)) == -1  # unfinished jobs never expire


# -- cancel -------------------------------------------------------------------------


async def test_cancel_pending_scheduled_job(store: Harness) -> None:
    now = (await store.enqueue("x", b"")).created_at
    job = await store.enqueue("t", b"", now + 60_000)
    assert await store.cancel(job.id) is JobStatus.PENDING
    cancelled = await store.get(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.updated_at == cancelled.finished_at >= job.updated_at
    assert cancelled.execution_time_ms == job.execution_time_ms
    assert await store.redis.zcard(store.keys.queue("t").scheduled) == 0
    assert 0 < await store.redis.pttl(store.keys.job(job.id)) <= store.settings.retention_ms
    assert await store.cancel(job.id) is JobStatus.CANCELLED  # idempotent


async def test_cancel_running_job_takes_its_lease(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    assert await store.cancel(job.id) is JobStatus.RUNNING
    assert await store.redis.zcard(store.keys.queue("t").leases) == 0
    assert await store.complete(job) == Result(Outcome.STALE, JobStatus.CANCELLED)
    assert (await store.get(job.id)).status is JobStatus.CANCELLED


async def test_cancel_finished_job_is_refused(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    await store.transitions.fail(job, "x", None)
    with pytest.raises(JobAlreadyFinished, match="FAILED"):
        await store.cancel(job.id)


async def test_cancel_racing_a_claim_never_runs_a_cancelled_job(
    store: Harness, blocking: OwnConnection
) -> None:
    for _ in range(100):
        job = await store.enqueue("t", b"")
        job_id = await store.pop(blocking, "t", 1)
        assert job_id == job.id
        claimed, _ = await asyncio.gather(store.claim("t", job_id, "w", LEASE_MS), store.cancel(job_id))
        assert (await store.get(job_id)).status is JobStatus.CANCELLED
        if isinstance(claimed, Job):  # the claim won: the run is fenced off
            assert await store.complete(claimed) != OK
            assert (
                await store.transitions.heartbeat(
                    "t", "w", [(job_id, claimed.lease_token)], LEASE_MS, LIVENESS_MS
                )
            ).lost == [(job_id, JobStatus.CANCELLED)]
    assert await store.redis.zcard(store.keys.queue("t").leases) == 0


# -- release, recover, sweep ------------------------------------------------------------


async def test_release_hands_the_job_back_first_in_line(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    other = await store.enqueue("t", b"")
    assert await store.transitions.release(job) == OK
    back = await store.get(job.id)
    assert (back.status, back.attempt) == (JobStatus.PENDING, 0)
    assert await store.pop(blocking, "t", 1) == job.id  # ahead of the newer job
    assert await ready_ids(store) == [other.id]
    assert await store.transitions.release(job) == Result(Outcome.STALE, JobStatus.PENDING)


async def test_expired_lease_is_recovered_and_the_old_holder_fenced_off(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    old = await start(store, blocking, lease_ms=50)
    assert await store.transitions.recover("t", old.id) == Result(Outcome.ALIVE)

    async def expired() -> list[str]:
        return await store.inspect.expired_leases("t")

    assert await eventually(expired, what="lease expiry") == [old.id]
    assert await store.transitions.recover("t", old.id) == Result(Outcome.RECOVERED)
    recovered = await store.get(old.id)
    assert recovered.status is JobStatus.PENDING
    assert "lease expired" in recovered.last_error and "w1" in recovered.last_error
    new = await start(store, blocking)
    assert (new.attempt, new.lease_token) == (2, 2)
    # The stale holder can neither finish, fail, release nor keep the job.
    assert await store.complete(old) == Result(Outcome.STALE, JobStatus.RUNNING)
    assert await store.transitions.fail(old, "late", None) == Result(Outcome.STALE, JobStatus.RUNNING)
    assert await store.transitions.release(old) == Result(Outcome.STALE, JobStatus.RUNNING)
    assert (
        await store.transitions.heartbeat("t", "w1", [(old.id, old.lease_token)], LEASE_MS, LIVENESS_MS)
    ).lost == [(old.id, JobStatus.RUNNING)]
    assert await store.complete(new) == OK


async def test_recover_drops_a_lease_without_a_running_job(store: Harness) -> None:
    leases = store.keys.queue("t").leases
    await store.redis.zadd(leases, {partition_of_type("t") + str(uuid.uuid4())[4:]: 1})
    [orphan] = await store.inspect.expired_leases("t")
    assert await store.transitions.recover("t", orphan) == Result(Outcome.NOT_RUNNING)
    assert await store.redis.zcard(leases) == 0


async def test_popped_but_unclaimed_id_is_swept_back_after_the_claim_timeout(
    store: Harness, blocking: OwnConnection
) -> None:
    job = await store.enqueue("t", b"")
    assert await store.pop(blocking, "t", 1) == job.id  # ...and the worker dies here
    assert await store.transitions.sweep_popped("t", stall_ms=100) == 0  # first sight: noted

    async def swept() -> int:
        return await store.transitions.sweep_popped("t", stall_ms=100)

    assert await eventually(swept, what="sweep") == 1
    assert await ready_ids(store) == [job.id]
    assert await store.claim("t", job.id, "late", LEASE_MS) == Result(Outcome.GONE)
    assert (await start(store, blocking)).id == job.id
    assert await store.redis.hlen(store.keys.queue("t").suspects) == 0


async def test_sweep_leaves_promptly_claimed_ids_alone(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job_id = await store.pop(blocking, "t", 1)
    assert await store.transitions.sweep_popped("t", stall_ms=0) == 0  # noted, not yet stalled
    assert job_id is not None
    await store.claimed("t", job_id, "w", LEASE_MS)
    assert await store.transitions.sweep_popped("t", stall_ms=0) == 0
    assert await store.redis.hlen(store.keys.queue("t").suspects) == 0


# -- enqueue_many ------------------------------------------------------------------------


async def test_concurrent_enqueues_share_round_trips(store: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    enqueue = store.transitions.enqueue

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await enqueue(*args, **kwargs)

    monkeypatch.setattr(store.transitions, "enqueue", counting)
    jobs = await asyncio.gather(*(store.enqueue("t", b"%d" % i) for i in range(50)))
    assert calls == 2  # the first call at once, the 49 made while it was on its way together
    assert [job.payload for job in jobs] == [b"%d" % i for i in range(50)]
    ready = await store.redis.lrange(store.keys.queue("t").ready, 0, -1)
    assert sorted(ready) == sorted(job.id.encode() for job in jobs)
    assert await store.enqueue("t", b"alone") is not None
    assert calls == 3


async def test_enqueue_many_stores_every_job_in_order(store: Harness, blocking: OwnConnection) -> None:
    now = (await store.enqueue("warmup", b"")).created_at
    requests = [EnqueueRequest("t", f"{i}".encode()) for i in range(2500)]  # spans batches
    requests += [EnqueueRequest("u", b"later", now + 60_000), EnqueueRequest("t", b"last")]
    jobs = await store.enqueue_many(requests)
    assert [j.payload for j in jobs] == [r.payload for r in requests]
    assert len({j.id for j in jobs}) == len(requests)
    assert await store.redis.llen(store.keys.queue("t").ready) == 2501
    assert await store.redis.zscore(store.keys.queue("u").scheduled, jobs[-2].id) == now + 60_000
    assert await store.inspect.job_types() >= {"t", "u"}
    assert await store.pop(blocking, "t", 1) == jobs[0].id  # oldest first


async def test_enqueue_many_checks_everything_before_storing(store: Harness) -> None:
    requests = [EnqueueRequest("t", b"ok"), EnqueueRequest("bad type", b"")]
    with pytest.raises(InvalidInput, match=r"^jobs\[1\]\.type: "):
        await store.enqueue_many(requests)
    assert await store.redis.llen(store.keys.queue("t").ready) == 0


async def test_enqueue_many_resolves_idempotency_keys(store: Harness) -> None:
    first = await store.enqueue("t", b"", None, JobOptions(idempotency_key="a"))
    jobs = await store.enqueue_many(
        [
            EnqueueRequest("t", b"", options=JobOptions(idempotency_key="a")),
            EnqueueRequest("t", b"", options=JobOptions(idempotency_key="b")),
            EnqueueRequest("t", b"", options=JobOptions(idempotency_key="b")),
        ]
    )
    assert jobs[0] == first
    assert jobs[1].id == jobs[2].id != first.id
    assert await store.redis.llen(store.keys.queue("t").ready) == 2
