"""The worker: runs a handler for every job of one type, at least once.

The life of one job in a worker, each step in its own module:
1. the fetcher (fetcher.py) pops or takes its id and claims it: RUNNING under
   a lease with a new fencing token (with `prefetch`, a claimed job may wait
   in slots.py for a free slot);
2. the handler runs (`Worker._execute`, within the job's timeout; a plain
   function in a pool of threads or processes: sync_handlers.py) while the
   heartbeat (heartbeat.py) marks the worker alive and renews every held lease
   (one script for all of them); a lease found lost (the job was cancelled, or
   it went to another worker) cancels its handler;
3. its completion is recorded in a batch (completions.py), or its failure at
   once: retried later with backoff while attempts are left, else FAILED for
   good; both accepted only with the current token.
A worker killed anywhere in this loses nothing: see jobqueue/reaper.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, cast

from redis.asyncio import Redis

from ..codecs import Codec
from ..event_log import LogObserver
from ..events import Counts, Event, Failure, Notify, Observer, Observers
from ..faults import crash_point
from ..log_lines import RUNNING_JOB
from ..metrics.exposition import worker_ports
from ..model import (
    Backoff,
    Job,
    JobStatus,
    check_job_type,
    check_max_attempts,
    partition_of_id,
    partition_of_type,
)
from ..process import configure_logging, run_until_stopped
from ..reaper import Reaper
from ..scheduler import Scheduler
from ..settings import Settings
from ..store import Store
from ..store.client import connect
from ..store.memory_policy import check_deployment
from ..store.outcomes import Outcome, Result
from ..store.partitions import REFRESH_S as PARTITIONS_REFRESH_S
from ..supervise import REDIS_DOWN, repeat, supervise
from ..supervise import Backoff as ReconnectBackoff
from .context import Context
from .errors import PermanentError, RetryAfter
from .lanes import Lane, LaneMaker
from .progress import PROGRESS_INTERVAL_S, ProgressWriter
from .results import result_bytes
from .slots import Run, Slots
from .sync_handlers import Executor, SyncHandler, SyncRuns, is_async
from .typed import AnyHandler, adapt

log = logging.getLogger("jobqueue.worker")

MAX_ERROR_CHARS = 4000


@dataclasses.dataclass(frozen=True, slots=True)
class _Serving:
    """The parts of a worker while it serves."""

    store: Store
    handlers_redis: Redis  # Worker.redis
    slots: Slots
    lanes: dict[str, Lane]  # by partition: one, unless the type is spread (lanes.py)
    progress: ProgressWriter

    def lane_of(self, job: Job) -> Lane:
        return self.lanes[partition_of_id(job.id)]


class Worker:
    """Runs `handler` for jobs of `job_type`, `concurrency` at a time.

    Start it with `run()` (blocks; SIGINT/SIGTERM stop it gracefully) or
    `await serve()` inside your own event loop (cancel the task, or set `stop`,
    to stop it gracefully). What a handler returns is stored as the job's
    `result`: bytes as they are, None as nothing, anything else as its codec
    encodes it. A handler signals failure by raising: the job is retried with
    backoff while attempts are left (`RetryAfter` sets the delay,
    `PermanentError` fails it at once) and the error text is kept in the job.
    Cancellation of a handler means the job was cancelled, its lease was lost,
    its run took longer than its timeout, or the worker is shutting down.

    A handler takes the Job (`async def h(job: Job)`), or a typed payload: its
    first parameter's annotation (bytes, a dataclass, TypedDict, pydantic model,
    dict or list) says what the payload is decoded into, and a second parameter,
    if any, gets the Job (`async def h(email: Email, job: Job)`; docs/payloads.md).
    A plain (non-async) function is a handler too: it runs in a pool of threads
    (or processes) of the worker's own, see `threads` and `executor`. A handler
    reports how far it is with `job.set_progress(fraction, message)` (see
    `progress_interval_s`).
    """

    def __init__(
        self,
        job_type: str,
        handler: AnyHandler | SyncHandler,
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
        observers: Iterable[Observer] = (),
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        codec: Codec | str | None = None,
        threads: int | None = None,
        executor: Executor = "thread",
        progress_interval_s: float = PROGRESS_INTERVAL_S,
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
            settings: the deployment's settings (Redis, key prefix, retention...);
                default: those `serve` is given, else `Settings.from_env()`.
            run_scheduler, run_reaper: run a scheduler and a reaper for this type
                in this process (safe alongside any number of others).
            observers: called with every Event of this worker's jobs, besides the
                log (jobqueue.events).
            metrics_port, metrics_host: serve the Prometheus metrics of this
                worker's jobs (and of its reaper) at http://metrics_host:metrics_port/metrics
                while it serves (docs/metrics.md); None: no metrics. Workers of
                one process given the same port share it.
            codec: how payloads are decoded for a typed handler: 'json', 'msgpack',
                'bytes' or a Codec (jobqueue.codecs); None: inferred from the
                handler's first parameter (json for a type, bytes for a Job or bytes).
                A payload that does not decode fails its job at once (no retry).
            threads: for a sync handler (a plain function), the size of its pool:
                threads, or processes with executor="process" (default:
                concurrency). Python cannot stop a thread: a sync run that times
                out or is cancelled is reported at once, but keeps its slot until
                its function returns (sync_handlers.py).
            executor: for a sync handler, "thread" (default), or "process": each
                call runs in a process of its own (CPU-bound work escapes the GIL;
                the handler must pickle: a module-level function), one that times
                out or is cancelled is terminated.
            progress_interval_s: how long after a run's first progress report
                (`job.set_progress`) it is written, and the shortest time between
                two writes: calls in between only keep the latest value. The last
                one goes with the run's outcome (worker/progress.py).
        """
        self.job_type = check_job_type(job_type)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if not 0 < heartbeat_s < min(lease_s, liveness_s) / 2:
            raise ValueError("heartbeat_s must be positive and under half of lease_s and of liveness_s")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive (or None: no limit)")
        if progress_interval_s < 0:
            raise ValueError("progress_interval_s must be >= 0")
        if metrics_port is not None and not 0 < metrics_port < 65536:
            raise ValueError(f"metrics_port must be a TCP port (1-65535) or None, got {metrics_port}")
        # Awaited for every job: the handler itself, or what runs a sync one in its pool.
        self.handler: Callable[[Job], Awaitable[object]]
        self.sync_runs: SyncRuns | None = None
        if is_async(handler):
            if threads is not None or executor != "thread":
                raise ValueError("threads and executor are for a sync handler; this one is async")
            # A typed handler wrapped in its decoding (typed.py).
            self.handler, self.codec = adapt(cast(AnyHandler, handler), codec)
        else:
            pool_size = concurrency if threads is None else threads
            self.sync_runs = SyncRuns(handler, self.job_type, pool_size, executor)
            # Its payload decoded here, the function called in the pool with it.
            self.handler, self.codec = adapt(handler, codec, invoke=self.sync_runs)
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
        self.batch_size = batch_size
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.run_scheduler = run_scheduler
        self.run_reaper = run_reaper
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.progress_interval_s = progress_interval_s
        # What happened to this worker's jobs, by event.
        self.stats = Counts()
        self.observers = list(observers)
        self.notify: Notify = Observers(self.observers, counts=self.stats).notify  # made again by serve
        self._serving: _Serving | None = None

    @property
    def store(self) -> Store:
        if self._serving is None:
            raise RuntimeError("the worker is not running")
        return self._serving.store

    @property
    def redis(self) -> Redis:
        """The worker's Redis client (replies are bytes), for handlers' own commands
        while it runs, as arq's `ctx['redis']`: its pool is made like the worker's
        (commands packed in C) but without the command timeout, so a handler may block
        on Redis as long as it asks; a handler need not open a client of its own,
        whose first connections cost the first jobs time."""
        if self._serving is None:
            raise RuntimeError("the worker is not running")
        return self._serving.handlers_redis

    def run(self) -> None:
        """Runs until SIGINT or SIGTERM, then shuts down gracefully."""
        run_workers(self)

    async def serve(self, stop: asyncio.Event | None = None, *, settings: Settings | None = None) -> None:
        """Runs until `stop` is set or the task is cancelled; either way shuts down
        gracefully. `settings`: used unless the worker was built with its own."""
        settings = self.settings or settings or Settings.from_env()
        await check_deployment(settings)  # a Redis that may evict keys would lose jobs
        observers: list[Observer] = [*self.observers, LogObserver()]
        if self.metrics_port is not None:
            observers.append(worker_ports.acquire(self.metrics_host, self.metrics_port))
            log.info(
                "worker %s: metrics on http://%s:%d/metrics",
                self.worker_id,
                self.metrics_host,
                self.metrics_port,
            )
        # Made again here, with the log: it takes its routine steps by the level it
        # has now, and a worker is often made before logging is set up.
        self.notify = Observers(observers, counts=self.stats).notify
        # Unbounded pools: the worker's own concurrency bounds its connections.
        store = Store.open(settings, max_connections=None)
        # Handlers' commands go through a pool of their own, without the command
        # timeout: a timer per command would cost a busy worker CPU on every job.
        handlers_redis = connect(settings.redis_url, max_connections=None, cluster=settings.redis_cluster)
        context = Context(
            store.transitions,
            self.job_type,
            self.worker_id,
            self.lease_ms,
            self.max_attempts,
            self.batch_size,
            self.notify,
            store.outage,
        )

        def execute(run: Run) -> Coroutine[Any, Any, None]:
            return self._execute(serving, run)

        start: Callable[[Run], Coroutine[Any, Any, None]] = execute
        if settings.tracing:
            from .. import tracing  # noqa: PLC0415 - only processes with tracing on import opentelemetry

            start = tracing.traced(execute)
        slots = Slots(self.concurrency, self.prefetch, self.batch_size, start)
        # What ListWorkers shows of it (store/registry.py), written by its first heartbeat
        # and again by any beat that finds it forgotten; removed when it leaves.
        enter = functools.partial(
            store.registry.register,
            self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            types=(self.job_type,),
            concurrency=self.concurrency,
            started_at=int(time.time() * 1000),
            liveness_ms=self.liveness_ms,
        )
        lanes = LaneMaker(
            context,
            slots,
            self.block_timeout_s,
            self.heartbeat_s,
            self.liveness_ms,
            enter,
            store.own_connection,
            store.outage,
        )
        progress = ProgressWriter(store.transitions, self.progress_interval_s)
        serving = self._serving = _Serving(store, handlers_redis, slots, {}, progress)
        if self.sync_runs is not None:
            self.sync_runs.open()
        outage = store.outage

        async def follow_partitions() -> None:
            """A lane per partition of the type, one more whenever it gets more."""
            for partition in await store.partitions.covered(self.job_type):
                if partition not in serving.lanes:
                    if serving.lanes:
                        log.info("worker %s: %r got partition %s", self.worker_id, self.job_type, partition)
                    serving.lanes[partition] = lanes.start(partition)

        try:
            await follow_partitions()
        except REDIS_DOWN as exc:  # its first partition now, any other once Redis answers
            outage.failed(exc)
            first_partition = partition_of_type(self.job_type)
            serving.lanes[first_partition] = lanes.start(first_partition)
        following = functools.partial(repeat, follow_partitions, PARTITIONS_REFRESH_S)
        background = [asyncio.create_task(supervise("partitions", following, outage))]
        # So that GetJob shows a pending job the attempts it will get (store/worker_defaults.py).
        register = functools.partial(store.worker_defaults.register, self.job_type, self.max_attempts)
        background.append(asyncio.create_task(supervise("defaults", register, outage)))
        # The reaper's and the scheduler's events go to the same observers, but are
        # not this worker's jobs: they are not counted in its stats.
        about_queue = Observers(observers).notify
        if self.run_scheduler:
            background.append(asyncio.create_task(Scheduler(store, [self.job_type], about_queue).run()))
        if self.run_reaper:
            background.append(asyncio.create_task(Reaper(store, [self.job_type], about_queue).run()))
        log.info(
            "worker %s: handling %r, concurrency %d%s%s",
            self.worker_id,
            self.job_type,
            self.concurrency,
            f", prefetch {self.prefetch}" if self.prefetch else "",
            f", {len(serving.lanes)} partitions" if len(serving.lanes) > 1 else "",
        )
        try:
            stopped = asyncio.create_task(stop.wait()) if stop else asyncio.get_running_loop().create_future()
            try:
                first = next(iter(serving.lanes.values())).fetching
                await asyncio.wait({stopped, first}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
        finally:
            await self._shutdown(serving, background)
            for lane in serving.lanes.values():
                await lane.connection.aclose()
            await store.aclose()
            await handlers_redis.aclose()
            self._serving = None
            if self.metrics_port is not None:
                await asyncio.to_thread(worker_ports.release, self.metrics_host, self.metrics_port)

    # -- running one job -------------------------------------------------------

    async def _execute(self, serving: _Serving, run: Run) -> None:
        job = run.job
        RUNNING_JOB.set(job)  # the handler's log lines name its job (log_lines.py)
        transitions = serving.store.transitions
        progress = serving.progress
        lane = serving.lane_of(job)  # looked up once: every run needs it twice
        progress.attach(job)
        try:
            timeout_s = job.timeout_ms / 1000 if job.timeout_ms else self.timeout_s
            # No timeout context without a timeout: it costs a busy worker CPU.
            deadline = asyncio.timeout(timeout_s) if timeout_s is not None else None
            began = 0.0
            if job.expires_at_ms and job.attempt == 1 and time.time() * 1000 >= job.expires_at_ms:
                # Claimed ahead (prefetch) before its expiry, its slot free only after it:
                # handed back unstarted (the attempt not counted), its next claim ends it
                # EXPIRED (docs/design.md, "Expiry before start").
                await self._record(job, "was released", lambda: transitions.release(job))
                return
            try:
                heartbeat = lane.heartbeat
                if time.monotonic() > heartbeat.stale_at:
                    # The worker was paused, and may have counted as dead: it learns
                    # which of its leases are still its own before it starts a job.
                    await heartbeat.confirm()
                self.notify(Event.STARTED, job)
                began = time.perf_counter()
                if deadline is None:
                    returned = await self.handler(job)
                else:
                    async with deadline:
                        returned = await self.handler(job)
                if returned is not None:
                    job.result = result_bytes(returned, serving.store.settings.max_result_bytes, self.codec)
            except asyncio.CancelledError:
                run.handler_done = True
                if run.interrupted is None:
                    raise
                # The worker cancelled the handler itself: this task goes on to report.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                if run.interrupted is Event.RELEASED:
                    await self._record(job, "was released", lambda: transitions.release(job))
                else:
                    self.notify(run.interrupted, job, run.status)
                return
            except Exception as exc:  # noqa: BLE001 - a handler's failure is the job's outcome
                run.handler_done = True
                if began:  # else it failed before its handler started (confirm: Redis down)
                    self.notify(Event.RAN, job, time.perf_counter() - began)
                failure = run.failure = self._failure(job, exc, deadline, timeout_s)
                if progress.reported(job):
                    await progress.flush(job)
                fail = transitions.fail
                await self._record(job, "failed", lambda: fail(job, failure.error, failure.delay_ms), failure)
            else:
                run.handler_done = True
                self.notify(Event.RAN, job, time.perf_counter() - began)
                crash_point("before_finish")
                if progress.reported(job):  # its last value goes with the completion
                    progress.hand_over(job)
                # Recorded in a batch by the next round; the slot is free already.
                lane.completions.add(job)
        finally:
            progress.end(job)
            try:
                if self.sync_runs is not None:
                    await self.sync_runs.settle(job)
            finally:
                serving.slots.finish(job)

    def _failure(
        self, job: Job, exc: Exception, deadline: asyncio.Timeout | None, timeout_s: float | None
    ) -> Failure:
        if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
            return Failure(f"timed out after {timeout_s:g} s", self._retry_delay_ms(job, exc))
        error = "".join(traceback.format_exception_only(exc)).strip()[:MAX_ERROR_CHARS]
        expected = isinstance(exc, PermanentError | RetryAfter)
        return Failure(error, self._retry_delay_ms(job, exc), None if expected else exc)

    def _retry_delay_ms(self, job: Job, exc: Exception) -> int | None:
        if isinstance(exc, PermanentError):
            return None
        if isinstance(exc, RetryAfter):
            return int(exc.seconds * 1000)
        return (job.backoff or self.backoff).delay_ms(job.attempt, random.random())

    async def _record(
        self, job: Job, what: str, write: Callable[[], Awaitable[Result]], failure: Failure | None = None
    ) -> None:
        """Writes an outcome, retrying through Redis outages while the lease could still hold.

        After that the reaper takes the job back, so giving up loses nothing. The
        writes are idempotent: a retry after a lost reply changes nothing.
        """
        deadline = asyncio.get_running_loop().time() + self.lease_ms / 1000
        backoff = ReconnectBackoff()
        outage = self.store.outage
        while True:
            began_in = outage.generation
            try:
                result = await write()
                break
            except REDIS_DOWN as exc:
                outage.failed(exc)
                if asyncio.get_running_loop().time() >= deadline:
                    self.notify(Event.NOT_RECORDED, job, what)
                    return
                await asyncio.sleep(backoff.next_delay())
        if outage.down:
            outage.back(began_in)
        if result.outcome is Outcome.STALE:
            cancelled = result.status is JobStatus.CANCELLED
            self.notify(Event.CANCELLED if cancelled else Event.STALE_RESULT, job, result)
        elif result.outcome is Outcome.RETRYING:
            self.notify(Event.RETRY_SCHEDULED, job, failure)
        elif result.outcome is Outcome.DEAD_LETTERED:
            self.notify(Event.DEAD_LETTERED, job, failure)
        else:
            self.notify(Event.RELEASED, job)

    # -- stopping --------------------------------------------------------------

    async def _shutdown(self, serving: _Serving, background: list[asyncio.Task[None]]) -> None:
        slots, lanes = serving.slots, list(serving.lanes.values())
        background[0].cancel()  # the partitions' follower: no lane is added from here on
        await asyncio.gather(background[0], return_exceptions=True)
        for lane in lanes:
            lane.fetching.cancel()
        await asyncio.gather(*(lane.fetching for lane in lanes), return_exceptions=True)
        for lane in lanes:
            lane.completions.hurry = True  # nothing will take completions along any more
        await self._hand_back_waiting(serving)
        tasks = slots.tasks()
        grace = f"{self.shutdown_grace_s:g} s"
        if tasks:
            log.info(
                "worker %s: stopping: waiting up to %s for %s",
                self.worker_id,
                grace,
                _jobs(len(tasks), "running"),
            )
            await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
        else:
            log.info("worker %s: stopping: no job running", self.worker_id)
        unfinished = [run for run in slots.runs.values() if run.task and not run.handler_done]
        for run in unfinished:
            run.interrupted = Event.RELEASED
            run.task.cancel()  # type: ignore[union-attr]
        if unfinished:
            log.info(
                "worker %s: cancelled %s still running after %s; handed back",
                self.worker_id,
                _jobs(len(unfinished)),
                grace,
            )
        if self.sync_runs is not None:
            self.sync_runs.close()  # the runs handed back wait no more for their threads
        leftovers = slots.tasks()
        if leftovers:
            await asyncio.wait(leftovers, timeout=self.lease_ms / 1000)
        drains = (lane.completions.drain(lane.completer, self.lease_ms / 1000) for lane in lanes)
        unrecorded = sum(await asyncio.gather(*drains))
        if unrecorded:
            log.warning(
                "worker %s: %d completion(s) not recorded (Redis unavailable); those jobs will run again",
                self.worker_id,
                unrecorded,
            )
        background += [lane.beating for lane in lanes]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        with contextlib.suppress(*REDIS_DOWN):
            forget = serving.store.transitions.forget_worker
            for lane in lanes:
                await forget(self.job_type, self.worker_id, leaving=True, partition=lane.partition)
            await serving.store.registry.remove(self.worker_id)
        log.info("worker %s: stopped; jobs: %s", self.worker_id, self.stats.summary())

    async def _hand_back_waiting(self, serving: _Serving) -> None:
        """Returns prefetched jobs, and ids taken for the next round, to the queue at
        once: they have not started."""
        with contextlib.suppress(*REDIS_DOWN):  # else sweep_popped brings them back
            for lane in serving.lanes.values():
                await lane.fetcher.give_back_taken()
        release = serving.store.transitions.release
        waiting = serving.slots.take_waiting()
        await asyncio.gather(
            *(self._record(run.job, "was released", functools.partial(release, run.job)) for run in waiting)
        )


def _jobs(count: int, kind: str = "") -> str:
    """'1 running job', '2 running jobs'."""
    return f"{count} {kind + ' ' if kind else ''}job{'' if count == 1 else 's'}"


def run_workers(*workers: Worker, settings: Settings | None = None) -> None:
    """Runs workers in one process until SIGINT or SIGTERM, then stops them gracefully.

    `settings`: for the workers built without their own (default: from the environment).
    With tracing on, spans go to the program's TracerProvider, else to one made from the
    OTEL_* variables (jobqueue.tracing.start).
    """
    settings = settings or Settings.from_env()
    if settings.tracing:
        configure_logging()  # first: the trace ids go into its lines
        from ..tracing import start  # noqa: PLC0415 - only processes with tracing on import opentelemetry

        start("jobqueue-worker")

    async def main(stop: asyncio.Event) -> None:
        await asyncio.gather(*(worker.serve(stop, settings=settings) for worker in workers))

    run_until_stopped(main)
