"""Expiry before start: a job not started by its `expires_at_ms` never starts; it
ends EXPIRED (the claim's check, the reaper's pass), counted, listed and told."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from jobqueue.cli.exits import ExitCode
from jobqueue.errors import InvalidInput, JobAlreadyFinished
from jobqueue.events import Event
from jobqueue.metrics.jobs import JobMetrics
from jobqueue.model import EnqueueRequest, Job, JobOptions, JobStatus, UniqueMode
from jobqueue.selection import JobFilter
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result
from jobqueue.testing import InlineQueue
from jobqueue.worker import Worker

from .conftest import eventually, status_is
from .harness import Harness
from .test_api import SERVICE, assert_clean, grpcurl, grpcurl_json, new_type, post_json
from .test_cli import jobqueue, view_rows
from .test_store import start
from .test_worker import make_worker, running

pytestmark = pytest.mark.redis_targets

EXPIRES_IN_MS = 300
EXPIRED_ERROR = "expired before start"


@pytest.fixture
def store(private_store: Harness) -> Harness:
    """Transitions driven by the test alone (no other reaper or scheduler)."""
    return private_store


async def redis_now_ms(store: Harness) -> int:
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def until_past(store: Harness, at_ms: int) -> None:
    """Polls the Redis clock (the one expiry goes by) until `at_ms` has passed."""

    async def past() -> bool:
        return await redis_now_ms(store) > at_ms

    await eventually(past, what=f"the Redis clock past {at_ms}")


def expiring(ms: int = EXPIRES_IN_MS) -> JobOptions:
    return JobOptions(expires_in_ms=ms)


async def assert_expired(store: Harness, job_id: str, *, claimed_once: bool = False) -> Job:
    """`claimed_once`: a run was handed back (its started_at stays)."""
    job = await store.get(job_id)
    assert (job.status, job.last_error, job.attempt) == (JobStatus.EXPIRED, EXPIRED_ERROR, 0)
    assert bool(job.started_at) is claimed_once
    assert job.finished_at >= job.expires_at_ms > 0
    assert 0 < await store.redis.pttl(store.keys.job(job_id)) <= store.settings.retention_ms
    return job


# -- enqueue -----------------------------------------------------------------------------


async def test_an_expiry_is_stored_absolute_whether_given_absolute_or_relative(store: Harness) -> None:
    relative = await store.enqueue("t", b"", None, JobOptions(expires_in_ms=60_000))
    stored = await store.get(relative.id)
    assert stored.expires_at_ms == stored.created_at + 60_000
    at = stored.created_at + 120_000
    absolute = await store.enqueue("t", b"", None, JobOptions(expires_at_ms=at))
    assert (await store.get(absolute.id)).expires_at_ms == at
    assert (await store.get((await store.enqueue("t", b"")).id)).expires_at_ms == 0
    expiring_ids = await store.redis.zrange(store.keys.queue("t").expiring, 0, -1, withscores=True)
    assert expiring_ids == [(relative.id.encode(), stored.created_at + 60_000), (absolute.id.encode(), at)]


@pytest.mark.parametrize(
    ("options", "at", "field"),
    [
        pytest.param(JobOptions(expires_at_ms=1, expires_in_ms=1), None, "expires_at_ms", id="both"),
        pytest.param(JobOptions(expires_in_ms=0), None, "expires_in_ms", id="in-zero"),
        pytest.param(JobOptions(expires_in_ms=-5), None, "expires_in_ms", id="in-negative"),
        pytest.param(JobOptions(expires_at_ms=-1), None, "expires_at_ms", id="at-negative"),
        pytest.param(JobOptions(expires_at_ms=1_000), 1_000, "expires_at_ms", id="at-not-after-execution"),
    ],
)
async def test_a_malformed_expiry_is_refused_naming_its_field(
    store: Harness, options: JobOptions, at: int | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await store.enqueue("t", b"", at, options)
    assert refused.value.field == field
    assert await store.redis.dbsize() == 0


async def test_an_expiry_already_past_by_the_redis_clock_is_refused(store: Harness) -> None:
    now = await redis_now_ms(store)
    with pytest.raises(InvalidInput, match=r"expires_at_ms: \d+ is not after now \(\d+, the Redis clock\)"):
        await store.enqueue("t", b"", None, JobOptions(expires_at_ms=now - 1))
    # Relative to the enqueue, but before the job's own execution time: it could never start.
    with pytest.raises(InvalidInput, match="expires_in_ms: 1000 ms after now"):
        await store.enqueue("t", b"", now + 60_000, JobOptions(expires_in_ms=1_000))
    assert await store.redis.exists(store.keys.queue("t").live, store.keys.queue("t").expiring) == 0


async def test_a_batch_with_one_expiry_past_stores_none(store: Harness) -> None:
    now = await redis_now_ms(store)
    requests = [
        EnqueueRequest("t", b"fine", options=expiring(60_000)),
        EnqueueRequest("t", b"late", options=JobOptions(expires_at_ms=now - 1)),
    ]
    with pytest.raises(InvalidInput, match=r"jobs\[1\]\.expires_at_ms"):
        await store.enqueue_many(requests)
    assert await store.redis.exists(store.keys.queue("t").live) == 0


# -- the claim ---------------------------------------------------------------------------


async def test_a_job_claimed_after_its_expiry_ends_expired_unstarted(
    store: Harness, blocking: OwnConnection
) -> None:
    queued = await store.enqueue("t", b"", None, expiring())
    job_id = await store.pop(blocking, "t", 1)
    assert job_id == queued.id
    await until_past(store, (await store.get(queued.id)).expires_at_ms)
    assert await store.claim("t", job_id, "w1", 30_000) == Result(Outcome.TOO_LATE)
    await assert_expired(store, queued.id)
    queue = store.keys.queue("t")
    assert await store.redis.zscore(queue.expired, queued.id) is not None
    assert await store.redis.zscore(queue.live, queued.id) is None
    assert await store.redis.zcard(queue.leases) == 0
    stats = await store.store.stats.read("t")
    assert (stats.queues[0].expired, stats.queues[0].pending) == (1, 0)
    assert await store.redis.hget(queue.stats, "total_expired") == b"1"
    [entry] = (await store.redis.xrange(queue.events))[-1:]
    assert entry[1][b"jobs"] == f"{queued.id}:{JobStatus.EXPIRED.value}:0".encode()


async def test_a_job_claimed_before_its_expiry_runs(store: Harness, blocking: OwnConnection) -> None:
    queued = await store.enqueue("t", b"", None, expiring(60_000))
    job = await start(store, blocking)
    assert (job.id, job.status) == (queued.id, JobStatus.RUNNING)
    assert job.expires_at_ms == queued.expires_at_ms == queued.created_at + 60_000


async def test_a_retry_after_a_started_run_is_not_expired(store: Harness, blocking: OwnConnection) -> None:
    """Expiry is about the first start (arq, RQ: not started by then): a job that
    started in time gets its retries whatever the time."""
    queued = await store.enqueue("t", b"", None, expiring())
    job = await start(store, blocking)
    await until_past(store, job.expires_at_ms)
    assert (await store.transitions.fail(job, "boom", 0)).outcome is Outcome.RETRYING
    await store.transitions.promote("t", 100)
    assert await store.reaper(["t"]).reap_once() == 0
    retried = await start(store, blocking)
    assert (retried.id, retried.attempt, retried.status) == (queued.id, 2, JobStatus.RUNNING)


# -- the reaper: no worker comes ------------------------------------------------------------


async def test_the_reaper_expires_a_ready_job_no_worker_took(store: Harness, blocking: OwnConnection) -> None:
    queued = await store.enqueue("t", b"", None, expiring())
    await until_past(store, (await store.get(queued.id)).expires_at_ms)
    await store.reaper(["t"]).reap_once()
    await assert_expired(store, queued.id)
    assert store.events[Event.EXPIRED] == 1
    assert await store.redis.zcard(store.keys.queue("t").expiring) == 0
    # Its id stays in `ready` (as a cancelled one does); a worker that pops it skips it.
    job_id = await store.pop(blocking, "t", 1)
    claim = await store.claim("t", job_id or "", "w1", 30_000)
    assert claim == Result(Outcome.WRONG_STATE, JobStatus.EXPIRED)


async def test_the_reaper_expires_a_scheduled_job_out_of_the_schedule(store: Harness) -> None:
    now = await redis_now_ms(store)
    queued = await store.enqueue("t", b"", now + 100, JobOptions(expires_at_ms=now + EXPIRES_IN_MS))
    queue = store.keys.queue("t")
    assert await store.redis.zcard(queue.scheduled) == 1
    await until_past(store, now + EXPIRES_IN_MS)
    await store.reaper(["t"]).reap_once()
    await assert_expired(store, queued.id)
    assert await store.redis.zcard(queue.scheduled) == 0
    stats = (await store.store.stats.read("t")).queues[0]
    assert (stats.pending, stats.scheduled, stats.ready, stats.expired) == (0, 0, 0, 1)


async def test_the_reaper_drops_entries_of_jobs_that_started_or_finished(
    store: Harness, blocking: OwnConnection
) -> None:
    started = await store.enqueue("t", b"", None, expiring())
    job = await start(store, blocking)
    cancelled = await store.enqueue("t", b"", None, expiring())
    await store.cancel(cancelled.id)
    await until_past(store, job.expires_at_ms + EXPIRES_IN_MS)
    await store.reaper(["t"]).reap_once()
    assert (await store.get(started.id)).status is JobStatus.RUNNING
    assert (await store.get(cancelled.id)).status is JobStatus.CANCELLED
    assert await store.redis.zcard(store.keys.queue("t").expiring) == 0
    assert store.events[Event.EXPIRED] == 0


# -- after: listing, redrive, cancel -------------------------------------------------------


async def test_expired_jobs_are_listed_redriven_without_expiry_and_not_cancelled(
    store: Harness, blocking: OwnConnection
) -> None:
    queued = await store.enqueue("t", b"", None, expiring())
    await until_past(store, (await store.get(queued.id)).expires_at_ms)
    await store.reaper(["t"]).reap_once()
    page = await store.producer.list_jobs(JobFilter(type="t", status=JobStatus.EXPIRED))
    assert [job.id for job in page.jobs] == [queued.id]
    with pytest.raises(JobAlreadyFinished):
        await store.cancel(queued.id)
    redriven = await store.retry(queued.id)
    assert (redriven.status, redriven.expires_at_ms) == (JobStatus.PENDING, 0)
    assert await store.redis.zcard(store.keys.queue("t").expired) == 0
    await store.redis.delete(store.keys.queue("t").ready)  # its stale copy from before
    await store.redis.lpush(store.keys.queue("t").ready, queued.id)
    job = await start(store, blocking)
    assert (job.id, job.status) == (queued.id, JobStatus.RUNNING)


async def test_an_expired_job_can_be_deleted(store: Harness) -> None:
    queued = await store.enqueue("t", b"", None, expiring())
    await until_past(store, (await store.get(queued.id)).expires_at_ms)
    await store.reaper(["t"]).reap_once()
    assert (await store.transitions.delete(queued.id)).ok
    assert await store.redis.exists(store.keys.job(queued.id), store.keys.queue("t").expired) == 0


# -- a worker ------------------------------------------------------------------------------


def holding_the_long_job() -> tuple[Callable[[Job], Awaitable[None]], list[bytes], asyncio.Event]:
    """A handler that records each payload it runs and holds the job `long` until the
    event is set; the payloads it ran."""
    seen: list[bytes] = []
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        seen.append(job.payload)
        if job.payload == b"long":
            await release.wait()

    return handler, seen, release


async def test_a_busy_worker_never_starts_a_job_past_its_expiry(store: Harness) -> None:
    """The worker's one slot is taken until after the expiry: the job ends EXPIRED, unrun."""
    handler, seen, release = holding_the_long_job()
    metrics = JobMetrics()
    worker = make_worker(store.settings, handler, concurrency=1, run_reaper=False, observers=[metrics])
    async with running(worker):
        long = await store.enqueue("t", b"long")
        await eventually(status_is(store, long.id, JobStatus.RUNNING), what="the long job running")
        late = await store.enqueue("t", b"late", None, expiring())
        await until_past(store, (await store.get(late.id)).expires_at_ms)
        release.set()
        await eventually(status_is(store, late.id, JobStatus.EXPIRED), what="the late job expired")
        await eventually(status_is(store, long.id, JobStatus.COMPLETED), what="the long job done")
    assert seen == [b"long"]
    await assert_expired(store, late.id)
    assert metrics.by_type["t"].expired == 1


# -- the inline queue ------------------------------------------------------------------------


async def test_the_inline_queue_expires_a_job_not_run_by_its_expiry() -> None:
    ran: list[bytes] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload)

    queue = InlineQueue(Worker("t", handler), eager=False)
    late = await queue.enqueue("t", b"late", None, JobOptions(expires_in_ms=1))
    fine = await queue.enqueue("t", b"fine", None, JobOptions(expires_in_ms=3_600_000))

    async def past() -> bool:
        return time.time() * 1000 > late.expires_at_ms

    await eventually(past, what="the late job's expiry passed")
    await queue.run_pending()
    assert ran == [b"fine"]
    expired = await queue.get(late.id)
    assert (expired.status, expired.last_error) == (JobStatus.EXPIRED, EXPIRED_ERROR)
    assert (await queue.get(fine.id)).status is JobStatus.COMPLETED
    redriven = await queue.retry(late.id)
    await queue.run_pending()
    assert (redriven.expires_at_ms, (await queue.get(late.id)).status) == (0, JobStatus.COMPLETED)


# -- the API: grpcurl and HTTP + JSON --------------------------------------------------------


async def test_grpcurl_enqueues_with_an_expiry_and_refuses_a_bad_one(server_url: str) -> None:
    job_type = new_type()
    created = grpcurl_json(
        await grpcurl(server_url, f"{SERVICE}/EnqueueJob", data={"type": job_type, "expiresInMs": "60000"})
    )["job"]
    assert int(created["expiresAtMs"]) == int(created["createdAt"]) + 60_000
    for data, field in (
        ({"type": job_type, "expiresInMs": "1000", "expiresAtMs": "1"}, "expires_at_ms"),
        ({"type": job_type, "expiresAtMs": "1"}, "expires_at_ms"),
        ({"type": job_type, "expiresInMs": "-1"}, "expires_in_ms"),
    ):
        ran = await grpcurl(server_url, f"{SERVICE}/EnqueueJob", data=data)
        assert ran.code == 64 + 3, ran
        assert "Code: InvalidArgument\n" in ran.err and f"Message: {field}: " in ran.err, ran.err
        assert_clean(ran.err)


async def test_http_json_expiry_end_to_end(server_url: str) -> None:
    """No worker for the type: the server's reaper ends the job EXPIRED; it is
    listed, counted, waited for as final, and RetryJob runs it again without expiry."""
    job_type = new_type()
    late = await post_json(server_url, "EnqueueJob", json.dumps({"type": job_type, "expiresAtMs": "1"}))
    assert late.status == 400 and late.json()["code"] == "invalid_argument", late
    assert late.json()["message"].startswith("expires_at_ms: 1 is not after now"), late
    body = json.dumps({"type": job_type, "expiresInMs": str(EXPIRES_IN_MS)})
    job_id = (await post_json(server_url, "EnqueueJob", body)).json()["job"]["id"]
    waited = await post_json(server_url, "WaitJob", json.dumps({"id": job_id, "timeoutMs": "20000"}))
    assert waited.json()["done"] is True, waited
    job = waited.json()["job"]
    assert (job["status"], job["lastError"]) == ("JOB_STATUS_EXPIRED", EXPIRED_ERROR)
    assert "startedAt" not in job and int(job["finishedAt"]) >= int(job["expiresAtMs"])
    listed = await post_json(
        server_url, "ListJobs", json.dumps({"filter": {"type": job_type, "status": "JOB_STATUS_EXPIRED"}})
    )
    assert [j["id"] for j in listed.json()["jobs"]] == [job_id]
    [stats] = (await post_json(server_url, "GetQueueStats", json.dumps({"type": job_type}))).json()["queues"]
    assert (stats["expired"], stats.get("pending", "0")) == ("1", "0")
    cancel = await post_json(server_url, "CancelJob", json.dumps({"id": job_id}))
    assert cancel.status == 400 and cancel.json()["code"] == "failed_precondition", cancel
    redriven = (await post_json(server_url, "RetryJob", json.dumps({"id": job_id}))).json()["job"]
    assert redriven["status"] == "JOB_STATUS_PENDING" and "expiresAtMs" not in redriven


# -- the CLI ---------------------------------------------------------------------------------


def test_the_cli_enqueues_with_an_expiry_lists_and_counts_expired_jobs(server_url: str) -> None:
    job_type = new_type()
    enqueued = jobqueue("enqueue", job_type, "--expires-in", "300ms", "--url", server_url, "-q")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    later = jobqueue("enqueue", job_type, "--expires-at", "2999-01-01T00:00:00Z", "--url", server_url)
    assert "(unless started by then)" in view_rows(later.stdout)["expires"], later.stdout
    waited = jobqueue("wait", job_id, "--url", server_url, "--timeout", "20s")
    assert waited.returncode == ExitCode.NOT_COMPLETED, waited
    rows = view_rows(waited.stdout)
    assert (rows["status"], rows["last error"]) == ("EXPIRED", EXPIRED_ERROR)
    listed = jobqueue("list", "--type", job_type, "--status", "expired", "--url", server_url, "-q")
    assert listed.stdout.split() == [job_id], listed
    stats = jobqueue("stats", "--type", job_type, "--url", server_url)
    header, row = stats.stdout.splitlines()[1:3]
    assert row.split()[header.split().index("EXPIRED")] == "1", stats.stdout
    both = jobqueue("enqueue", job_type, "--expires-in", "1m", "--expires-at", "1", "--url", server_url)
    assert both.returncode == ExitCode.USAGE and "not allowed with" in both.stderr, both


async def test_a_run_handed_back_at_shutdown_does_not_count_as_a_start(
    store: Harness, blocking: OwnConnection
) -> None:
    """As for attempts: a released run never happened, so the expiry applies again."""
    queued = await store.enqueue("t", b"", None, expiring())
    job = await start(store, blocking)
    await until_past(store, job.expires_at_ms)
    await store.reaper(["t"]).reap_once()  # running: not expired, its entry dropped
    assert (await store.get(queued.id)).status is JobStatus.RUNNING
    assert (await store.transitions.release(job)).ok
    assert await store.redis.zscore(store.keys.queue("t").expiring, queued.id) == job.expires_at_ms
    await store.reaper(["t"]).reap_once()
    await assert_expired(store, queued.id, claimed_once=True)


async def test_a_job_claimed_ahead_is_handed_back_if_its_slot_frees_after_its_expiry(
    store: Harness,
) -> None:
    handler, seen, release = holding_the_long_job()
    worker = make_worker(store.settings, handler, concurrency=1, prefetch=1, run_reaper=False)
    async with running(worker):
        long = await store.enqueue("t", b"long")
        await eventually(status_is(store, long.id, JobStatus.RUNNING), what="the long job running")
        late = await store.enqueue("t", b"late", None, expiring(2_000))
        await eventually(status_is(store, late.id, JobStatus.RUNNING), what="the late job claimed ahead")
        await until_past(store, late.created_at + 2_000)
        release.set()
        await eventually(status_is(store, late.id, JobStatus.EXPIRED), what="the late job expired")
    assert seen == [b"long"]
    await assert_expired(store, late.id, claimed_once=True)


async def test_an_expired_job_frees_its_unique_key(store: Harness, blocking: OwnConnection) -> None:
    """EXPIRED is final: its unique key is free again, whether the claim or the reaper ended it."""
    unique = JobOptions(unique_key="k", unique_mode=UniqueMode.WHILE_ACTIVE, expires_in_ms=EXPIRES_IN_MS)
    by_reaper = await store.enqueue("t", b"", None, unique)
    await until_past(store, by_reaper.created_at + EXPIRES_IN_MS)
    await store.reaper(["t"]).reap_once()
    await assert_expired(store, by_reaper.id)
    lock = store.keys.queue("t").unique("k")
    assert await store.redis.exists(lock) == 0
    by_claim = await store.enqueue("t", b"", None, unique)
    assert by_claim.id != by_reaper.id
    await store.redis.delete(store.keys.queue("t").ready)  # the first job's stale copy
    await store.redis.lpush(store.keys.queue("t").ready, by_claim.id)
    job_id = await store.pop(blocking, "t", 1)
    await until_past(store, by_claim.created_at + EXPIRES_IN_MS)
    assert await store.claim("t", job_id or "", "w1", 30_000) == Result(Outcome.TOO_LATE)
    await assert_expired(store, by_claim.id)
    assert await store.redis.exists(lock) == 0
    assert (await store.enqueue("t", b"", None, unique)).id not in (by_reaper.id, by_claim.id)


async def test_an_idle_type_is_forgotten_with_its_expired_and_expiring_ids(store: Harness) -> None:
    """The bounds: expired jobs leave with retention; an id that waits in `expiring` for
    the expiry of a job cancelled long before goes when the idle type is forgotten."""
    short = Harness(store.redis, dataclasses.replace(store.settings, retention_s=1.0, type_idle_s=0.5))
    reaper = short.reaper()
    reaper.upkeep.interval_s = 0.0
    now = await redis_now_ms(short)
    scheduled = await short.enqueue("idle", b"", now + 100, JobOptions(expires_at_ms=now + EXPIRES_IN_MS))
    cancelled = await short.enqueue("idle", b"", now + 3_600_000, JobOptions(expires_in_ms=7_200_000))
    await short.cancel(cancelled.id)
    await until_past(short, now + EXPIRES_IN_MS)
    await reaper.reap_once()
    await assert_expired(short, scheduled.id)
    queue = short.keys.queue("idle")
    assert await short.redis.zrange(queue.expiring, 0, -1) == [cancelled.id.encode()]

    async def forgotten() -> bool:
        await reaper.reap_once()
        return (
            await short.redis.exists(queue.expiring, queue.expired, queue.stats, short.keys.job(scheduled.id))
            == 0
        )

    await eventually(forgotten, timeout=30, interval=0.1, what="the idle type forgotten")
    assert not await short.redis.sismember(short.keys.types, "idle")
