"""The enqueue batching engine: many jobs per script call, many calls in flight.

Concurrent `enqueue` calls are coalesced: calls made while one batch is on its
way to Redis go together in the next one, so many producers (or the server's
many concurrent requests) pay one round trip per batch. Each call still gets its
own job, or its own error. A call made while none is on its way goes at once,
from the caller's task: an idle producer's enqueue costs no hop through another
task. `enqueue_many` splits a big request into calls of ENQUEUE_BATCH jobs, a
few in flight at once, so the client encodes the next while Redis stores one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidInput, JobNotFound, PayloadTooLarge, QueueFull
from ..events import Event, Notify
from ..model import (
    DEFAULT_PRIORITY,
    NO_OPTIONS,
    Enqueued,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    UniqueMode,
    check_execution_time,
    check_expiry,
    check_job_type,
    new_job_ids,
    partition_of_key,
)
from .codec import TRACE_FIELD, NewJob, option_fields
from .outcomes import Outcome

if TYPE_CHECKING:
    from .store import Store

ENQUEUE_BATCH = 1000  # jobs per script call: keeps each call (Redis is single-threaded) short
ENQUEUE_IN_FLIGHT = 4
FULL = Outcome.FULL.value.encode()  # enqueue.lua's refusal of a job over the type's maximum depth
# enqueue.lua's refusal of a job whose expiry is not after now and its execution time.
EXPIRES_EARLY = Outcome.EXPIRES_EARLY.value.encode()
# How long a process trusts that a type it registered is still in the registry.
TYPE_REFRESH_S = 10.0


class Enqueuer:
    def __init__(self, store: Store, notify: Notify | None = None) -> None:
        """`notify`: told of each job stored as new (Event.ENQUEUED)."""
        self.store = store
        self.notify = notify
        self.settings = store.settings
        self.max_payload_bytes = store.settings.max_payload_bytes
        self._registered: dict[str, float] = {}  # job type -> when to register it again
        self._turn: dict[str, int] = {}  # job type -> the partition its next keyless jobs go to
        self._queued: list[tuple[NewJob, asyncio.Future[None]]] = []  # calls for the next batch
        self._flusher: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly
        # A batch is on its way (then every new call waits in _queued for the next).
        self._flushing = False
        # With tracing on, each job stores the trace context of the call that enqueued it.
        self._tracing = store.settings.tracing
        self._trace_context: Callable[[], str] = lambda: ""
        self._traced: Callable[[Job], None] = lambda job: None
        if self._tracing:
            from .. import tracing  # noqa: PLC0415 - only processes with tracing on import opentelemetry

            self._trace_context, self._traced = tracing.stored_context, tracing.enqueued

    async def enqueue(
        self,
        job_type: str,
        payload: bytes,
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
    ) -> Job:
        """Stores a PENDING job; `execution_time_ms` None (or 0) means now.

        With an idempotency key already used for this type within the window,
        returns the job enqueued first instead of creating one.
        """
        new = self._prepare(0, EnqueueRequest(job_type, payload, execution_time_ms, options), many=False)
        if self.settings.max_depth_of(job_type) and await self.store.partitions.count(job_type) > 1:
            await self._admit([new])  # each partition's script sees its own depth only
        if self._flushing:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queued.append((new, done))
            await done
        else:
            self._flushing = True
            try:
                await self._store([new])
            finally:
                self._flushing = False
                if self._queued:  # calls that arrived meanwhile: the next batch
                    self._flushing = True
                    self._flusher = asyncio.create_task(self._flush_queued())
        if new.full:
            raise self._full(job_type)
        if new.expires_early_at:
            raise expires_early(new)
        assert new.job is not None
        if self._tracing:
            self._traced(new.job)
        return new.job

    async def _flush_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:ENQUEUE_BATCH]
                del self._queued[: len(batch)]
                try:
                    await self._store([new for new, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every waiting call gets the error
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = False

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        """Stores many jobs; jobs in request order.

        Every request is checked before any job is stored: one bad request
        (InvalidInput naming `jobs[i].field`) stores none.
        """
        batch = [self._prepare(i, r, len(requests) > 1) for i, r in enumerate(requests)]
        await self._admit(batch)
        await self._check_expiries(batch)
        await self._store(batch)
        refused = next((new for new in batch if new.full), None)
        if refused is not None:  # filled by concurrent enqueues since _admit: see docs/design.md
            raise self._full(refused.request.job_type)
        for i, new in enumerate(batch):  # its expiry passed since _check_expiries: a race of a ms
            if new.expires_early_at:
                raise expires_early(new, f"jobs[{i}]." if len(batch) > 1 else "")
        return [new.job for new in batch if new.job is not None]

    async def _check_expiries(self, batch: list[NewJob]) -> None:
        """Refuses the whole call, before anything is stored, when a job of several
        would expire before it could start, by the Redis clock (enqueue.lua checks each
        again, atomically). One TIME call, only for a batch with such expiries."""
        if len(batch) < 2 or not any(_expiry_needs_clock(new) for new in batch):
            return
        seconds, micros = await self.store.redis.time()
        now = seconds * 1000 + micros // 1000
        for i, new in enumerate(batch):
            options = new.request.options
            expires = options.expires_at_ms or now + (options.expires_in_ms or 0)
            if _expiry_needs_clock(new) and expires <= max(now, int(new.at or 0)):
                new.expires_early_at = now
                raise expires_early(new, f"jobs[{i}].")

    async def _admit(self, batch: list[NewJob]) -> None:
        """Refuses the whole call, before anything is stored, when a type would go over
        its maximum depth (enqueue.lua checks each job again, atomically)."""
        adding: dict[str, int] = {}
        for new in batch:
            if self.settings.max_depth_of(new.request.job_type):
                adding[new.request.job_type] = adding.get(new.request.job_type, 0) + 1
        if not adding:
            return
        partitions = {t: await self.store.partitions.covered(t) for t in adding}
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for job_type in adding:
                for partition in partitions[job_type]:
                    pipe.hget(self.store.keys.queue(job_type, partition).stats, "pending")
            counts = iter(await pipe.execute())
        for job_type, count in adding.items():
            pending = sum(int(next(counts) or 0) for _ in partitions[job_type])
            if pending + count > self.settings.max_depth_of(job_type):
                raise self._full(job_type, adding=count, pending=pending)

    def _full(self, job_type: str, *, adding: int = 0, pending: int = 0) -> QueueFull:
        limit, setting = self.settings.max_depth_of(job_type), self.settings.max_depth_setting(job_type)
        return QueueFull(job_type, limit, setting, adding=adding, pending=pending)

    async def _store(self, batch: list[NewJob]) -> None:
        by_type: dict[str, list[NewJob]] = {}
        for new in batch:
            by_type.setdefault(new.request.job_type, []).append(new)
        for job_type, jobs in by_type.items():
            await self._register_type(job_type)
            tags = await self.store.partitions.tags(job_type)
            if len(tags) == 1:
                await self._store_chunks(job_type, jobs, tags[0])
                continue
            for partition, of_partition in self._spread(job_type, jobs, tags).items():
                await self._store_chunks(job_type, of_partition, partition)

    def _spread(self, job_type: str, jobs: list[NewJob], tags: tuple[str, ...]) -> dict[str, list[NewJob]]:
        """Which of the type's partitions each job goes to: a job with a unique key (else
        an idempotency key) to the one of its key, so that its deduplication is one
        script's; the others in turns, a script call's worth (ENQUEUE_BATCH) each."""
        spread: dict[str, list[NewJob]] = {}
        turn = self._turn.get(job_type, 0)
        keyless = 0
        for new in jobs:
            options = new.request.options
            key = options.unique_key or options.idempotency_key
            if key:
                partition = tags[partition_of_key(key, len(tags))]
            else:
                partition = tags[(turn + keyless // ENQUEUE_BATCH) % len(tags)]
                keyless += 1
            spread.setdefault(partition, []).append(new)
        self._turn[job_type] = (turn + max(1, -(-keyless // ENQUEUE_BATCH))) % len(tags)
        return spread

    async def _store_chunks(self, job_type: str, jobs: list[NewJob], partition: str) -> None:
        """ENQUEUE_BATCH jobs per script call, and ENQUEUE_IN_FLIGHT calls at once.

        While Redis runs one call, the client encodes the next and decodes the
        last (they arrive, and run, in order). The first error stops the rest
        and is raised as it is (chunks already stored stay stored).
        """
        if len(jobs) <= ENQUEUE_BATCH:  # one call: no tasks (a single enqueue's latency)
            await self._store_batch(job_type, jobs, partition)
            return
        window = asyncio.Semaphore(ENQUEUE_IN_FLIGHT)

        async def store(chunk: list[NewJob]) -> None:
            async with window:
                await self._store_batch(job_type, chunk, partition)

        try:
            async with asyncio.TaskGroup() as group:
                for i in range(0, len(jobs), ENQUEUE_BATCH):
                    group.create_task(store(jobs[i : i + ENQUEUE_BATCH]))
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None

    def _prepare(self, index: int, request: EnqueueRequest, many: bool) -> NewJob:
        """Checks one request; its id comes later, with its batch's (one urandom call for all)."""
        try:
            check_job_type(request.job_type)
            if len(request.payload) > self.max_payload_bytes:
                raise PayloadTooLarge(len(request.payload), self.max_payload_bytes)
            at = request.execution_time_ms
            options = request.options
            if options.expires_at_ms is not None or options.expires_in_ms is not None:
                check_expiry(options, at)
            fields = option_fields(options)
            if self._tracing:  # from the caller's task: its span is current
                context = self._trace_context()
                if context:
                    fields += [TRACE_FIELD, context]
            return NewJob(request, "" if not at else str(check_execution_time(at)), fields)
        except InvalidInput as exc:
            if many:
                exc.args = (f"jobs[{index}].{exc.args[0]}",)
            raise

    async def _store_batch(self, job_type: str, jobs: list[NewJob], partition: str) -> None:
        """One enqueue.lua call for one type's partition; resolves duplicates to the jobs
        they point at."""
        for new, job_id in zip(jobs, new_job_ids(partition, len(jobs)), strict=True):
            new.job_id = job_id  # kept by the retry rounds below
        for _ in range(3):
            todo = [new for new in jobs if new.job is None and not new.full and not new.expires_early_at]
            if not todo:
                return
            created_at, outcomes = await self.store.transitions.enqueue(
                job_type, todo, max_depth=self.settings.max_depth_of(job_type), partition=partition
            )
            for new, outcome in zip(todo, outcomes, strict=True):
                if outcome == FULL:
                    new.full = True
                    continue
                if outcome == EXPIRES_EARLY:
                    new.expires_early_at = created_at
                    continue
                if isinstance(outcome, int):
                    options = new.request.options
                    new.job = Job(
                        new.job_id,
                        job_type,
                        new.request.payload,
                        JobStatus.PENDING,
                        outcome,  # execution_time_ms
                        created_at,
                        created_at,
                        max_attempts=options.max_attempts or 0,
                        timeout_ms=options.timeout_ms or 0,
                        idempotency_key=options.idempotency_key,
                        backoff=options.backoff,
                        expires_at_ms=options.expiry_from(created_at),
                        priority=options.priority or DEFAULT_PRIORITY,
                        unique_key=options.unique_key,
                        unique_mode=UniqueMode(options.unique_mode),  # checked by _prepare
                    )
                    if self.notify is not None:
                        self.notify(Event.ENQUEUED, new.job)
                    continue
                new.debounced = outcome.startswith(b"~")
                existing = outcome.decode().removeprefix("~")
                try:
                    new.job = await self.store.inspect.stored(existing)
                except JobNotFound:
                    if new.request.options.idempotency_key:
                        new.stale = existing  # its key outlived the job (retention < window): replace it
                    continue  # (a unique key's job deleted since: the next round creates one)
                new.job.enqueued = Enqueued.DEBOUNCED if new.debounced else Enqueued.EXISTING
        raise RuntimeError("idempotency keys keep pointing at vanished jobs")

    async def _register_type(self, job_type: str) -> None:
        """Adds the type to the registry schedulers and reapers iterate.

        Idempotent, so at most once per TYPE_REFRESH_S per type and process rather
        than on every enqueue (a separate command: the registry lives in another
        Cluster slot than the job). Refreshed, so a registry lost with a flushed
        Redis heals by itself.
        """
        now = time.monotonic()
        if self._registered.get(job_type, -math.inf) > now:
            return
        await self.store.redis.sadd(self.store.keys.types, job_type)
        self._registered[job_type] = now + TYPE_REFRESH_S


def _expiry_needs_clock(new: NewJob) -> bool:
    """Whether only the clock can tell the job's expiry too early: an absolute one, or
    a relative one with an execution time of its own."""
    options = new.request.options
    return options.expires_at_ms is not None or (options.expires_in_ms is not None and bool(new.at))


def expires_early(new: NewJob, where: str = "") -> InvalidInput:
    """The refusal of a job whose expiry is not after now (new.expires_early_at, by the
    Redis clock) and its execution time: it could never start."""
    options, now = new.request.options, new.expires_early_at
    due = f" and its execution time {new.at}" if new.at else ""
    if options.expires_at_ms is not None:
        return InvalidInput(
            f"{where}expires_at_ms", f"{options.expires_at_ms} is not after now ({now}, the Redis clock){due}"
        )
    return InvalidInput(
        f"{where}expires_in_ms",
        f"{options.expires_in_ms} ms after now ({now}, the Redis clock) "
        f"is not after its execution time {new.at}",
    )
