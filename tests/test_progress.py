"""Progress: `job.set_progress` in a handler, written by the lease holder only
(progress.lua, worker/progress.py), at most once an interval per job, read by GetJob
(grpcurl, HTTP+JSON, the Python client), ListJobs and `jobqueue get`'s view."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from jobqueue.cli.job_view import job_view
from jobqueue.client import Client
from jobqueue.model import MAX_PROGRESS_MESSAGE_CHARS, Job, JobOptions, JobStatus
from jobqueue.selection import JobFilter, ListOrder
from jobqueue.settings import Settings
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import OK, Outcome, Result
from jobqueue.testing import InlineQueue
from jobqueue.worker import Worker
from jobqueue.worker.typed import Handler

from .conftest import eventually, status_is
from .harness import Harness
from .test_api import SERVICE, grpcurl, grpcurl_json, post_json
from .test_store import start
from .test_worker import make_worker, running, take_over

pytestmark = pytest.mark.redis_targets

CALLS = 10_000


def progress_of(store: Harness, job_id: str, fraction: float) -> object:
    """A check for `eventually`: the job shows `fraction` as its progress."""

    async def check() -> bool:
        return (await store.get(job_id)).progress == fraction

    return check


@contextlib.asynccontextmanager
async def job_writes(redis: Redis, key: str) -> AsyncIterator[list[bytes]]:
    """The commands that change `key`, as Redis tells them (keyspace notifications: no
    MONITOR), in order, until the block ends."""
    store_redis = redis
    if isinstance(redis, RedisCluster):  # notifications are told on the key's own node only
        node = redis.get_node_from_key(key)
        redis = Redis(host=node.host, port=node.port)
    await redis.config_set("notify-keyspace-events", "Kgh")
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"__keyspace@*__:{key}")
    seen: list[bytes] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                seen.append(message["data"])

    listening = asyncio.create_task(listen())
    try:
        yield seen
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pubsub.aclose()
        await redis.config_set("notify-keyspace-events", "")
        if redis is not store_redis:
            await redis.aclose()


async def run_counting_writes(
    store: Harness, settings: Settings, handler: Handler, **options: Any
) -> tuple[Job, int]:
    """Runs one job to its completion by a worker with `options`; returns it as stored,
    and how many progress writes of their own its run made."""
    job = await store.enqueue("t", b"")
    async with job_writes(store.redis, store.keys.job(job.id)) as seen:
        async with running(make_worker(settings, handler, **options)):
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
        writes = await progress_writes(store, seen)
    return await store.get(job.id), writes


async def progress_writes(store: Harness, seen: list[bytes]) -> int:
    """How many progress writes a job that ran once and completed got: its HSETs but
    the claim's and the completion's (whose PEXPIRE, `expire`, follows it: all are in by then)."""

    async def completed() -> bool:
        return b"expire" in seen

    await eventually(completed, what="the completion's notifications")
    return seen.count(b"hset") - 2


# -- the store: progress.lua ----------------------------------------------------


async def test_the_holder_writes_progress_and_a_stale_holder_cannot(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    old = await start(store, blocking)
    assert await store.transitions.progress(old, 0.25, "old run") == OK
    await take_over(store, old)  # its lease expired: the reaper takes the job back
    assert await store.transitions.progress(old, 0.5, "stale") == Result(Outcome.STALE, JobStatus.PENDING)
    new = await start(store, blocking)
    assert await store.transitions.progress(old, 0.5, "stale") == Result(Outcome.STALE, JobStatus.RUNNING)
    # The new run shows none of the old run's.
    shown = await store.get(new.id)
    assert (shown.progress, shown.progress_message, shown.progress_at) == (0.0, "", 0)
    assert await store.transitions.progress(new, 0.75, "new run") == OK
    shown = await store.get(new.id)
    assert (shown.progress, shown.progress_message) == (0.75, "new run")
    assert shown.progress_at >= shown.started_at > 0
    # A completion carries the run's last progress (round.lua): not the stale holder's.
    old.progress, old.progress_message, old.progress_at = 0.95, "stale", 1
    assert await store.complete(old) == Result(Outcome.STALE, JobStatus.RUNNING)
    new.progress, new.progress_message, new.progress_at = 0.875, "last", 1
    assert await store.complete(new) == OK
    done = await store.get(new.id)
    assert (done.progress, done.progress_message, done.progress_at) == (0.875, "last", done.finished_at)
    # Nor after the job completed, nor once cancelled.
    assert await store.transitions.progress(new, 1.0, "late") == Result(Outcome.STALE, JobStatus.COMPLETED)
    assert (await store.get(new.id)).progress == 0.875
    await store.enqueue("t", b"")
    cancelled = await start(store, blocking)
    await store.cancel(cancelled.id)
    assert await store.transitions.progress(cancelled, 0.1, "") == Result(Outcome.STALE, JobStatus.CANCELLED)
    assert not await store.redis.hexists(store.keys.job(cancelled.id), "progress")


async def test_a_retry_shows_the_last_runs_progress_until_its_own_run_starts(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"")
    first = await start(store, blocking)
    assert await store.transitions.progress(first, 0.6, "first run") == OK
    assert (await store.transitions.fail(first, "boom", 0)).outcome is Outcome.RETRYING
    waiting = await store.get(first.id)
    assert (waiting.status, waiting.progress, waiting.progress_message) == (
        JobStatus.PENDING,
        0.6,
        "first run",
    )
    await store.transitions.promote("t", 10)
    second = await start(store, blocking)
    assert second.attempt == 2
    assert (await store.get(first.id)).progress_at == 0  # the new run has reported nothing yet


async def test_a_list_returns_the_progress_with_or_without_payloads(
    store: Harness, blocking: OwnConnection
) -> None:
    await store.enqueue("t", b"payload")
    job = await start(store, blocking)
    assert await store.transitions.progress(job, 0.5, "half") == OK
    job.result = b"out"
    assert await store.complete(job) == OK
    completed = JobFilter(type="t", status=JobStatus.COMPLETED)
    for with_payloads in (False, True):
        page = await store.producer.list_jobs(
            completed, ListOrder.OLDEST_FIRST, 10, with_payloads=with_payloads
        )
        [listed] = page.jobs
        assert (listed.progress, listed.progress_message, listed.last_error_attempt) == (0.5, "half", 0)
        assert listed.result == (b"out" if with_payloads else b"")


# -- a worker -------------------------------------------------------------------------


async def test_a_handlers_progress_is_read_by_every_client(
    store: Harness, settings: Settings, server_url: str
) -> None:
    reported, finish = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> None:
        job.set_progress(0.4, "copying part 4 of 10")
        reported.set()
        await asyncio.wait_for(finish.wait(), 30)

    async with running(make_worker(settings, handler)):
        job = await store.enqueue("t", b"")
        await asyncio.wait_for(reported.wait(), 10)
        await eventually(progress_of(store, job.id, 0.4), what="the progress written")
        by_grpc = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetJob", data={"id": job.id}))["job"]
        by_json = (await post_json(server_url, "GetJob", json.dumps({"id": job.id}))).json()["job"]
        async with Client(server_url) as client:
            by_client = await client.get(job.id)
        finish.set()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    for reply in (by_grpc, by_json):
        assert (reply["progress"], reply["progressMessage"]) == (0.4, "copying part 4 of 10")
        assert int(reply["progressAt"]) == by_client.progress_at > 0
    assert (by_client.progress, by_client.progress_message) == (0.4, "copying part 4 of 10")
    [shown] = [line for line in job_view(by_client).splitlines() if line.startswith("progress ")]
    assert shown.split(None, 1)[1].startswith("40% copying part 4 of 10 (at ")
    assert (await store.get(job.id)).progress == 0.4  # a completed job keeps its run's last report


async def test_a_tight_loop_of_reports_costs_a_few_writes_and_the_last_one_is_written(
    store: Harness, settings: Settings
) -> None:
    """10,000 calls in an async handler that runs at least 4 intervals (it sleeps 10 ms
    after every 500 calls): a write per interval at most, the last value kept."""
    took: list[float] = []
    interval_s = 0.05

    async def handler(job: Job) -> None:
        began = time.monotonic()
        for i in range(1, CALLS + 1):
            job.set_progress(i / CALLS, f"item {i}")
            if i % 500 == 0:
                await asyncio.sleep(0.01)
        took.append(time.monotonic() - began)

    done, writes = await run_counting_writes(store, settings, handler, progress_interval_s=interval_s)
    # The first an interval after the first call, then one per interval at most; the
    # last goes with the completion.
    assert 1 <= writes <= took[0] / interval_s, (writes, took)
    assert (done.progress, done.progress_message) == (1.0, f"item {CALLS}")


async def test_a_run_that_never_yields_writes_its_progress_with_its_completion_only(
    store: Harness, settings: Settings
) -> None:
    """The default interval, and a run that never lets a write go: the last value goes
    with the completion (round.lua)."""

    async def handler(job: Job) -> None:
        for i in range(1, CALLS + 1):
            job.set_progress(i / CALLS, f"item {i}")

    done, writes = await run_counting_writes(store, settings, handler)
    assert writes == 0
    assert (done.progress, done.progress_message, done.progress_at) == (
        1.0,
        f"item {CALLS}",
        done.finished_at,
    )


async def test_a_sync_handler_reports_from_its_thread(store: Harness, settings: Settings) -> None:
    """From a pool thread, with an interval longer than the run: no write of its own,
    the last value with the completion."""
    threads: set[str] = set()

    def handler(job: Job) -> None:
        threads.add(threading.current_thread().name)
        for i in range(1, CALLS + 1):
            job.set_progress(i / CALLS, f"item {i}")

    done, writes = await run_counting_writes(store, settings, handler, progress_interval_s=600)
    assert writes == 0
    assert threads != {threading.current_thread().name}
    assert (done.progress, done.progress_message) == (1.0, f"item {CALLS}")


async def test_a_failed_run_writes_its_last_progress_before_its_failure(
    store: Harness, settings: Settings
) -> None:
    async def handler(job: Job) -> None:
        job.set_progress(0.1, "started")
        job.set_progress(0.3, "then failed")
        raise RuntimeError("boom")

    async with running(make_worker(settings, handler, max_attempts=1, progress_interval_s=600)):
        job = await store.enqueue("t", b"")
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="the failure")
    failed = await store.get(job.id)
    assert (failed.progress, failed.progress_message) == (0.3, "then failed")


async def test_a_worker_that_lost_its_lease_writes_no_progress(store: Harness, settings: Settings) -> None:
    started, taken_over, reported = asyncio.Event(), asyncio.Event(), threading.Event()

    async def handler(job: Job) -> None:
        if job.attempt > 1:
            job.set_progress(0.2, "second run")
            await asyncio.to_thread(reported.wait, 30)
            return
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await taken_over.wait()
        job.set_progress(0.9, "first run, stale")

    async with running(make_worker(settings, handler, run_reaper=False, concurrency=2)):
        job = await store.enqueue("t", b"")
        await asyncio.wait_for(started.wait(), 10)
        await take_over(store, job)
        await eventually(progress_of(store, job.id, 0.2), what="the second run's progress")
        taken_over.set()  # the first run reports now, with its dead token
        reported.set()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="second attempt")
    done = await store.get(job.id)
    assert (done.attempt, done.progress, done.progress_message) == (2, 0.2, "second run")
    stored = await store.redis.hmget(store.keys.job(job.id), ["progress", "progress_message"])
    assert stored == [b"0.2", b"second run"]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.5", True])
def test_a_bad_fraction_is_refused_naming_it(fraction: object) -> None:
    job = Job("x", "t", b"", JobStatus.RUNNING, 0, 0, 0)
    job._progress_sink = lambda *_: pytest.fail("a refused value went on")
    with pytest.raises(ValueError, match="fraction must be a number from 0 to 1"):
        job.set_progress(fraction)  # type: ignore[arg-type]


def test_a_job_read_from_the_store_cannot_report() -> None:
    with pytest.raises(RuntimeError, match="set_progress is for the job a handler is running"):
        Job("x", "t", b"", JobStatus.COMPLETED, 0, 0, 0).set_progress(0.5)


async def test_the_inline_queue_records_progress_on_the_job() -> None:
    async def handler(job: Job) -> None:
        if job.attempt == 1:
            job.set_progress(0.9, "x" * (MAX_PROGRESS_MESSAGE_CHARS + 10))
            raise RuntimeError("again")

    def sync_handler(job: Job) -> None:
        job.set_progress(1, "done in a thread")

    queue = InlineQueue(Worker("t", handler, max_attempts=2), Worker("s", sync_handler))
    failed = await queue.enqueue("t", options=JobOptions(max_attempts=1))
    assert (failed.status, failed.progress) == (JobStatus.FAILED, 0.9)
    assert failed.progress_message == "x" * MAX_PROGRESS_MESSAGE_CHARS and failed.progress_at > 0
    retried = await queue.enqueue("t")
    assert (retried.status, retried.attempt, retried.progress_at) == (
        JobStatus.COMPLETED,
        2,
        0,
    )  # its own run's
    synced = await queue.enqueue("s")
    assert (synced.progress, synced.progress_message) == (1.0, "done in a thread")


def report_in_a_process(job: Job) -> None:
    """A handler for executor="process" (module-level: it pickles by name)."""
    job.set_progress(0.5)


async def test_a_handler_in_a_process_is_told_progress_cannot_reach_the_worker(
    store: Harness, settings: Settings
) -> None:
    worker = make_worker(settings, report_in_a_process, executor="process", concurrency=1, max_attempts=1)
    async with running(worker):
        job = await store.enqueue("t", b"")
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="the failure")
    failed = await store.get(job.id)
    assert "set_progress is for the job a handler is running" in failed.last_error
    assert "executor='process'" in failed.last_error
