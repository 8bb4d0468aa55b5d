"""Retries with backoff, dead letters, redrive, timeouts, idempotent enqueue (store and worker)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from redis.asyncio import Redis

from jobqueue.errors import InvalidInput, JobNotFound, JobNotRetryable
from jobqueue.model import Backoff, Job, JobOptions, JobStatus
from jobqueue.settings import Settings
from jobqueue.store.outcomes import Outcome, Result
from jobqueue.worker import Event, PermanentError, RetryAfter, Worker

from .conftest import eventually, status_is
from .harness import Harness
from .test_worker import running

LEASE_MS = 30_000


async def start(store: Harness, blocking: Redis, job_type: str = "t", default_attempts: int = 3) -> Job:
    job_id = await store.pop(blocking, job_type, 1)
    assert job_id is not None, "no ready job"
    return await store.claimed(job_type, job_id, "w1", LEASE_MS, default_attempts)


async def redis_now(store: Harness) -> int:
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- backoff ----------------------------------------------------------------------------


def test_backoff_grows_exponentially_to_its_cap_with_half_jitter() -> None:
    backoff = Backoff(base_ms=100, factor=3, cap_ms=1_000)
    assert [backoff.delay_ms(n, 0.0) for n in (1, 2, 3, 4)] == [50, 150, 450, 500]
    assert [backoff.delay_ms(n, 0.999999) for n in (1, 2, 3, 4)] == [99, 299, 899, 999]
    with pytest.raises(InvalidInput, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(InvalidInput, match="backoff"):
        Backoff(base_ms=-1)


# -- fail: retry or dead letter -------------------------------------------------------------


async def test_failed_run_with_attempts_left_waits_in_the_schedule(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    before = await redis_now(store)
    assert await store.transitions.fail(job, "ValueError: flaky", 60_000) == Result(Outcome.RETRYING)
    waiting = await store.get(job.id)
    assert (waiting.status, waiting.attempt, waiting.max_attempts) == (JobStatus.PENDING, 1, 3)
    assert waiting.last_error == "ValueError: flaky"
    assert before + 60_000 <= waiting.execution_time_ms <= before + 61_000
    queue = store.keys.queue("t")
    assert await store.redis.zscore(queue.scheduled, job.id) == waiting.execution_time_ms
    assert await store.redis.llen(queue.ready) == 0
    assert await store.redis.zcard(queue.leases) == 0
    assert await store.redis.scard(queue.held("w1")) == 0
    # A replay of the same call (its reply was lost) changes nothing.
    assert await store.transitions.fail(job, "ValueError: flaky", 60_000) == Result(Outcome.RETRYING)
    assert (await store.get(job.id)).execution_time_ms == waiting.execution_time_ms


async def test_a_retry_runs_again_once_due(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    assert await store.transitions.fail(job, "boom", 0) == Result(Outcome.RETRYING)

    async def promoted() -> bool:
        await store.transitions.promote("t", 1000)
        return await store.redis.llen(store.keys.queue("t").ready) == 1

    await eventually(promoted, what="promotion of the retry")
    second = await start(store, blocking)
    assert (second.attempt, second.lease_token) == (2, 2)


async def test_last_attempt_or_permanent_error_is_a_dead_letter(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"", None, JobOptions(max_attempts=1))
    last = await start(store, blocking)
    assert await store.transitions.fail(last, "boom", 1_000) == Result(Outcome.DEAD_LETTERED)
    await store.enqueue("t", b"", None, JobOptions(max_attempts=5))
    permanent = await start(store, blocking)
    finished_at = (await store.get(last.id)).finished_at

    async def a_later_millisecond() -> bool:  # dead letters are ordered by the ms they failed in
        seconds, micros = await store.redis.time()
        return seconds * 1000 + micros // 1000 > finished_at

    await eventually(a_later_millisecond, what="the next millisecond on Redis' clock")
    assert await store.transitions.fail(permanent, "PermanentError: bad input", None) == Result(
        Outcome.DEAD_LETTERED
    )
    for job, error in ((last, "boom"), (permanent, "PermanentError: bad input")):
        dead = await store.get(job.id)
        assert (dead.status, dead.attempt, dead.last_error) == (JobStatus.FAILED, 1, error)
        assert 0 < await store.redis.pttl(store.keys.job(job.id)) <= store.settings.retention_ms
    assert await store.failed_ids("t") == [permanent.id, last.id]
    assert await store.transitions.fail(last, "boom", 1_000) == Result(Outcome.DEAD_LETTERED)  # a replay


async def test_lease_expiry_on_the_last_attempt_is_a_dead_letter(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"", None, JobOptions(max_attempts=1))
    job = await start(store, blocking)
    await store.redis.zadd(store.keys.queue("t").leases, {job.id: 0})
    assert await store.transitions.recover("t", job.id) == Result(Outcome.DEAD_LETTERED)
    dead = await store.get(job.id)
    assert dead.status is JobStatus.FAILED
    assert "lease expired" in dead.last_error and "last attempt" in dead.last_error
    assert await store.failed_ids("t") == [job.id]


async def test_a_stale_copy_of_a_retrying_job_is_not_run_early(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    await store.transitions.fail(job, "boom", 60_000)
    await store.redis.lpush(store.keys.queue("t").ready, job.id)  # e.g. left over from a cancel + redrive
    assert await store.pop(blocking, "t", 1) == job.id
    assert await store.claim("t", job.id, "w1", LEASE_MS) == Result(Outcome.NOT_DUE)
    assert (await store.get(job.id)).status is JobStatus.PENDING


# -- redrive ------------------------------------------------------------------------------


async def test_retry_job_redrives_failed_and_cancelled_jobs(store: Harness, blocking: Redis) -> None:
    await store.enqueue("t", b"", None, JobOptions(max_attempts=1))
    failed = await start(store, blocking)
    await store.transitions.fail(failed, "boom", None)
    cancelled = await store.enqueue("t", b"", (await redis_now(store)) + 60_000)
    await store.cancel(cancelled.id)
    for job_id in (failed.id, cancelled.id):
        again = await store.retry(job_id)
        assert (again.status, again.attempt, again.finished_at) == (JobStatus.PENDING, 0, 0)
        assert await store.redis.pttl(store.keys.job(job_id)) == -1
    assert await store.failed_ids("t") == []
    assert (await store.get(failed.id)).last_error == "boom"  # kept for the record
    assert (await start(store, blocking)).id == failed.id


async def test_retry_job_refuses_other_states(store: Harness, blocking: Redis) -> None:
    pending = await store.enqueue("t", b"")
    with pytest.raises(JobNotRetryable, match="PENDING"):
        await store.retry(pending.id)
    job = await start(store, blocking)
    with pytest.raises(JobNotRetryable, match="RUNNING"):
        await store.retry(job.id)
    await store.complete(job)
    with pytest.raises(JobNotRetryable, match="COMPLETED"):
        await store.retry(job.id)
    with pytest.raises(JobNotFound):
        await store.retry(str(uuid.uuid4()))
    with pytest.raises(InvalidInput, match="id"):
        await store.retry("nope")


# -- job options ------------------------------------------------------------------------------


async def test_options_are_stored_and_returned(store: Harness, blocking: Redis) -> None:
    options = JobOptions(max_attempts=7, timeout_ms=1500, backoff=Backoff(10, 1.5, 99), idempotency_key="k-1")
    queued = await store.enqueue("t", b"", None, options)
    for job in (queued, await store.get(queued.id), await start(store, blocking)):
        assert (job.max_attempts, job.timeout_ms, job.backoff, job.idempotency_key) == (
            7,
            1500,
            Backoff(10, 1.5, 99),
            "k-1",
        )
    plain = await store.enqueue("t", b"")
    assert (plain.max_attempts, plain.timeout_ms, plain.backoff, plain.idempotency_key) == (0, 0, None, "")
    assert (await start(store, blocking, default_attempts=4)).max_attempts == 4  # the worker's default


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (JobOptions(max_attempts=0), "max_attempts"),
        (JobOptions(max_attempts=1001), "max_attempts"),
        (JobOptions(timeout_ms=0), "timeout_ms"),
        (JobOptions(idempotency_key="k" * 257), "idempotency_key"),
    ],
)
async def test_bad_options_are_refused(store: Harness, options: JobOptions, field: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: "):
        await store.enqueue("t", b"", None, options)
    assert await store.redis.llen(store.keys.queue("t").ready) == 0


# -- idempotent enqueue --------------------------------------------------------------------


async def test_the_same_key_returns_the_first_job(store: Harness) -> None:
    first = await store.enqueue("t", b"one", None, JobOptions(idempotency_key="order-42"))
    again = await store.enqueue("t", b"two", None, JobOptions(idempotency_key="order-42"))
    assert again == first
    other_type = await store.enqueue("u", b"one", None, JobOptions(idempotency_key="order-42"))
    other_key = await store.enqueue("t", b"one", None, JobOptions(idempotency_key="order-43"))
    assert len({first.id, other_type.id, other_key.id}) == 3
    assert await store.redis.llen(store.keys.queue("t").ready) == 2


async def test_concurrent_duplicates_create_one_job(store: Harness) -> None:
    options = JobOptions(idempotency_key="burst")
    jobs = await asyncio.gather(*(store.enqueue("t", b"x", None, options) for _ in range(50)))
    assert len({job.id for job in jobs}) == 1
    assert await store.redis.llen(store.keys.queue("t").ready) == 1


async def test_the_key_expires_with_its_window(redis: Redis) -> None:
    store = Harness(redis, Settings(idempotency_window_s=0.15))
    first = await store.enqueue("t", b"", None, JobOptions(idempotency_key="k"))
    key = store.keys.queue("t").idempotency("k")
    assert 0 < await redis.pttl(key) <= 150
    await eventually(lambda: _gone(redis, key), what="window end")
    assert (await store.enqueue("t", b"", None, JobOptions(idempotency_key="k"))).id != first.id


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_a_key_pointing_at_an_expired_job_makes_a_new_one(store: Harness) -> None:
    first = await store.enqueue("t", b"", None, JobOptions(idempotency_key="k"))
    await store.redis.delete(store.keys.job(first.id))  # retention shorter than the window
    second = await store.enqueue("t", b"", None, JobOptions(idempotency_key="k"))
    assert second.id != first.id
    assert (await store.enqueue("t", b"", None, JobOptions(idempotency_key="k"))).id == second.id


# -- corrupt records ---------------------------------------------------------------------------


async def test_a_corrupt_record_is_skipped_and_dead_lettered(store: Harness, blocking: Redis) -> None:
    job = await store.enqueue("t", b"")
    await store.redis.hdel(store.keys.job(job.id), "type")
    await store.redis.hset(store.keys.job(job.id), "created_at", "yesterday")
    assert await store.pop(blocking, "t", 1) == job.id
    assert await store.claim("t", job.id, "w1", LEASE_MS) == Result(Outcome.DEAD_LETTERED)
    assert await store.failed_ids("t") == [job.id]
    raw = await store.redis.hgetall(store.keys.job(job.id))
    assert raw[b"status"] == b"4" and raw[b"last_error"].startswith(b"corrupt job record")
    healthy = await store.enqueue("t", b"")
    assert (await start(store, blocking)).id == healthy.id  # the queue goes on


async def test_a_claim_returns_the_whole_job_as_stored(store: Harness, blocking: Redis) -> None:
    options = JobOptions(max_attempts=5, timeout_ms=900, backoff=Backoff(10, 1.5, 20), idempotency_key="k")
    queued = await store.enqueue("t", b"\x00payload", None, options)
    assert await store.transitions.fail(await start(store, blocking), "boom", 0) == Result(Outcome.RETRYING)
    await store.transitions.promote("t", 1000)
    again = await start(store, blocking)
    stored = await store.get(queued.id)
    assert stored.last_error_attempt == 1  # a read's own field (codec.READ_FIELDS): a claim leaves it 0
    assert again == dataclasses.replace(stored, last_error_attempt=0)
    assert (again.attempt, again.last_error, again.payload) == (2, "boom", b"\x00payload")
    assert (again.backoff, again.max_attempts, again.idempotency_key) == (options.backoff, 5, "k")


async def test_a_garbled_counter_does_not_stop_a_batch_of_claims(store: Harness, blocking: Redis) -> None:
    jobs = [await store.enqueue("t", b"") for _ in range(3)]
    await store.redis.hset(store.keys.job(jobs[1].id), mapping={"attempt": "x", "lease_token": "1.5e"})
    popped = [await store.pop(blocking, "t", 1) for _ in jobs]
    claims = await store.transitions.claim("t", [i for i in popped if i], "w1", LEASE_MS, 1)
    assert [(job.id, job.attempt, job.lease_token) for job in claims if isinstance(job, Job)] == [
        (job.id, 1, 1) for job in jobs
    ]


# -- the worker ----------------------------------------------------------------------------------


def make_worker(settings: Settings, handler: object, **options: object) -> Worker:
    options.setdefault("heartbeat_s", 0.1)
    options.setdefault("backoff", Backoff(base_ms=10, factor=2, cap_ms=50))
    return Worker("t", handler, settings=settings, **options)  # type: ignore[arg-type]


async def test_worker_retries_until_success(store: Harness, settings: Settings) -> None:
    attempts: list[int] = []

    async def flaky(job: Job) -> None:
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise ConnectionError(f"attempt {job.attempt}")

    async with running(make_worker(settings, flaky, max_attempts=3)):
        job = await store.enqueue("t", b"")
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="third attempt")
    assert attempts == [1, 2, 3]
    done = await store.get(job.id)
    assert (done.attempt, done.max_attempts, done.last_error) == (3, 3, "ConnectionError: attempt 2")


async def test_worker_dead_letters_after_the_last_attempt(store: Harness, settings: Settings) -> None:
    async def broken(job: Job) -> None:
        raise ValueError("never works")

    worker = make_worker(settings, broken)
    async with running(worker):
        job = await store.enqueue("t", b"", None, JobOptions(max_attempts=2))
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="dead letter")
    assert (await store.get(job.id)).attempt == 2
    assert await store.failed_ids("t") == [job.id]
    assert worker.stats[Event.RETRY_SCHEDULED] == 1 and worker.stats[Event.DEAD_LETTERED] == 1


async def test_permanent_error_is_not_retried(store: Harness, settings: Settings) -> None:
    async def refuse(job: Job) -> None:
        raise PermanentError("malformed payload")

    async with running(make_worker(settings, refuse, max_attempts=5)):
        job = await store.enqueue("t", b"")
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="failure")
    failed = await store.get(job.id)
    assert (failed.attempt, failed.last_error) == (
        1,
        "jobqueue.worker.errors.PermanentError: malformed payload",
    )


async def test_retry_after_sets_the_next_run_time(store: Harness, settings: Settings) -> None:
    async def later(job: Job) -> None:
        raise RetryAfter(120, "rate limited")

    async with running(make_worker(settings, later)):
        job = await store.enqueue("t", b"")

        async def waiting() -> Job | None:
            current = await store.get(job.id)
            return current if current.status is JobStatus.PENDING and current.attempt == 1 else None

        retrying = await eventually(waiting, what="retry scheduled")
    assert retrying.execution_time_ms - retrying.updated_at == pytest.approx(120_000, abs=50)
    assert "rate limited" in retrying.last_error


@pytest.mark.parametrize("where", ["job", "worker"])
async def test_timeout_cancels_the_run_and_fails_the_attempt(
    store: Harness, settings: Settings, where: str
) -> None:
    cancelled = asyncio.Event()

    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker_timeout = 0.2 if where == "worker" else None
    options = JobOptions(max_attempts=1, timeout_ms=200 if where == "job" else None)
    async with running(make_worker(settings, slow, timeout_s=worker_timeout)):
        job = await store.enqueue("t", b"", None, options)
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="timeout")
    assert cancelled.is_set()
    assert (await store.get(job.id)).last_error == "timed out after 0.2 s"


async def test_a_handlers_own_timeout_error_is_an_ordinary_failure(
    store: Harness, settings: Settings
) -> None:
    async def raises(job: Job) -> None:
        raise TimeoutError("upstream timed out")

    async with running(make_worker(settings, raises, max_attempts=1, timeout_s=30)):
        job = await store.enqueue("t", b"")
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="failure")
    assert (await store.get(job.id)).last_error == "TimeoutError: upstream timed out"
