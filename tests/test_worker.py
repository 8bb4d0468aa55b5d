"""The worker SDK in-process against a real Redis: runs, failures, cancel, leases, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobqueue.events import Event
from jobqueue.model import Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.store.outcomes import Outcome, Result
from jobqueue.worker import Handler, Worker

from .conftest import eventually, status_is
from .harness import Harness

pytestmark = pytest.mark.redis_targets


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Event]:
    """Serves `worker` in a task; stops it gracefully (and checks it stopped) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def make_worker(settings: Settings, handler: Handler, **options: Any) -> Worker:
    options.setdefault("heartbeat_s", 0.1)
    options.setdefault("lease_s", 5.0)
    return Worker("t", handler, settings=settings, **options)


async def test_runs_a_job_once_and_completes_it(store: Harness, settings: Settings) -> None:
    seen: list[Job] = []

    async def handler(job: Job) -> None:
        seen.append(job)

    async with running(make_worker(settings, handler)):
        queued = await store.enqueue("t", b"hello")
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    [job] = seen
    assert (job.id, job.payload, job.attempt, job.status) == (queued.id, b"hello", 1, JobStatus.RUNNING)
    done = await store.get(queued.id)
    assert done.worker_id == job.worker_id and done.finished_at >= done.started_at > 0


async def test_handlers_may_use_the_workers_redis_client(store: Harness, settings: Settings) -> None:
    async def handler(job: Job) -> None:
        await worker.redis.rpush("handled", job.payload)

    worker = make_worker(settings, handler)
    with pytest.raises(RuntimeError, match="not running"):
        _ = worker.redis
    async with running(worker):
        jobs = [await store.enqueue("t", b"%d" % i) for i in range(3)]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    assert sorted(await store.redis.lrange("handled", 0, -1)) == [b"0", b"1", b"2"]


async def test_handler_exception_fails_the_job_with_its_error(store: Harness, settings: Settings) -> None:
    async def handler(job: Job) -> None:
        raise ValueError(f"bad payload {job.payload!r}")

    async with running(make_worker(settings, handler, max_attempts=1)):
        job = await store.enqueue("t", b"x")
        await eventually(status_is(store, job.id, JobStatus.FAILED), what="failure")
    failed = await store.get(job.id)
    assert failed.last_error == "ValueError: bad payload b'x'"
    assert failed.attempt == 1


async def test_concurrency_limits_parallel_handlers(store: Harness, settings: Settings) -> None:
    active, peak = 0, 0
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1

    async with running(make_worker(settings, handler, concurrency=3)):
        jobs = [await store.enqueue("t", b"") for _ in range(7)]

        async def three_running() -> bool:
            return active == 3

        await eventually(three_running, what="3 handlers running")

        async def the_rest_wait_in_redis() -> bool:
            # Ids the worker took for its next round go back while its slots stay busy.
            queue = store.keys.queue("t")
            return (await store.redis.llen(queue.ready), await store.redis.llen(queue.popped)) == (4, 0)

        await eventually(the_rest_wait_in_redis, what="the 4 others back in the ready list")
        release.set()
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="all complete")
    assert peak == 3


async def test_a_quick_job_is_recorded_while_the_others_keep_the_worker_busy(
    store: Harness, settings: Settings
) -> None:
    """The fetcher, waiting for free slots, would record completions with its next
    take; one that finishes while the rest run on must not wait for that."""
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        if job.payload == b"slow":
            await release.wait()

    async with running(make_worker(settings, handler, concurrency=4)):
        slow = [await store.enqueue("t", b"slow") for _ in range(3)]
        quick = await store.enqueue("t", b"quick")
        await eventually(status_is(store, quick.id, JobStatus.COMPLETED), what="the quick job recorded")
        assert [(await store.get(j.id)).status for j in slow] == [JobStatus.RUNNING] * 3
        release.set()


async def test_two_workers_never_run_one_job_at_once(store: Harness, settings: Settings) -> None:
    running_now: set[str] = set()
    runs: list[str] = []
    overlaps: list[str] = []

    async def handler(job: Job) -> None:
        if job.id in running_now:
            overlaps.append(job.id)
        running_now.add(job.id)
        runs.append(job.id)
        await asyncio.sleep(0.001)
        running_now.discard(job.id)

    first = make_worker(settings, handler, concurrency=8, worker_id="first")
    second = make_worker(settings, handler, concurrency=8, worker_id="second")
    async with running(first), running(second):
        jobs = [await store.enqueue("t", b"") for _ in range(300)]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="all complete")
    assert overlaps == []
    assert sorted(runs) == sorted(j.id for j in jobs)  # each ran exactly once
    workers = {(await store.get(j.id)).worker_id for j in jobs}
    assert workers == {"first", "second"}


async def test_cancelling_a_running_job_cancels_its_handler(store: Harness, settings: Settings) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> None:
        if job.payload == b"quick":
            return
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running(make_worker(settings, handler)):
        job = await store.enqueue("t", b"forever")
        await asyncio.wait_for(started.wait(), 10)
        await store.cancel(job.id)
        await asyncio.wait_for(cancelled.wait(), 5)
        assert (await store.get(job.id)).status is JobStatus.CANCELLED
        after = await store.enqueue("t", b"quick")  # the slot was given back
        await eventually(status_is(store, after.id, JobStatus.COMPLETED), what="next job")


async def test_a_cancelled_pending_job_never_starts(store: Harness, settings: Settings) -> None:
    started: list[bytes] = []

    async def handler(job: Job) -> None:
        started.append(job.payload)

    doomed = await store.enqueue("t", b"doomed")
    await store.cancel(doomed.id)
    async with running(make_worker(settings, handler)):
        marker = await store.enqueue("t", b"marker")
        await eventually(status_is(store, marker.id, JobStatus.COMPLETED), what="marker")
    assert started == [b"marker"]
    assert (await store.get(doomed.id)).status is JobStatus.CANCELLED


async def test_scheduled_job_starts_at_its_time_not_before(store: Harness, settings: Settings) -> None:
    started_at: list[int] = []

    async def record_start(job: Job) -> None:
        seconds, micros = await store.redis.time()  # the clock the schedule uses
        started_at.append(seconds * 1000 + micros // 1000)

    async with running(make_worker(settings, record_start)):
        now = (await store.enqueue("clock", b"")).created_at
        job = await store.enqueue("t", b"", now + 700)
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="scheduled job")
    [start] = started_at
    assert start >= job.execution_time_ms


def outliving_its_lease(started: asyncio.Event, taken_over: asyncio.Event) -> Handler:
    """A handler whose first run outlives its lease: it ignores cancellation and returns
    once `taken_over` is set. Later runs return at once."""

    async def stubborn_first_time(job: Job) -> None:
        if job.attempt > 1:
            return
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await taken_over.wait()

    return stubborn_first_time


async def take_over(store: Harness, job: Job) -> None:
    """The lease expires (as if the worker had stalled) and a reaper re-queues the job."""
    await store.redis.zadd(store.keys.queue(job.type).leases, {job.id: 0})
    assert await store.transitions.recover(job.type, job.id) == Result(Outcome.RECOVERED)


async def test_stale_result_is_refused_and_counted(
    store: Harness, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that outlives its lease (and ignores cancellation) cannot record a result."""
    started, taken_over = asyncio.Event(), asyncio.Event()
    handler = outliving_its_lease(started, taken_over)
    worker = make_worker(settings, handler, run_reaper=False, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        async with running(worker):
            job = await store.enqueue("t", b"")
            await asyncio.wait_for(started.wait(), 10)
            await take_over(store, job)
            taken_over.set()

            async def refused() -> bool:
                return worker.stats[Event.STALE_RESULT] == 1

            await eventually(refused, what="refused result")
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="second attempt")
    assert (await store.get(job.id)).attempt == 2
    assert any("refused" in r.getMessage() for r in caplog.records)


async def test_shutdown_lets_short_handlers_finish(store: Harness, settings: Settings) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await finish.wait()

    worker = make_worker(settings, handler, shutdown_grace_s=10)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    job = await store.enqueue("t", b"")
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.sleep(0.1)  # shutdown has begun; the handler is still inside its grace period
    assert not task.done()
    finish.set()
    await asyncio.wait_for(task, 10)
    assert (await store.get(job.id)).status is JobStatus.COMPLETED


@pytest.mark.parametrize("how", ["stop event", "task cancellation"])
async def test_shutdown_hands_back_unfinished_jobs(store: Harness, settings: Settings, how: str) -> None:
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    worker = make_worker(settings, handler, shutdown_grace_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    job = await store.enqueue("t", b"")
    await asyncio.wait_for(started.wait(), 10)
    if how == "stop event":
        stop.set()
        await asyncio.wait_for(task, 10)
    else:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    back = await store.get(job.id)
    assert (back.status, back.attempt, back.finished_at) == (JobStatus.PENDING, 0, 0)
    assert await store.redis.lrange(store.keys.queue("t").ready, 0, -1) == [job.id.encode()]
    assert await store.redis.zcard(store.keys.queue("t").leases) == 0


async def _prefetched(store: Harness, worker: Worker, first: Job, then: Job) -> None:
    """Waits until `then` is claimed (RUNNING) while `first` holds the only slot."""
    await eventually(status_is(store, first.id, JobStatus.RUNNING), what="first job running")
    await eventually(status_is(store, then.id, JobStatus.RUNNING), what="second job prefetched")
    assert (worker.stats[Event.CLAIMED], worker.stats[Event.STARTED]) == (2, 1)  # one claimed, not started


async def test_prefetched_jobs_start_as_slots_free_and_all_run(store: Harness, settings: Settings) -> None:
    started: list[bytes] = []
    release = asyncio.Event()
    running_now = 0
    most = 0

    async def handler(job: Job) -> None:
        nonlocal running_now, most
        started.append(job.payload)
        running_now += 1
        most = max(most, running_now)
        await release.wait()
        running_now -= 1

    worker = make_worker(settings, handler, concurrency=1, prefetch=2)
    async with running(worker):
        jobs = [await store.enqueue("t", str(i).encode()) for i in range(3)]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.RUNNING), what="all three claimed")
        assert started == [b"0"]  # one slot: the other two wait, claimed
        release.set()
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="all three done")
    assert (sorted(started), most) == ([b"0", b"1", b"2"], 1)


async def test_a_cancelled_prefetched_job_is_dropped_unstarted(store: Harness, settings: Settings) -> None:
    started: list[bytes] = []
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        started.append(job.payload)
        await release.wait()

    worker = make_worker(settings, handler, concurrency=1, prefetch=1)
    async with running(worker):
        first = await store.enqueue("t", b"first")
        doomed = await store.enqueue("t", b"doomed")
        await _prefetched(store, worker, first, doomed)
        await store.cancel(doomed.id)

        async def dropped() -> bool:
            return worker.stats[Event.CANCELLED] == 1

        await eventually(dropped, what="prefetched job dropped")
        release.set()
        await eventually(status_is(store, first.id, JobStatus.COMPLETED), what="first job")
    assert started == [b"first"]
    assert (await store.get(doomed.id)).status is JobStatus.CANCELLED


async def test_shutdown_hands_back_prefetched_jobs_at_once(store: Harness, settings: Settings) -> None:
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        await release.wait()

    worker = make_worker(settings, handler, concurrency=1, prefetch=1, shutdown_grace_s=30)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    first = await store.enqueue("t", b"first")
    waiting = await store.enqueue("t", b"waiting")
    await _prefetched(store, worker, first, waiting)
    stop.set()
    # Handed back while the running job is still inside its grace period.
    await eventually(status_is(store, waiting.id, JobStatus.PENDING), what="prefetched job handed back")
    assert not task.done()
    back = await store.get(waiting.id)
    assert (back.attempt, back.finished_at) == (0, 0)
    assert await store.redis.lrange(store.keys.queue("t").ready, 0, -1) == [waiting.id.encode()]
    release.set()
    await asyncio.wait_for(task, 10)
    assert (await store.get(first.id)).status is JobStatus.COMPLETED


def test_bad_options_are_refused(settings: Settings) -> None:
    async def handler(job: Job) -> None: ...

    with pytest.raises(ValueError, match="type"):
        Worker("bad type", handler, settings=settings)
    with pytest.raises(ValueError, match="concurrency"):
        Worker("t", handler, settings=settings, concurrency=0)
    with pytest.raises(ValueError, match="prefetch"):
        Worker("t", handler, settings=settings, prefetch=-1)
    with pytest.raises(ValueError, match="heartbeat_s"):
        Worker("t", handler, settings=settings, lease_s=1, heartbeat_s=1)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
async def test_routine_steps_are_logged_when_debug_is_on_as_the_worker_starts(
    store: Harness, settings: Settings, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    seen: list[Event] = []

    def observer(event: Event, job: object, detail: object) -> None:
        seen.append(event)

    async def handler(job: Job) -> None:
        pass

    async def reported() -> bool:
        return Event.COMPLETED in seen

    worker = make_worker(settings, handler, observers=[observer])  # before logging is set up
    with caplog.at_level(level, logger="jobqueue.jobs"):
        async with running(worker):
            queued = await store.enqueue("t")
            await eventually(reported, what="the completion reported")
    routine = [
        r.getMessage() for r in caplog.records if r.name == "jobqueue.jobs" and queued.id in r.getMessage()
    ]
    if level == logging.DEBUG:
        steps = [line.split(": ")[1].split(",")[0] for line in routine]
        assert steps == ["claimed", "started", "ran", "completed"]
    else:
        assert routine == []
    # Other observers see every event either way.
    assert [e for e in seen if e in (Event.CLAIMED, Event.STARTED, Event.COMPLETED)] == [
        Event.CLAIMED,
        Event.STARTED,
        Event.COMPLETED,
    ]
