"""Progress: a handler's `job.set_progress(fraction, message)`, written to the job.

A call only keeps the value (the latest wins). The run's first report arms a
timer: `interval_s` later a writer task writes the latest value with
progress.lua, and arms the timer again if more came meanwhile. A tight loop of
calls so costs Redis at most a write per interval, not one per call, and a
report shows within `interval_s`. The last value is not lost: a completed run's
goes with its completion (`hand_over`: round.lua writes it in the same HSET, no
round trip of its own), so a run shorter than the interval costs no write of its
own at all (a timer armed and cancelled); a failed run's is written before its
failure (`flush`).

Every write is fenced by the run's lease token: a worker that lost the job's
lease (or whose job was cancelled or finished) writes nothing. A failed write
(Redis down, or a stale lease) is dropped: the next value, or the outcome,
follows.

A sync handler calls set_progress from its pool thread: the value is kept under
a lock, and the timer is armed on the worker's loop (call_soon_threadsafe) only
when none is armed, so a thread's tight loop costs the loop nothing per call. A
handler run with executor="process" gets a copy of the job whose set_progress
raises RuntimeError (model.Job.__setstate__): its process has no way to the
worker's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time

from ..model import Job
from ..store.transitions import Transitions
from ..supervise import REDIS_DOWN

log = logging.getLogger("jobqueue.worker")

# The shortest time between two progress writes of one job, by default.
PROGRESS_INTERVAL_S = 0.5


@dataclasses.dataclass(eq=False, slots=True)
class _RunProgress:
    """What a run reported and has not written yet, and its timer and writer."""

    job: Job
    next_at: float = 0.0  # the loop time from which the next write may go (0: first report + interval)
    value: tuple[float, str] | None = None  # the latest value not yet written
    last: tuple[float, str] = (0.0, "")  # the latest value
    armed: bool = False  # a timer or a writer will write `value` (under the lock)
    timer: asyncio.TimerHandle | None = None
    writer: asyncio.Task[None] | None = None
    in_flight: bool = False  # the writer waits for Redis' answer: not to be cancelled
    over: bool = False  # the run ended: nothing more is written


def _run_over(job: Job, fraction: float, message: str) -> None:
    """The sink of a job whose run ended (a sync handler's thread that runs on after
    its run timed out or was cancelled): the values go nowhere."""


class ProgressWriter:
    """One worker's progress writes, for each of its runs that reports any."""

    def __init__(self, transitions: Transitions, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.transitions = transitions
        self.interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()  # set() runs in handlers' threads too
        self._runs: dict[tuple[str, int], _RunProgress] = {}  # by (job id, lease token)
        self._sink = self.set  # one bound method for every job

    def attach(self, job: Job) -> None:
        """Makes `job.set_progress` report to this writer, for the run that starts."""
        job._progress_sink = self._sink

    def set(self, job: Job, fraction: float, message: str) -> None:
        """Keeps the latest value of the job's run (any thread); arms its timer if
        none is armed."""
        if threading.get_ident() == self._loop_thread:
            # No lock: whatever else touches the run on this side runs on this thread.
            run = self._keep(job, (fraction, message))
            if run is not None:
                self._arm(run)
            return
        with self._lock:
            run = self._keep(job, (fraction, message))
        if run is not None:
            self._loop.call_soon_threadsafe(self._arm, run)

    def _keep(self, job: Job, value: tuple[float, str]) -> _RunProgress | None:
        """Keeps `value` for the job's run; returns the run if its timer is to be armed."""
        if job._progress_sink is not self._sink:
            return None  # its run ended meanwhile (end() detached it)
        key = (job.id, job.lease_token)
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _RunProgress(job)
        run.value = run.last = value
        if run.armed:
            return None
        run.armed = True
        return run

    def _arm(self, run: _RunProgress) -> None:
        if run.over:
            return
        if not run.next_at:  # the run's first report: its first write an interval later
            run.next_at = self._loop.time() + self.interval_s
        run.timer = self._loop.call_at(run.next_at, self._fire, run)

    def _fire(self, run: _RunProgress) -> None:
        run.timer = None
        if not run.over:
            run.writer = asyncio.create_task(self._write_pending(run))

    async def _write_pending(self, run: _RunProgress) -> None:
        with self._lock:
            value, run.value = run.value, None
            if value is None or run.over:
                run.armed = False
                return
        run.in_flight = True
        try:
            await self._write(run.job, *value)
        finally:
            run.in_flight = False
        run.next_at = self._loop.time() + self.interval_s
        with self._lock:
            if run.value is None or run.over:
                run.armed = False
                return
        self._arm(run)  # more came while it wrote

    async def _write(self, job: Job, fraction: float, message: str) -> None:
        try:
            result = await self.transitions.progress(job, fraction, message)
        except REDIS_DOWN as exc:
            log.debug("job %s (%s): progress not written (Redis unavailable: %s)", job.id, job.type, exc)
            return
        except Exception:  # a bug: logged, but the run goes on to its outcome
            log.exception("job %s (%s): progress not written", job.id, job.type)
            return
        if not result.ok:
            log.debug("job %s (%s): progress not written: %s", job.id, job.type, result)

    def reported(self, job: Job) -> bool:
        """Whether the job's run has reported progress (one dict lookup: every run asks)."""
        return (job.id, job.lease_token) in self._runs

    def hand_over(self, job: Job) -> None:
        """Puts the run's last value in the job, for its completion to write (round.lua),
        and leaves nothing more to write. A write still on its way lands before the
        completion (which overwrites it) or after it (refused)."""
        run = self._runs.get((job.id, job.lease_token))
        if run is None:
            return
        with self._lock:
            run.value = None
            job.progress, job.progress_message = run.last
        job.progress_at = int(time.time() * 1000)  # for round.lua: a value to write (it stamps its own)

    async def flush(self, job: Job) -> None:
        """Writes the run's last value now, if it is not written yet (before a failure
        is recorded: after it, the job is no longer RUNNING and the write is refused)."""
        run = self._runs.get((job.id, job.lease_token))
        if run is None:
            return
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.writer is not None and not run.writer.done():
            await run.writer  # it writes what it took; what came since is written here
        with self._lock:
            value, run.value = run.value, None
        if value is not None:
            await self._write(job, *value)

    def end(self, job: Job) -> None:
        """Forgets the run (its handler is done): later calls of its set_progress go
        nowhere, its timer is cancelled, and its writer unless a write is on its way."""
        with self._lock:
            job._progress_sink = _run_over
            run = self._runs.pop((job.id, job.lease_token), None)
            if run is None:
                return
            run.over = True
        if run.timer is not None:
            run.timer.cancel()
        if run.writer is not None and not run.writer.done() and not run.in_flight:
            run.writer.cancel()  # a write on its way finishes (a cancelled command costs its connection)
