"""The worker: runs a handler for every job of one type, at least once.

The life of one job in a worker:
1. `pop`: wait on the ready list with a blocking BLMOVE into the popped list;
2. `claim`: one script makes it RUNNING under a lease with a new fencing token
   (with `prefetch`, a claimed job may wait here for a free slot);
3. the handler runs (within the job's timeout) while a heartbeat marks the
   worker alive and renews every held lease (one script for all of them); a
   lease found lost (the job was cancelled, or it expired and went to another
   worker) cancels its handler;
4. `complete`, or `fail`: retried later with backoff while attempts are left,
   else FAILED for good; both accepted only with the current token.
A worker killed anywhere in this loses nothing: see jobqueue/reaper.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import os
import random
import signal
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ..config import Settings, connect
from ..faults import crash_point
from ..model import Backoff, Job, check_job_type, check_max_attempts
from ..reaper import Reaper
from ..scheduler import Scheduler
from ..store import JobStore, Keyspace, OwnConnection
from ..supervise import REDIS_DOWN, raise_if_cancelled, supervise
from ..supervise import Backoff as ReconnectBackoff
from .errors import PermanentError, RetryAfter

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("jobqueue.worker")

Handler = Callable[[Job], Awaitable[None]]

MAX_ERROR_CHARS = 4000
# Longest a worker holds back a round trip to make a batch: a claim for more
# than one free slot, a completion for the fetcher to send with its next take.
BATCH_LINGER_S = 0.005


@dataclasses.dataclass(eq=False)
class _Run:
    job: Job
    task: asyncio.Task[None] | None = None
    # Why the worker cancelled the handler ("shutdown", or how the lease was lost).
    interrupted: str | None = None
    handler_done: bool = False


class Worker:
    """Runs `handler` for jobs of `job_type`, `concurrency` at a time.

    Start it with `run()` (blocks; SIGINT/SIGTERM stop it gracefully) or
    `await serve()` inside your own event loop (cancel the task, or set `stop`,
    to stop it gracefully). A handler signals failure by raising: the job is
    retried with backoff while attempts are left (`RetryAfter` sets the delay,
    `PermanentError` fails it at once) and the error text is kept in the job.
    Cancellation of a handler means the job was cancelled, its lease was lost,
    its run took longer than its timeout, or the worker is shutting down.
    """

    def __init__(
        self,
        job_type: str,
        handler: Handler,
        *,
        concurrency: int = 10,
        prefetch: int = 0,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        timeout_s: float | None = None,
        lease_s: float = 15.0,
        heartbeat_s: float = 1.0,
        liveness_s: float = 5.0,
        shutdown_grace_s: float = 10.0,
        block_timeout_s: float = 5.0,
        batch_size: int = 100,
        settings: Settings | None = None,
        worker_id: str | None = None,
        run_scheduler: bool = True,
        run_reaper: bool = True,
    ) -> None:
        """
        Args:
            prefetch: jobs claimed beyond `concurrency`, each started the moment
                a slot frees (no round trip). Worth it for short jobs: a busy
                worker then claims in bigger batches and never idles on a claim.
                A prefetched job is RUNNING (started_at is its claim) and leased
                like a running one: cancelled, it is dropped unstarted; on
                shutdown it is handed back at once. With long jobs, prefetch
                holds work that an idle worker could have taken, so the default
                is none.
            max_attempts: runs a job gets unless it was enqueued with its own
                (a crash of the worker counts as a run).
            backoff: delays between attempts unless the job has its own;
                default 1 s doubling up to 1 h, half of each random.
            timeout_s: the longest a run may take unless the job has its own
                timeout; None: no limit. A run cut short fails and is retried.
            lease_s: how long a job stays this worker's without a heartbeat.
            heartbeat_s: how often the worker says it is alive and renews its
                leases; also how soon a handler learns its job was cancelled.
            liveness_s: how long after its last heartbeat a worker counts as dead
                and its jobs are taken back: a killed worker's jobs run again
                within liveness_s + the reaper interval.
            shutdown_grace_s: on shutdown, how long running handlers may take to
                finish before they are cancelled and their jobs handed back.
            block_timeout_s: longest single blocking pop (the wait is repeated).
            batch_size: most jobs claimed, or completions recorded, per round trip.
            settings: shared settings; default `Settings.from_env()`.
            run_scheduler, run_reaper: run a scheduler and a reaper for this type
                in this process (safe alongside any number of others).
        """
        self.job_type = check_job_type(job_type)
        self.handler = handler
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if not 0 < heartbeat_s < min(lease_s, liveness_s) / 2:
            raise ValueError("heartbeat_s must be positive and under half of lease_s and of liveness_s")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive (or None: no limit)")
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.max_attempts = check_max_attempts(max_attempts)
        self.backoff = backoff or Backoff()
        self.timeout_s = timeout_s
        self.lease_ms = int(lease_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.liveness_ms = int(liveness_s * 1000)
        self.shutdown_grace_s = shutdown_grace_s
        self.block_timeout_s = block_timeout_s
        self.settings = settings or Settings.from_env()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.run_scheduler = run_scheduler
        self.run_reaper = run_reaper
        # completed, retried, failed, handed back, skipped, stale results (refused
        # because the lease had been lost), lost leases.
        self.stats: collections.Counter[str] = collections.Counter()
        self.batch_size = batch_size
        capacity = concurrency + prefetch  # runs held at once: running, and prefetched
        self._capacity = capacity
        # Slots a busy worker waits to have free before its next round (BATCH_LINGER_S at most).
        self._batch_slots = max(1, min(batch_size, capacity // 2))
        self._claim_when_running = capacity - self._batch_slots
        # Ids taken into the popped list by a round, to claim in the next (complete.lua).
        self._taken: list[str] = []
        self._runs: dict[str, _Run] = {}  # every job held under a lease: running or waiting
        self._waiting: collections.deque[_Run] = collections.deque()  # prefetched, not started
        self._slot_freed = asyncio.Event()
        self._completed: dict[str, Job] = {}  # handler done, completion not yet recorded
        self._sending: set[str] = set()  # of those, the ids on their way to Redis
        self._popping = False  # the fetcher waits on an empty queue
        self._fetcher_gone = False
        self._has_completed = asyncio.Event()
        self._all_recorded = asyncio.Event()
        self._store: JobStore | None = None

    @property
    def stale_results(self) -> int:
        return self.stats["stale results"]

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the worker is not running")
        return self._store

    @property
    def redis(self) -> Redis:
        """The worker's Redis client (replies are bytes), for handlers' own commands
        while it runs, as arq's `ctx['redis']`: its pool is made like the worker's (no
        per-command timeout, commands packed in C), and a handler need not open a
        client of its own, whose first connections cost the first jobs milliseconds."""
        return self.store.redis

    def run(self) -> None:
        """Runs until SIGINT or SIGTERM, then shuts down gracefully."""
        run_workers(self)

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Runs until `stop` is set or the task is cancelled; either way shuts down gracefully."""
        # Unbounded pools: the worker's own concurrency bounds its connections.
        redis = connect(self.settings.redis_url, max_connections=None)
        # The fetcher's round trips (pops included) go one after another on a connection of its own.
        fetching = OwnConnection(redis)
        self._store = JobStore(
            redis, keys=Keyspace(self.settings.prefix), retention_ms=self.settings.retention_ms
        )
        # A heartbeat that waits out a long backoff after a Redis outage would let the
        # worker count as dead (liveness_s) and its running jobs run twice: it retries
        # at least once per heartbeat_s.
        retry_heartbeat = ReconnectBackoff(base=min(0.1, self.heartbeat_s), cap=self.heartbeat_s)
        background = [asyncio.create_task(supervise("heartbeat", self._heartbeat_loop, log, retry_heartbeat))]
        completer = asyncio.create_task(supervise("completer", self._completer_loop, log))
        if self.run_scheduler:
            background.append(asyncio.create_task(Scheduler(self.store, [self.job_type]).run()))
        if self.run_reaper:
            reaper = Reaper.from_settings(self.store, self.settings, [self.job_type])
            background.append(asyncio.create_task(reaper.run()))
        fetcher = asyncio.create_task(supervise("fetcher", lambda: self._fetch_loop(fetching), log))
        log.info("worker %s: handling %r, concurrency %d", self.worker_id, self.job_type, self.concurrency)
        try:
            stopped = asyncio.create_task(stop.wait()) if stop else asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait({stopped, fetcher}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
        finally:
            await self._shutdown(fetcher, completer, background)
            await fetching.aclose()
            await redis.aclose()
            self._store = None

    # -- taking jobs -----------------------------------------------------------

    async def _fetch_loop(self, connection: OwnConnection) -> None:
        """Claims jobs whenever slots are free, a batch per round trip while the queue
        has some: each round records the completions that freed the slots, claims
        the ids the round before took, and takes the next ones (complete.lua). An
        empty queue is waited on with one blocking pop (an idle worker wakes on the
        push), and the popped id claimed at once, alone: the smallest call, for the
        latency of an idle worker (with a round instead, S2's p99 measured ~0.15 ms more)."""
        while True:
            raise_if_cancelled()
            await self._wait_for_a_free_slot(connection)
            await self._wait_for_a_batch_of_slots()
            free = self._capacity - len(self._runs)
            claim, self._taken = self._taken[:free], self._taken[free:]
            # Enough for the free slots, and the next batch of slots to free.
            take = min(self.batch_size, max(0, free - len(claim) + self._batch_slots - len(self._taken)))
            claims, taken = await self._round(claim=claim, take=take, via=connection)
            self._taken += taken
            if taken:
                crash_point("after_pop")  # taken, as popped: in the popped list, not claimed
            if claims:
                crash_point("after_claim")
                self._accept(claim, claims)
            if claim and len(self._runs) <= len(claim):
                # An idle worker's jobs: let them start before this loop prepares its
                # next call (~0.05 ms of latency). A busy worker does not yield here:
                # it measured 10% slower with the extra turn of the event loop.
                await asyncio.sleep(0)
            if not self._taken and len(taken) < take and len(self._runs) < self._capacity:
                # The queue is empty (the take got less than it asked for).
                self._popping = True
                try:
                    job_id = await self.store.pop(connection, self.job_type, self.block_timeout_s)
                finally:
                    self._popping = False
                if job_id is not None:
                    crash_point("after_pop")
                    claims = await self.store.claim_many(
                        self.job_type,
                        [job_id],
                        self.worker_id,
                        self.lease_ms,
                        self.max_attempts,
                        via=connection,
                    )
                    crash_point("after_claim")
                    self._accept([job_id], claims)
                    await asyncio.sleep(0)  # as above

    def _accept(self, job_ids: list[str], claims: list[tuple[Job | None, str]]) -> None:
        """Holds the jobs claimed, and starts as many as slots allow."""
        for job_id, (job, outcome) in zip(job_ids, claims, strict=True):
            if job is None:
                self.stats["skipped"] += 1
                level = logging.ERROR if outcome.startswith("corrupt") else logging.INFO
                log.log(level, "job %s: not claimed (%s), skipped", job_id, outcome)
                continue
            run = _Run(job)
            self._runs[job.id] = run
            self._waiting.append(run)
        self._start_waiting()

    async def _wait_for_a_free_slot(self, connection: OwnConnection) -> None:
        """Waits while every slot is taken. Ids taken for the next round go back to
        the queue if no slot frees within BATCH_LINGER_S: with long jobs they would
        wait here, while an idle worker could run them."""
        while len(self._runs) >= self._capacity:
            self._slot_freed.clear()
            if not self._taken:
                await self._slot_freed.wait()
                continue
            try:
                async with asyncio.timeout(BATCH_LINGER_S):
                    await self._slot_freed.wait()
            except TimeoutError:
                await self._give_back_taken(connection)

    async def _give_back_taken(self, via: OwnConnection | None = None) -> None:
        taken, self._taken = self._taken, []
        if taken:
            await self.store.give_back(self.job_type, taken, via=via)

    def _start_waiting(self) -> None:
        """Starts waiting runs while fewer than `concurrency` run."""
        while self._waiting and len(self._runs) - len(self._waiting) < self.concurrency:
            run = self._waiting.popleft()
            run.task = asyncio.create_task(self._execute(run))

    async def _wait_for_a_batch_of_slots(self) -> None:
        """Waits up to BATCH_LINGER_S for half the slots to be free: a round trip
        per freed slot would cost a busy worker more than its jobs, and a slot
        left free by long-running neighbours is filled soon all the same."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BATCH_LINGER_S):
                while len(self._runs) > self._claim_when_running:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()

    # -- running one job -------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        job = run.job
        try:
            timeout_s = job.timeout_ms / 1000 if job.timeout_ms else self.timeout_s
            # No timeout context without a timeout: it costs ~4% of a busy worker's CPU.
            deadline = asyncio.timeout(timeout_s) if timeout_s is not None else None
            try:
                if deadline is None:
                    await self.handler(job)
                else:
                    async with deadline:
                        await self.handler(job)
            except asyncio.CancelledError:
                run.handler_done = True
                if run.interrupted is None:
                    raise
                # The worker cancelled the handler itself: this task goes on to report.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                if run.interrupted == "shutdown":
                    await self._record(job, "handed back", lambda: self.store.release(job))
                else:
                    self.stats["lost leases"] += 1
                    log.warning("job %s: handler cancelled: %s", job.id, run.interrupted)
                return
            except Exception as exc:
                run.handler_done = True
                if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                    error = f"timeout: the run took longer than {timeout_s:g} s"
                else:
                    error = "".join(traceback.format_exception_only(exc)).strip()[:MAX_ERROR_CHARS]
                delay_ms = self._retry_delay_ms(job, exc)
                log.warning("job %s: attempt %d failed: %s", job.id, job.attempt, error, exc_info=exc)
                await self._record(job, "failed", lambda: self.store.fail(job, error, delay_ms))
            else:
                run.handler_done = True
                crash_point("before_finish")
                # Recorded in batches by the completer; the slot is free already.
                self._completed[job.id] = job
                self._all_recorded.clear()
                self._has_completed.set()
        finally:
            del self._runs[job.id]
            self._start_waiting()
            self._slot_freed.set()

    async def _completer_loop(self) -> None:
        """Records the completions the fetcher does not take along: a busy fetcher
        sends them with its next take (one round trip for both). What it leaves
        goes from here after BATCH_LINGER_S, or at once while the fetcher waits on
        an empty queue or has stopped."""
        while True:
            raise_if_cancelled()
            await self._has_completed.wait()
            self._has_completed.clear()
            if not self._popping and not self._fetcher_gone:
                await asyncio.sleep(BATCH_LINGER_S)
            await self._round()

    async def _round(
        self, *, claim: Sequence[str] = (), take: int = 0, via: OwnConnection | None = None
    ) -> tuple[list[tuple[Job | None, str]], list[str]]:
        """One round trip (complete.lua): records up to `batch_size` buffered
        completions not already on their way, claims `claim` and takes up to `take`
        ready ids; returns (claims, ids taken). `via`: the fetcher's connection (the
        completer, which only records, uses the pool)."""
        batch = [job for job in self._completed.values() if job.id not in self._sending]
        if len(batch) > self.batch_size:
            batch = batch[: self.batch_size]
            self._has_completed.set()
        if not batch and not take and not claim:
            return [], []
        self._sending.update(job.id for job in batch)
        try:
            outcomes, claims, taken = await self.store.worker_round(
                self.job_type,
                self.worker_id,
                batch,
                claim=claim,
                take=take,
                lease_ms=self.lease_ms,
                default_max_attempts=self.max_attempts,
                via=via,
            )
        except BaseException:
            if batch:
                self._has_completed.set()  # not recorded (the fetcher stopped, or Redis is down): retry here
            raise
        finally:
            self._sending.difference_update(job.id for job in batch)
        for job, outcome in zip(batch, outcomes, strict=True):
            del self._completed[job.id]
            self._note(job, "completed", outcome)
        if not self._completed:
            self._all_recorded.set()
        return claims, taken

    def _retry_delay_ms(self, job: Job, exc: Exception) -> int | None:
        if isinstance(exc, PermanentError):
            return None
        if isinstance(exc, RetryAfter):
            return int(exc.seconds * 1000)
        return (job.backoff or self.backoff).delay_ms(job.attempt, random.random())

    async def _record(self, job: Job, what: str, write: Callable[[], Awaitable[str]]) -> None:
        """Writes an outcome, retrying through Redis outages while the lease could still hold.

        After that the reaper re-queues the job, so giving up loses nothing. The
        writes are idempotent: a retry after a lost reply changes nothing.
        """
        deadline = asyncio.get_running_loop().time() + self.lease_ms / 1000
        backoff = ReconnectBackoff()
        while True:
            try:
                outcome = await write()
                break
            except REDIS_DOWN as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    log.error("job %s: could not record %s (%s); it will run again", job.id, what, exc)  # noqa: TRY400
                    return
                await asyncio.sleep(backoff.next_delay())
        self._note(job, what, outcome)

    def _note(self, job: Job, what: str, outcome: str) -> None:
        if outcome in ("ok", "retrying", "failed"):
            recorded = {"ok": what, "retrying": "retried", "failed": "failed"}[outcome]
            self.stats[recorded] += 1
            log.debug("job %s: %s (attempt %d)", job.id, recorded, job.attempt)
        else:
            self.stats["stale results"] += 1
            log.warning("job %s: result %r refused: %s", job.id, what, outcome)

    # -- liveness and leases ---------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            raise_if_cancelled()
            held = [(r.job.id, r.job.lease_token) for r in self._runs.values() if not r.handler_done]
            held += [(job.id, job.lease_token) for job in self._completed.values()]
            lost = await self.store.heartbeat(
                self.job_type, self.worker_id, held, self.lease_ms, self.liveness_ms
            )
            for job_id, status in lost:
                run = self._runs.get(job_id)
                if run is None or run.handler_done:
                    continue
                why = "job was cancelled" if status == "CANCELLED" else f"lease lost (job {status})"
                if run.task is None:  # prefetched: drop it unstarted
                    self._waiting.remove(run)
                    del self._runs[job_id]
                    self.stats["lost leases"] += 1
                    log.warning("job %s: dropped before it started: %s", job_id, why)
                    self._slot_freed.set()
                    continue
                run.interrupted = why
                run.task.cancel()
            await asyncio.sleep(self.heartbeat_s)

    # -- stopping --------------------------------------------------------------

    async def _shutdown(
        self, fetcher: asyncio.Task[None], completer: asyncio.Task[None], background: list[asyncio.Task[None]]
    ) -> None:
        fetcher.cancel()
        await asyncio.gather(fetcher, return_exceptions=True)
        self._fetcher_gone = True
        await self._hand_back_waiting()
        tasks = [r.task for r in self._runs.values() if r.task]
        if tasks:
            log.info(
                "worker %s: waiting up to %.1f s for %d job(s)",
                self.worker_id,
                self.shutdown_grace_s,
                len(tasks),
            )
            await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
        for run in list(self._runs.values()):
            if run.task and not run.handler_done:
                run.interrupted = "shutdown"
                run.task.cancel()
        leftovers = [r.task for r in self._runs.values() if r.task]
        if leftovers:
            await asyncio.wait(leftovers, timeout=self.lease_ms / 1000)
        await self._drain_completions(completer)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        with contextlib.suppress(*REDIS_DOWN):
            await self.store.forget_worker(self.job_type, self.worker_id, leaving=True)
        log.info("worker %s: stopped (%s)", self.worker_id, dict(self.stats) or "no jobs")

    async def _hand_back_waiting(self) -> None:
        """Returns prefetched jobs, and ids taken for the next round, to the queue at
        once: they have not started."""
        with contextlib.suppress(*REDIS_DOWN):  # else sweep_popped brings them back
            await self._give_back_taken()
        waiting = list(self._waiting)
        self._waiting.clear()
        for run in waiting:
            del self._runs[run.job.id]
        release = self.store.release
        await asyncio.gather(
            *(self._record(run.job, "handed back", functools.partial(release, run.job)) for run in waiting)
        )

    async def _drain_completions(self, completer: asyncio.Task[None]) -> None:
        """Lets the completer record what is buffered (bounded by the lease), then stops it."""
        if self._completed:
            recorded = asyncio.create_task(self._all_recorded.wait())
            await asyncio.wait(
                {recorded, completer}, timeout=self.lease_ms / 1000, return_when=asyncio.FIRST_COMPLETED
            )
            recorded.cancel()
        completer.cancel()
        await asyncio.gather(completer, return_exceptions=True)
        if self._completed:
            log.error(
                "worker %s: %d completion(s) not recorded; those jobs will run again",
                self.worker_id,
                len(self._completed),
            )


def run_workers(*workers: Worker) -> None:
    """Runs workers in one process until SIGINT or SIGTERM, then stops them gracefully."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.gather(*(worker.serve(stop) for worker in workers))
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
