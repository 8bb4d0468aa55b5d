"""Progress: a handler's `job.set_progress(fraction, message)`, written to the job.

A call only keeps the value (the latest wins); a writer task of the job's run
writes it with progress.lua, at once if the run wrote none within the last
`interval_s`, else when that much has passed: a tight loop of calls costs Redis
a write per interval, not one per call. The last value is not lost: a completed
run's goes with its completion (`hand_over`: round.lua writes it in the same
HSET, no round trip of its own, so a run shorter than the interval costs no
write at all), a failed run's is written before its failure (`flush`).

Every write is fenced by the run's lease token: a worker that lost the job's
lease (or whose job was cancelled or finished) writes nothing. A failed write
(Redis down, or a stale lease) is dropped: the next value, or the outcome,
follows.

A sync handler calls set_progress from its pool thread: the value is kept under
a lock, and the writer is started on the worker's loop (call_soon_threadsafe)
only when none is running, so a thread's tight loop costs the loop nothing per
call. A handler run with executor="process" gets a copy of the job whose
set_progress raises RuntimeError (model.Job.__setstate__): its process has no way
to the worker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """What a run reported and has not written yet, and when it may write next."""

    job: Job
    value: tuple[float, str] | None = None  # the latest value not yet written
    last: tuple[float, str] = (0.0, "")  # the latest value
    next_at: float = 0.0  # the loop time from which the next write may go
    writing: bool = False  # a writer task runs, or is about to start (under the lock)
    writer: asyncio.Task[None] | None = None
    in_flight: bool = False  # the writer waits for Redis' answer: not to be cancelled
    flushing: asyncio.Event | None = None  # set by flush: the writer skips its wait
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
        """Keeps the latest value of the job's run (any thread); starts its writer if
        none runs."""
        with self._lock:
            if job._progress_sink is not self._sink:
                return  # its run ended meanwhile (end() detached it)
            key = (job.id, job.lease_token)
            run = self._runs.get(key)
            if run is None:
                run = self._runs[key] = _RunProgress(job)
            run.value = run.last = (fraction, message)
            if run.writing:
                return
            run.writing = True
        if threading.get_ident() == self._loop_thread:
            self._start(run)
        else:
            self._loop.call_soon_threadsafe(self._start, run)

    def _start(self, run: _RunProgress) -> None:
        if run.over:
            return
        if run.flushing is None:
            run.flushing = asyncio.Event()
        run.writer = asyncio.create_task(self._write_while_pending(run))

    async def _write_while_pending(self, run: _RunProgress) -> None:
        assert run.flushing is not None
        while True:
            wait_s = run.next_at - self._loop.time()
            if wait_s > 0 and not run.flushing.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await run.flushing.wait()
            with self._lock:
                value, run.value = run.value, None
                if value is None or run.over:
                    run.writing = False
                    return
            run.in_flight = True
            try:
                await self._write(run.job, *value)
            finally:
                run.in_flight = False
            run.next_at = self._loop.time() + self.interval_s

    async def _write(self, job: Job, fraction: float, message: str) -> None:
        try:
            result = await self.transitions.progress(job, fraction, message)
        except REDIS_DOWN as exc:
            log.debug("job %s (%s): progress not written (Redis unavailable: %s)", job.id, job.type, exc)
            return
        if not result.ok:
            log.debug("job %s (%s): progress not written: %s", job.id, job.type, result)

    def reported(self, job: Job) -> bool:
        """Whether the job's run has reported progress (one dict lookup: every run asks)."""
        return (job.id, job.lease_token) in self._runs

    def hand_over(self, job: Job) -> None:
        """Puts the run's last value in the job, for its completion to write (round.lua),
        and leaves the writer nothing more to write. A write still on its way lands
        before the completion (which overwrites it) or after it (refused)."""
        run = self._runs.get((job.id, job.lease_token))
        if run is None:
            return
        with self._lock:
            run.value = None
            job.progress, job.progress_message = run.last
        job.progress_at = int(time.time() * 1000)  # for round.lua: a value to write (it stamps its own)

    async def flush(self, job: Job) -> None:
        """Writes the run's last value now, if it is not written yet (before the run's
        outcome is recorded: after it, the job is no longer RUNNING and the write would
        be refused)."""
        run = self._runs.get((job.id, job.lease_token))
        if run is None:
            return
        if run.flushing is not None:
            run.flushing.set()
        if run.writer is not None and not run.writer.done():
            await run.writer
        with self._lock:
            value, run.value = run.value, None
        if value is not None:
            await self._write(job, *value)

    def end(self, job: Job) -> None:
        """Forgets the run (its handler is done): later calls of its set_progress go
        nowhere, a writer still waiting is cancelled."""
        with self._lock:
            job._progress_sink = _run_over
            run = self._runs.pop((job.id, job.lease_token), None)
            if run is not None:
                run.over = True
        if run is not None and run.writer is not None and not run.writer.done() and not run.in_flight:
            run.writer.cancel()  # a write on its way finishes (a cancelled command costs its connection)
