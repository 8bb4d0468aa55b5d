"""Sync handlers (plain functions) in a real worker against a real Redis: in a thread
pool the loop stays free (leases kept), concurrency holds, timeouts and cancellation
are reported while the thread runs on; the process executor."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobqueue.events import Event
from jobqueue.log_lines import RUNNING_JOB
from jobqueue.model import Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.worker import Backoff, PermanentError, Worker
from jobqueue.worker.sync_handlers import Executor, is_async

from .conftest import eventually, status_is
from .harness import Harness
from .test_cli import serve_until_completed
from .test_worker import make_worker, running

HELD_S = 30.0  # the longest a test's blocked handler waits to be let go (a bound, never reached)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What blocked handlers wait for; set at the end of the test, so that no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


def block_until(gate: threading.Event, *, busy: bool = False) -> None:
    """Blocks the calling thread until `gate` is set (at most HELD_S): waiting, or
    spinning in Python bytecode (CPU-bound: it holds the GIL as much as it is given)."""
    deadline = time.monotonic() + HELD_S
    if not busy:
        gate.wait(HELD_S)
        return
    while not gate.is_set() and time.monotonic() < deadline:
        pass


async def test_a_sync_handler_runs_and_completes_the_job(store: Harness, settings: Settings) -> None:
    seen: list[tuple[bytes, str, Job | None]] = []

    def handler(job: Job) -> None:
        seen.append((job.payload, threading.current_thread().name, RUNNING_JOB.get(None)))

    async with running(make_worker(settings, handler)):
        queued = await store.enqueue("t", b"hello")
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    [(payload, thread, running_job)] = seen
    assert payload == b"hello" and thread.startswith("jobqueue-t")  # in the worker's pool, not the loop's
    assert running_job is not None and running_job.id == queued.id  # its log lines name its job


async def test_a_plain_function_that_returns_a_coroutine_still_has_it_awaited(
    store: Harness, settings: Settings
) -> None:
    """`lambda job: handle(job)` worked before sync handlers: it still does."""
    awaited: list[bytes] = []

    async def handle(job: Job) -> None:
        awaited.append(job.payload)

    async with running(make_worker(settings, lambda job: handle(job))):  # noqa: PLW0108 - the point
        queued = await store.enqueue("t", b"wrapped")
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    assert awaited == [b"wrapped"]


async def test_a_blocking_sync_handler_keeps_its_lease_past_the_liveness_window(
    store: Harness, settings: Settings, gate: threading.Event
) -> None:
    """A handler that spins in Python for several liveness windows: its heartbeats keep
    going (the loop is free), so its lease is renewed and no reaper takes the job back."""
    started = threading.Event()

    def spin(job: Job) -> None:
        started.set()
        block_until(gate, busy=True)

    worker = make_worker(settings, spin, lease_s=1.0, liveness_s=1.0, heartbeat_s=0.1)
    async with running(worker):
        job = await store.enqueue("t", b"")
        await asyncio.to_thread(started.wait, 10)
        leases = store.keys.queue("t").leases
        first_expiry = await eventually(lambda: store.redis.zscore(leases, job.id), what="a lease")

        async def renewed_past_three_windows() -> bool:
            expiry = await store.redis.zscore(leases, job.id)
            return expiry is not None and expiry > first_expiry + 3_000

        await eventually(renewed_past_three_windows, timeout=20, what="the lease renewed for 3 s")
        assert (await store.get(job.id)).status is JobStatus.RUNNING
        gate.set()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    done = await store.get(job.id)
    assert done.attempt == 1
    assert worker.stats[Event.LEASE_LOST] == 0 and worker.stats[Event.STARTED] == 1


async def test_concurrency_limits_sync_handlers(
    store: Harness, settings: Settings, gate: threading.Event
) -> None:
    lock = threading.Lock()
    active, peak = 0, 0

    def handler(job: Job) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        block_until(gate)
        with lock:
            active -= 1

    worker = make_worker(settings, handler, concurrency=3, threads=5)
    async with running(worker):
        jobs = [await store.enqueue("t", b"") for _ in range(7)]

        async def three_running() -> bool:
            return active == 3

        await eventually(three_running, what="3 handlers running")
        ready = store.keys.queue("t").ready
        await eventually(lambda: _equals(store.redis.llen(ready), 4), what="the other 4 waiting in Redis")
        gate.set()
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="all complete")
    assert peak == 3


async def _equals(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_a_timed_out_sync_run_fails_at_once_and_keeps_its_slot_until_it_returns(
    store: Harness, settings: Settings, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    order: list[str] = []

    def handler(job: Job) -> None:
        if job.payload == b"stuck":
            block_until(gate)
            order.append("stuck returned")
        else:
            order.append("next started")

    worker = make_worker(settings, handler, concurrency=1, timeout_s=0.3, max_attempts=1)
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        async with running(worker):
            stuck = await store.enqueue("t", b"stuck")
            await eventually(status_is(store, stuck.id, JobStatus.FAILED), what="the timeout reported")
            nxt = await store.enqueue("t", b"next")
            await eventually(lambda: _true("sync handler runs on" in caplog.text), what="the warning")
            # The next job is claimed into the one slot only when the stuck thread returns.
            assert order == [] and (await store.get(nxt.id)).status is JobStatus.PENDING
            gate.set()
            await eventually(status_is(store, nxt.id, JobStatus.COMPLETED), what="the next job")
    failed = await store.get(stuck.id)
    assert (failed.last_error, failed.attempt) == ("timed out after 0.3 s", 1)
    assert order == ["stuck returned", "next started"]
    assert caplog.text.count("sync handler runs on") == 1
    assert worker.stats[Event.DEAD_LETTERED] == 1


async def _true(value: bool) -> bool:
    return value


async def test_cancelling_a_job_whose_sync_handler_runs(
    store: Harness, settings: Settings, gate: threading.Event
) -> None:
    started = threading.Event()
    calls: list[bytes] = []

    def handler(job: Job) -> None:
        calls.append(job.payload)
        if job.payload == b"long":
            started.set()
            block_until(gate)

    worker = make_worker(settings, handler, concurrency=1)
    async with running(worker):
        job = await store.enqueue("t", b"long")
        await asyncio.to_thread(started.wait, 10)
        await store.cancel(job.id)
        await eventually(lambda: _true(worker.stats[Event.CANCELLED] == 1), what="the cancel seen")
        gate.set()
        after = await store.enqueue("t", b"quick")
        await eventually(status_is(store, after.id, JobStatus.COMPLETED), what="the slot given back")
    assert (await store.get(job.id)).status is JobStatus.CANCELLED
    assert calls == [b"long", b"quick"]


async def test_a_sync_handlers_exceptions_fail_the_job(store: Harness, settings: Settings) -> None:
    def handler(job: Job) -> None:
        if job.payload == b"permanent":
            raise PermanentError("no use retrying")
        raise ValueError(f"bad payload {job.payload!r}")

    worker = make_worker(settings, handler, max_attempts=2, backoff=Backoff(base_ms=10))
    async with running(worker):
        permanent = await store.enqueue("t", b"permanent")
        flaky = await store.enqueue("t", b"x")
        await eventually(status_is(store, permanent.id, JobStatus.FAILED), what="failed at once")
        await eventually(status_is(store, flaky.id, JobStatus.FAILED), what="failed after its retry")
    permanently = await store.get(permanent.id)
    assert (permanently.last_error, permanently.attempt) == (
        "jobqueue.worker.errors.PermanentError: no use retrying",
        1,
    )
    failed = await store.get(flaky.id)
    assert (failed.last_error, failed.attempt) == ("ValueError: bad payload b'x'", 2)
    assert worker.stats[Event.RETRY_SCHEDULED] == 1


async def test_shutdown_hands_back_a_stuck_sync_run_without_waiting_for_its_thread(
    store: Harness, settings: Settings, gate: threading.Event
) -> None:
    started = threading.Event()

    def handler(job: Job) -> None:
        started.set()
        block_until(gate)

    worker = make_worker(settings, handler, shutdown_grace_s=0.2, lease_s=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    job = await store.enqueue("t", b"")
    await asyncio.to_thread(started.wait, 10)
    stop.set()
    await asyncio.wait_for(task, 20)  # not the lease (60 s) waited out for the thread
    back = await store.get(job.id)
    assert (back.status, back.attempt) == (JobStatus.PENDING, 0)


# -- the process executor ------------------------------------------------------


def pid_of_the_handler(job: Job) -> None:
    """Module-level, so that it pickles. Writes where it ran; 'hang' never returns,
    'die' ends its process."""
    Path(job.payload.decode()).write_text(str(os.getpid()))
    if job.payload.endswith(b"hang"):
        signal.pause()
    if job.payload.endswith(b"die"):
        os._exit(3)


@dataclasses.dataclass
class Note:
    path: str
    text: str


def write_note(note: Note, job: Job) -> None:
    """A typed sync handler (module-level, so that it pickles): its payload decoded
    from JSON by the worker, the function run in the pool."""
    Path(note.path).write_text(f"{note.text} {job.attempt} {os.getpid()} {threading.current_thread().name}")


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_typed_sync_handler_gets_its_payload_decoded_in_the_pool(
    executor: Executor, store: Harness, settings: Settings, tmp_path: Path
) -> None:
    worker = make_worker(settings, write_note, executor=executor)
    assert worker.codec.name == "json"
    out = tmp_path / "note"
    async with running(worker):
        payload = json.dumps({"path": str(out), "text": "hello"}).encode()
        queued = await store.enqueue("t", payload)
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    text, attempt, pid, thread = out.read_text().split()
    assert (text, attempt) == ("hello", "1")
    if executor == "process":
        assert int(pid) != os.getpid()
    else:
        assert int(pid) == os.getpid() and thread.startswith("jobqueue-t")


@pytest.mark.parametrize("ended_by", ["timeout", "cancel"])
async def test_the_process_executor_runs_calls_in_another_process_and_ends_those_given_up_on(
    store: Harness, settings: Settings, tmp_path: Path, ended_by: str
) -> None:
    timeout_s = 3.0 if ended_by == "timeout" else None
    worker = make_worker(
        settings, pid_of_the_handler, executor="process", concurrency=1, timeout_s=timeout_s, max_attempts=1
    )
    hang_file = tmp_path / "hang"
    async with running(worker):
        hang = await store.enqueue("t", str(hang_file).encode())
        if ended_by == "cancel":
            running_pid = lambda: _true(hang_file.exists() and hang_file.read_text() != "")  # noqa: E731
            await eventually(running_pid, what="the call running")
            await store.cancel(hang.id)
            await eventually(status_is(store, hang.id, JobStatus.CANCELLED), what="the cancel")
        else:
            await eventually(status_is(store, hang.id, JobStatus.FAILED), what="the timeout")
        # The hung process was ended: the one slot is free for the next job at once.
        done = await store.enqueue("t", str(tmp_path / "done").encode())
        await eventually(status_is(store, done.id, JobStatus.COMPLETED), what="the next job")
    if ended_by == "timeout":
        assert (await store.get(hang.id)).last_error == "timed out after 3 s"
    hung_pid = int(hang_file.read_text())
    assert os.getpid() not in {hung_pid, int((tmp_path / "done").read_text())}
    await eventually(lambda: _true(not Path(f"/proc/{hung_pid}").exists()), what="the hung process gone")


async def test_a_process_that_dies_fails_its_run_and_the_next_gets_a_new_one(
    store: Harness, settings: Settings, tmp_path: Path
) -> None:
    worker = make_worker(settings, pid_of_the_handler, executor="process", concurrency=1, max_attempts=1)
    async with running(worker):
        dead = await store.enqueue("t", str(tmp_path / "die").encode())
        await eventually(status_is(store, dead.id, JobStatus.FAILED), what="the failure")
        done = await store.enqueue("t", str(tmp_path / "done").encode())
        await eventually(status_is(store, done.id, JobStatus.COMPLETED), what="the next job")
    assert "BrokenProcessPool" in (await store.get(dead.id)).last_error
    assert (tmp_path / "die").read_text() != (tmp_path / "done").read_text()  # another process


def test_the_process_executor_refuses_a_handler_that_does_not_pickle(settings: Settings) -> None:
    with pytest.raises(TypeError, match="executor='process' needs a handler that pickles"):
        Worker("t", lambda job: None, settings=settings, executor="process")


# -- telling sync from async -----------------------------------------------------


async def _async_handler(job: Job, extra: int = 0) -> None: ...


def _sync_handler(job: Job, extra: int = 0) -> None: ...


class _AsyncCallable:
    async def __call__(self, job: Job) -> None: ...


class _SyncCallable:
    def __call__(self, job: Job) -> None: ...


def test_sync_and_async_handlers_are_told_apart_once_at_construction(settings: Settings) -> None:
    for handler in (_async_handler, functools.partial(_async_handler, extra=1), _AsyncCallable()):
        assert is_async(handler), handler
        assert Worker("t", handler, settings=settings).sync_runs is None
    for handler in (_sync_handler, functools.partial(_sync_handler, extra=1), _SyncCallable()):
        assert not is_async(handler), handler
        assert Worker("t", handler, settings=settings).sync_runs is not None
    assert is_async(functools.partial(_AsyncCallable()))


def _double(job: Job) -> bytes:
    return job.payload * 2


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_workers_handler_awaited_on_its_own_returns_what_the_function_returns(
    settings: Settings, executor: Executor
) -> None:
    """What the worker awaits for each job (and what a test of a handler may await)."""
    worker = Worker("t", _double, settings=settings, executor=executor)
    job = Job("j", "t", b"ab", JobStatus.RUNNING, 0, 0, 0)
    assert await worker.handler(job) == b"abab"
    assert worker.sync_runs is not None
    worker.sync_runs.close()


def test_bad_sync_options_are_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="threads and executor are for a sync handler"):
        Worker("t", _async_handler, settings=settings, threads=4)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        Worker("t", _sync_handler, settings=settings, threads=0)
    with pytest.raises(ValueError, match="executor must be one of 'thread', 'process'"):
        Worker("t", _sync_handler, settings=settings, executor="fibre")  # type: ignore[arg-type]


async def test_jobqueue_worker_loads_a_module_with_a_sync_handler(
    tmp_path: Path, redis_url: str, store: Harness
) -> None:
    module = tmp_path / "sync_worker.py"
    module.write_text(
        "from jobqueue.worker import Job, Worker\n"
        "def crunch(job: Job) -> None:\n"
        "    sum(range(10_000))\n"
        "workers = [\n"
        "    Worker('cli-sync', crunch, heartbeat_s=0.2, threads=2),\n"
        "    Worker('cli-sync-process', crunch, heartbeat_s=0.2, executor='process'),\n"
        "]\n"
    )
    jobs = [await store.enqueue(job_type) for job_type in ("cli-sync-process", "cli-sync")]
    await serve_until_completed(module, redis_url, store, [job.id for job in jobs])


def summarise(note: Note) -> dict[str, object]:
    """A typed sync handler whose return value is stored as the job's result (JSON, its codec's)."""
    return {"path": note.path, "length": len(note.text)}


async def test_a_sync_handlers_return_value_is_the_jobs_result(store: Harness, settings: Settings) -> None:
    async with running(make_worker(settings, _double)):
        queued = await store.enqueue("t", b"ab")
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    assert (await store.get(queued.id)).result == b"abab"
    typed = Worker("typed-sync", summarise, settings=settings, heartbeat_s=0.1, lease_s=5.0)
    async with running(typed):
        queued = await store.enqueue("typed-sync", json.dumps({"path": "p", "text": "four"}).encode())
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    assert json.loads((await store.get(queued.id)).result) == {"path": "p", "length": 4}
