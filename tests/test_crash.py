"""Real worker processes killed at the worst moments: no job is lost.

Each test runs `jobqueue worker` subprocesses against the test Redis, kills one
with SIGKILL (or stops it with SIGTERM or SIGSTOP), and checks through Redis that the job
comes back and completes. The workers (tests/worker_apps.py) count as dead 1 s
after their last heartbeat and run a reaper every 0.2 s.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from jobqueue.model import JobStatus

from .conftest import Spawn, eventually, log_of, runs, status_is
from .harness import Harness


async def test_sigkill_mid_job_leads_to_redelivery(store: Harness, spawn: Spawn) -> None:
    victim = spawn()
    job = await store.enqueue("sleepy", b"30")

    await eventually(lambda: runs(store, "test:started"), timeout=30, what="first run")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    await store.redis.hset(store.keys.job(job.id), "payload", b"0")  # the next run is quick
    spawn()

    # Well within the 30 s lease: only the worker's 1 s liveness deadline brings it back this soon.
    await eventually(
        status_is(store, job.id, JobStatus.COMPLETED), timeout=15, what="redelivery after the kill"
    )
    first, second = await runs(store, "test:started")
    assert (first[1], second[1]) == (1, 2)
    assert first[2] == victim.pid != second[2]
    assert f":{victim.pid}:" in (await store.get(job.id)).last_error  # "worker <host>:<pid>:… died"


@pytest.mark.parametrize("point", ["after_pop", "after_claim", "before_finish"])
async def test_sigkill_at_each_crash_point_loses_nothing(store: Harness, spawn: Spawn, point: str) -> None:
    victim = spawn(crash_at=point)
    job = await store.enqueue("sleepy", b"0")
    assert victim.wait(30) == -signal.SIGKILL
    spawn()

    await eventually(
        status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what=f"completion after {point}"
    )
    assert (await store.get(job.id)).attempt == (1 if point == "after_pop" else 2)


async def test_sigterm_hands_back_a_long_job_and_exits_0(store: Harness, spawn: Spawn) -> None:
    worker = spawn()
    job = await store.enqueue("sleepy", b"60")

    await eventually(lambda: runs(store, "test:started"), timeout=30, what="run start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    back = await store.get(job.id)
    assert (back.status, back.attempt) == (JobStatus.PENDING, 0)
    assert await store.redis.lrange(store.keys.queue("sleepy").ready, 0, -1) == [job.id.encode()]


async def test_a_paused_worker_cannot_finish_a_job_taken_over(store: Harness, spawn: Spawn) -> None:
    """SIGSTOP past the liveness deadline: the job runs elsewhere; the paused worker's result is refused."""
    paused = spawn()
    job = await store.enqueue("sleepy", b"3")
    await eventually(lambda: runs(store, "test:started"), timeout=30, what="first run")
    paused.send_signal(signal.SIGSTOP)
    try:
        spawn()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what="run elsewhere")
        finished = await store.get(job.id)
        assert finished.attempt == 2
    finally:
        paused.send_signal(signal.SIGCONT)
    # The resumed worker's heartbeat finds its lease lost and cancels the handler;
    # had it finished, complete.lua would have refused the stale token.
    await eventually(
        lambda: _logged(paused, "lease lost", "refused"), timeout=20, what="the stale run stopped"
    )
    again = await store.get(job.id)
    assert (again.status, again.attempt, again.finished_at) == (JobStatus.COMPLETED, 2, finished.finished_at)


async def test_a_resumed_worker_does_not_start_a_job_it_claimed_before_its_pause(
    store: Harness, spawn: Spawn, tmp_path: Path
) -> None:
    """SIGSTOP past the liveness deadline while a job waits, claimed ahead, for the only slot:
    both run and complete elsewhere. Resumed, the worker's first job ends (its result is
    refused) and frees the slot; the worker confirms its leases before it starts the job
    it claimed ahead, and drops it."""
    prefetching = "tests/worker_apps.py:prefetching"
    paused = spawn(target=prefetching)
    first = await store.enqueue("prefetching", b"2")
    ahead = await store.enqueue("prefetching", b"0")
    await eventually(status_is(store, ahead.id, JobStatus.RUNNING), timeout=30, what="the job claimed ahead")

    async def first_started() -> bool:
        return (tmp_path / "starts").exists() and first.id in (tmp_path / "starts").read_text()

    await eventually(first_started, timeout=30, what="the first job's handler started")
    paused.send_signal(signal.SIGSTOP)
    try:
        spawn(target=prefetching)
        for job in (first, ahead):
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what="run elsewhere")
    finally:
        paused.send_signal(signal.SIGCONT)
    await eventually(lambda: _logged(paused, f"job {ahead.id} (prefetching): lease lost"), timeout=20)
    starts = [line.split() for line in (tmp_path / "starts").read_text().splitlines()]
    assert [job_id for job_id, _, pid in starts if int(pid) == paused.pid] == [first.id]


async def _logged(process: subprocess.Popen[bytes], *needles: str) -> bool:
    text = log_of(process)
    return any(n in text for n in needles)
