"""JobStore: every change of job state in Redis, one method per Lua script.

Nothing else in jobqueue writes job state. Each method is one atomic script
(plus, for enqueue, the idempotent registration of the job type), so a process
that dies between two calls leaves Redis in a state the reaper can repair.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, JobAlreadyFinished, JobNotFound, JobNotRetryable, PayloadTooLarge
from ..model import (
    NO_OPTIONS,
    Backoff,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    check_execution_time,
    check_idempotency_key,
    check_job_id,
    check_job_type,
    check_max_attempts,
    check_timeout_ms,
    new_job_ids,
    partition_of_type,
)
from .keys import Keyspace, QueueKeys
from .scripts import Scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from .connection import OwnConnection

DAY_MS = 24 * 3600 * 1000
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
TYPE_REFRESH_S = 10.0
ENQUEUE_BATCH = 1000  # jobs per script call: keeps each call (Redis is single-threaded) short
ENQUEUE_IN_FLIGHT = 4
# The job hash's fields in the order a claim returns their values (claim.lua takes
# the names as arguments) and decode_job_values reads them: no field names in the
# reply, no dict per claimed job.
JOB_FIELDS = (
    b"id",
    b"type",
    b"payload",
    b"status",
    b"execution_time_ms",
    b"created_at",
    b"updated_at",
    b"attempt",
    b"last_error",
    b"started_at",
    b"finished_at",
    b"worker_id",
    b"max_attempts",
    b"timeout_ms",
    b"idempotency_key",
    b"backoff_base_ms",
    b"backoff_factor",
    b"backoff_cap_ms",
    b"lease_token",
)

# A script's reply: Redis types as redis-py returns them (bytes, int, lists).
Reply = Any


class JobStore:
    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keyspace | None = None,
        retention_ms: int = DAY_MS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        idempotency_window_ms: int = DAY_MS,
    ) -> None:
        """`redis` must return bytes (decode_responses=False): payloads are binary."""
        self.redis = redis
        self.keys = keys or Keyspace()
        self.retention_ms = retention_ms
        self.max_payload_bytes = max_payload_bytes
        self.idempotency_window_ms = idempotency_window_ms
        self._scripts = Scripts.register(redis)
        self._registered: dict[str, float] = {}  # job type -> when to register it again
        self._queued: list[tuple[_Pending, asyncio.Future[None]]] = []  # enqueue calls for the next batch
        self._flusher: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly
        # A batch is on its way (then every new call waits in _queued for the next).
        self._flushing = False

    # -- producers and the API -------------------------------------------------

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

        Concurrent calls are coalesced: calls made while one batch is on its way
        to Redis go together in the next one, so many producers (or the server's
        many concurrent requests) pay one round trip per batch. Each call still
        gets its own job, or its own error. A call made while none is on its way
        goes at once, from the caller's task: an idle producer's enqueue costs no
        hop through another task.
        """
        pending = self._prepare(0, EnqueueRequest(job_type, payload, execution_time_ms, options), many=False)
        if self._flushing:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queued.append((pending, done))
            await done
        else:
            self._flushing = True
            try:
                await self._store_prepared([pending])
            finally:
                self._flushing = False
                if self._queued:  # calls that arrived meanwhile: the next batch
                    self._flushing = True
                    self._flusher = asyncio.create_task(self._flush_queued())
        assert pending.job is not None
        return pending.job

    async def _flush_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:ENQUEUE_BATCH]
                del self._queued[: len(batch)]
                try:
                    await self._store_prepared([pending for pending, _ in batch])
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
        """Stores many jobs, one round trip per type and ENQUEUE_BATCH jobs; jobs in request order.

        Every request is checked before any job is stored: one bad request
        (InvalidInput naming `jobs[i].field`) stores none.
        """
        batch = [self._prepare(i, r, len(requests) > 1) for i, r in enumerate(requests)]
        await self._store_prepared(batch)
        return [p.job for p in batch if p.job is not None]

    async def _store_prepared(self, batch: list[_Pending]) -> None:
        by_type: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_type.setdefault(pending.request.job_type, []).append(pending)
        for job_type, pendings in by_type.items():
            await self._register_type(job_type)
            await self._store_chunks(job_type, pendings)

    async def _store_chunks(self, job_type: str, pendings: list[_Pending]) -> None:
        """ENQUEUE_BATCH jobs per script call, and ENQUEUE_IN_FLIGHT calls at once.

        While Redis runs one call, the client encodes the next and decodes the
        last (they arrive, and run, in order). The first error stops the rest
        and is raised as it is (chunks already stored stay stored).
        """
        if len(pendings) <= ENQUEUE_BATCH:  # one call: no tasks (a single enqueue's latency)
            await self._store_batch(job_type, pendings)
            return
        window = asyncio.Semaphore(ENQUEUE_IN_FLIGHT)

        async def store(chunk: list[_Pending]) -> None:
            async with window:
                await self._store_batch(job_type, chunk)

        try:
            async with asyncio.TaskGroup() as group:
                for i in range(0, len(pendings), ENQUEUE_BATCH):
                    group.create_task(store(pendings[i : i + ENQUEUE_BATCH]))
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None

    def _prepare(self, index: int, request: EnqueueRequest, many: bool) -> _Pending:
        """Checks one request; its id comes later, with its batch's (one urandom call for all)."""
        try:
            check_job_type(request.job_type)
            if len(request.payload) > self.max_payload_bytes:
                raise PayloadTooLarge(len(request.payload), self.max_payload_bytes)
            at = request.execution_time_ms
            fields = _option_fields(request.options)
            return _Pending(request, "", "" if not at else str(check_execution_time(at)), fields)
        except InvalidInput as exc:
            if many:
                exc.args = (f"jobs[{index}].{exc.args[0]}",)
            raise

    async def _store_batch(self, job_type: str, pendings: list[_Pending]) -> None:
        """Runs enqueue.lua for one type; resolves duplicates to the jobs they point at."""
        partition = partition_of_type(job_type)
        for p, job_id in zip(pendings, new_job_ids(partition, len(pendings)), strict=True):
            p.job_id = job_id  # kept by the retry rounds below
        queue = self.keys.queue(job_type)
        job_key = self.keys.job_key_prefix(partition)
        for _ in range(3):
            todo = [p for p in pendings if p.job is None]
            if not todo:
                return
            keys = [queue.scheduled, queue.ready, *[job_key + p.job_id for p in todo]]
            args: list[str | bytes | int | float] = [
                job_type, self.keys.schedule_channel, self.idempotency_window_ms, len(todo),
            ]  # fmt: skip
            for p in todo:
                key_index = 0
                if p.request.options.idempotency_key:
                    keys.append(queue.idempotency(p.request.options.idempotency_key))
                    key_index = len(keys)  # Lua indexes from 1
                args += [f"{p.at},{p.stale},{key_index},{len(p.fields) // 2}", p.request.payload, *p.fields]
            created_at, *outcomes = await self._scripts.enqueue(keys=keys, args=args)
            for p, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, int):
                    options = p.request.options
                    p.job = Job(
                        p.job_id,
                        job_type,
                        p.request.payload,
                        JobStatus.PENDING,
                        outcome,  # execution_time_ms
                        created_at,
                        created_at,
                        max_attempts=options.max_attempts or 0,
                        timeout_ms=options.timeout_ms or 0,
                        idempotency_key=options.idempotency_key,
                        backoff=options.backoff,
                    )
                    continue
                existing = outcome.decode()
                try:
                    p.job = await self.get(existing)
                except JobNotFound:
                    p.stale = existing  # its key outlived the job (retention < window): replace it
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
        await self.redis.sadd(self.keys.types, job_type)
        self._registered[job_type] = now + TYPE_REFRESH_S

    async def get(self, job_id: str) -> Job:
        job_id = check_job_id(job_id)
        fields: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        if not fields:
            raise JobNotFound(job_id)
        return decode_job(fields)

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancels a pending or running job; returns the status it had."""
        job_id = check_job_id(job_id)
        queue = await self._queue_of(job_id)
        reply = await self._scripts.cancel(
            keys=[self.keys.job(job_id), queue.scheduled, queue.leases], args=[job_id, self.retention_ms]
        )
        outcome = reply[0].decode()
        if outcome == "not_found":
            raise JobNotFound(job_id)
        if outcome == "final":
            raise JobAlreadyFinished(job_id, _status_name(reply[1]))
        return JobStatus(int(reply[1]))

    async def retry(self, job_id: str) -> Job:
        """Runs a FAILED or CANCELLED job again, due now, attempts from zero (a redrive)."""
        job_id = check_job_id(job_id)
        queue = await self._queue_of(job_id)
        reply = await self._scripts.retry(
            keys=[self.keys.job(job_id), queue.failed, queue.ready], args=[job_id]
        )
        outcome = reply[0].decode()
        if outcome == "not_found":
            raise JobNotFound(job_id)
        if outcome == "state":
            raise JobNotRetryable(job_id, _status_name(reply[1]))
        return await self.get(job_id)

    async def failed_ids(self, job_type: str, limit: int = 100) -> list[str]:
        """The type's dead letters, most recent first."""
        ids: list[bytes] = await self.redis.zrevrange(self.keys.queue(job_type).failed, 0, limit - 1)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    async def redis_uptime_s(self) -> float:
        """Seconds since the Redis server started (0 right after a restart)."""
        info: dict[str, Any] = await self.redis.info("server")
        return float(info["uptime_in_seconds"])

    async def job_types(self) -> set[str]:
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        return {t.decode() for t in members}

    async def _queue_of(self, job_id: str) -> QueueKeys:
        job_type: bytes | None = await self.redis.hget(self.keys.job(job_id), "type")  # type: ignore[assignment]
        if job_type is None:
            raise JobNotFound(job_id)
        return self.keys.queue(job_type.decode())

    # -- the scheduler ---------------------------------------------------------

    async def promote(self, job_type: str, limit: int = 1000) -> tuple[int, float | None]:
        """Moves due jobs to the ready list: (jobs moved, ms until the next is due or
        None), the ms to the µs."""
        queue = self.keys.queue(job_type)
        moved, delay_us = await self._scripts.promote(keys=[queue.scheduled, queue.ready], args=[limit])
        return int(moved), (None if delay_us < 0 else delay_us / 1000)

    # -- workers ---------------------------------------------------------------

    async def pop(self, connection: OwnConnection, job_type: str, timeout_s: float) -> str | None:
        """Waits for a ready job id and moves it to the popped list (BLMOVE).

        The connection is the caller's own: the call holds it while it waits.
        """
        queue = self.keys.queue(job_type)
        job_id: bytes | None = await connection.execute(
            "BLMOVE", queue.ready, queue.popped, "RIGHT", "LEFT", timeout_s
        )
        return None if job_id is None else job_id.decode()

    async def claim(
        self, job_type: str, job_id: str, worker_id: str, lease_ms: int, default_max_attempts: int = 1
    ) -> tuple[Job | None, str]:
        """Starts a run of a popped job: (the RUNNING job, 'ok') or (None, why not)."""
        [result] = await self.claim_many(job_type, [job_id], worker_id, lease_ms, default_max_attempts)
        return result

    async def claim_many(
        self,
        job_type: str,
        job_ids: Sequence[str],
        worker_id: str,
        lease_ms: int,
        default_max_attempts: int = 1,
        *,
        via: OwnConnection | None = None,
    ) -> list[tuple[Job | None, str]]:
        """Starts runs of popped jobs in one call: per id, (the RUNNING job, 'ok') or (None, why not).

        A job whose record cannot be decoded is failed for good (a dead letter).
        `via`: the caller's own connection, else one from the pool.
        """
        queue = self.keys.queue(job_type)
        replies = await self._call_script(
            self._scripts.claim,
            via,
            keys=[
                queue.popped,
                queue.suspects,
                queue.leases,
                queue.held(worker_id),
                *map(self.keys.job, job_ids),
            ],
            args=[worker_id, lease_ms, default_max_attempts, *job_ids, *JOB_FIELDS],
        )
        return await self._claimed(job_type, worker_id, job_ids, replies)

    async def _claimed(
        self, job_type: str, worker_id: str, job_ids: Sequence[str], replies: Reply
    ) -> list[tuple[Job | None, str]]:
        """Decodes claim replies (claim_popped in lua/_prelude.lua), ending corrupt jobs."""
        results: list[tuple[Job | None, str]] = []
        for job_id, reply in zip(job_ids, replies, strict=True):
            outcome = reply[0].decode()
            if outcome != "ok":
                detail = f" ({_status_name(reply[1])})" if len(reply) > 1 else ""
                results.append((None, outcome + detail))
                continue
            try:
                results.append((decode_job_values(reply[1:]), "ok"))
            except ValueError as exc:
                # It is RUNNING under our lease now: end it as a dead letter rather
                # than let it be redelivered forever.
                lease_token = int(reply[1 + JOB_FIELDS.index(b"lease_token")])
                await self.fail(
                    _wreck(job_id, job_type, worker_id, lease_token), f"corrupt job record: {exc}", None
                )
                results.append((None, f"corrupt ({exc})"))
        return results

    async def heartbeat(
        self,
        job_type: str,
        worker_id: str,
        held: Sequence[tuple[str, int]],
        lease_ms: int,
        liveness_ms: int,
    ) -> list[tuple[str, str]]:
        """Marks the worker alive and extends the leases of `held` (id, lease token).

        Returns (id, status name) of the leases it lost.
        """
        queue = self.keys.queue(job_type)
        args: list[str | int] = [lease_ms, worker_id, liveness_ms]
        for job_id, token in held:
            args += [job_id, token]
        lost = await self._scripts.heartbeat(
            keys=[queue.leases, queue.workers, queue.held(worker_id), *(self.keys.job(i) for i, _ in held)],
            args=args,
        )
        pairs = iter(lost)
        return [(job_id.decode(), _status_name(status)) for job_id, status in zip(pairs, pairs, strict=True)]

    async def complete(self, job: Job) -> str:
        """Records a successful run; returns 'ok', or why it was refused (a stale lease)."""
        [outcome] = await self.complete_many(job.type, job.worker_id, [job])
        return outcome

    async def complete_many(self, job_type: str, worker_id: str, jobs: Sequence[Job]) -> list[str]:
        """Records successful runs of one worker in one call; per job as `complete`."""
        outcomes, _, _ = await self.worker_round(job_type, worker_id, jobs)
        return outcomes

    async def worker_round(
        self,
        job_type: str,
        worker_id: str,
        completed: Sequence[Job] = (),
        *,
        claim: Sequence[str] = (),
        take: int = 0,
        lease_ms: int = 0,
        default_max_attempts: int = 1,
        via: OwnConnection | None = None,
    ) -> tuple[list[str], list[tuple[Job | None, str]], list[str]]:
        """A worker's round trip (complete.lua): records its successful runs (per job
        as `complete`), claims the popped ids `claim` (per id as `claim_many`, under a
        lease of `lease_ms`), then moves up to `take` ready ids to the popped list
        without waiting (oldest first): its next ids to claim, in its next round.
        Returns (outcomes, claims, ids taken). `via`: the caller's own connection,
        else one from the pool."""
        queue = self.keys.queue(job_type)
        args: list[str | int | bytes] = [
            self.retention_ms, take, len(completed), worker_id, lease_ms, default_max_attempts,
        ]  # fmt: skip
        for job in completed:
            args += [job.id, job.lease_token]
        if claim:
            args += [*claim, *JOB_FIELDS]
        outcomes, taken, claims = await self._call_script(
            self._scripts.complete,
            via,
            keys=[
                queue.leases,
                queue.held(worker_id),
                queue.ready,
                queue.popped,
                queue.suspects,
                *(self.keys.job(job.id) for job in completed),
                *map(self.keys.job, claim),
            ],
            args=args,
        )
        return (
            ["ok" if r == b"ok" else f"stale lease (job is {_status_name(r)})" for r in outcomes],
            await self._claimed(job_type, worker_id, claim, claims) if claim else [],
            [job_id.decode() for job_id in taken],
        )

    @staticmethod
    async def _call_script(
        script: AsyncScript, via: OwnConnection | None, keys: list[str], args: Sequence[Any]
    ) -> Reply:
        if via is None:
            return await script(keys=keys, args=args)
        return await via.script(script, keys, args)

    async def fail(self, job: Job, error: str, retry_delay_ms: int | None) -> str:
        """Records a failed run: 'retrying' (if attempts are left and `retry_delay_ms`
        is not None), 'failed' (dead letter), or why it was refused (a stale lease)."""
        queue = self.keys.queue(job.type)
        delay = -1 if retry_delay_ms is None else max(0, retry_delay_ms)
        reply = await self._scripts.fail(
            keys=[
                self.keys.job(job.id),
                queue.leases,
                queue.held(job.worker_id),
                queue.scheduled,
                queue.failed,
            ],
            args=[job.id, job.lease_token, error, delay, self.retention_ms, self.keys.schedule_channel],
        )
        if reply[0] in (b"retrying", b"failed"):
            return str(reply[0].decode())
        return _refusal(reply)

    async def release(self, job: Job) -> str:
        """Hands a running job back to the ready list; returns 'ok' or why it was refused."""
        queue = self.keys.queue(job.type)
        reply = await self._scripts.release(
            keys=[self.keys.job(job.id), queue.leases, queue.ready, queue.held(job.worker_id)],
            args=[job.id, job.lease_token],
        )
        return _refusal(reply)

    # -- the reaper ------------------------------------------------------------

    async def expired_leases(self, job_type: str, limit: int = 100) -> list[str]:
        return await self._expired(self.keys.queue(job_type).leases, limit)

    async def dead_workers(self, job_type: str, limit: int = 100) -> list[str]:
        """Workers of the type whose liveness deadline passed."""
        return await self._expired(self.keys.queue(job_type).workers, limit)

    async def _expired(self, key: str, limit: int) -> list[str]:
        members = await self._scripts.expired(keys=[key], args=[limit])
        return [m.decode() for m in members]

    async def held_by(self, job_type: str, worker_id: str) -> list[str]:
        members: set[bytes] = await self.redis.smembers(self.keys.queue(job_type).held(worker_id))  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    async def recover(self, job_type: str, job_id: str, dead_worker: str | None = None) -> str:
        """Takes back a job whose lease expired (or, given `dead_worker`, whose worker died).

        Returns 'requeued', 'failed' (that was its last attempt), 'alive', 'moved' or 'dropped'.
        """
        queue = self.keys.queue(job_type)
        outcome = await self._scripts.recover(
            keys=[self.keys.job(job_id), queue.leases, queue.ready, queue.failed, queue.workers],
            args=[job_id, dead_worker or "lease", self.retention_ms],
        )
        return str(outcome.decode())

    async def forget_worker(self, job_type: str, worker_id: str, *, leaving: bool = False) -> bool:
        """Drops a dead worker (or, `leaving`, one that shuts down) from the registry.

        Returns False when a dead worker came back meanwhile.
        """
        queue = self.keys.queue(job_type)
        return bool(
            await self._scripts.forget_worker(
                keys=[queue.workers, queue.held(worker_id)], args=[worker_id, int(leaving)]
            )
        )

    async def give_back(
        self, job_type: str, job_ids: Sequence[str], *, via: OwnConnection | None = None
    ) -> int:
        """Returns taken, unclaimed ids (oldest first) to the front of the ready queue;
        returns how many were still the caller's to give."""
        queue = self.keys.queue(job_type)
        given = await self._call_script(self._scripts.give_back, via, [queue.popped, queue.ready], job_ids)
        return int(given)

    async def sweep_popped(self, job_type: str, stall_ms: int) -> int:
        """Re-queues ids popped but not claimed within `stall_ms`; returns how many."""
        queue = self.keys.queue(job_type)
        return int(
            await self._scripts.sweep_popped(
                keys=[queue.popped, queue.suspects, queue.ready], args=[stall_ms]
            )
        )


def decode_job(fields: Mapping[bytes, bytes]) -> Job:
    """The job of a stored hash (HGETALL). Raises ValueError for a record that is not one."""
    return decode_job_values([fields.get(name) for name in JOB_FIELDS])


_STATUS_OF = {str(status.value).encode(): status for status in JobStatus}


def decode_job_values(values: Sequence[bytes | None]) -> Job:
    """The job of its hash's values in JOB_FIELDS order (None: field not set).
    Raises ValueError for a record that is not one.

    Runs once per claimed job: plain unpacking, no helpers per call.
    """
    (
        job_id,
        job_type,
        payload,
        status,
        execution_time_ms,
        created_at,
        updated_at,
        attempt,
        last_error,
        started_at,
        finished_at,
        worker_id,
        max_attempts,
        timeout_ms,
        idempotency_key,
        backoff_base_ms,
        backoff_factor,
        backoff_cap_ms,
        lease_token,
    ) = values
    if job_id is None or job_type is None:
        raise ValueError("job record without id or type")
    backoff = None
    if backoff_base_ms is not None:
        if backoff_factor is None or backoff_cap_ms is None:
            raise ValueError("job record with part of a backoff")
        backoff = Backoff(
            base_ms=int(backoff_base_ms), factor=float(backoff_factor), cap_ms=int(backoff_cap_ms)
        )
    known_status = _STATUS_OF.get(status or b"")
    return Job(
        id=job_id.decode(errors="replace"),
        type=job_type.decode(errors="replace"),
        payload=payload or b"",
        status=JobStatus(int(status or 0)) if known_status is None else known_status,
        execution_time_ms=int(execution_time_ms or 0),
        created_at=int(created_at or 0),
        updated_at=int(updated_at or 0),
        attempt=int(attempt or 0),
        last_error=last_error.decode(errors="replace") if last_error else "",
        started_at=int(started_at or 0),
        finished_at=int(finished_at or 0),
        worker_id=worker_id.decode(errors="replace") if worker_id else "",
        max_attempts=int(max_attempts or 0),
        timeout_ms=int(timeout_ms or 0),
        idempotency_key=idempotency_key.decode(errors="replace") if idempotency_key else "",
        backoff=backoff,
        lease_token=int(lease_token or 0),
    )


def _option_fields(options: JobOptions) -> list[str | int | float]:
    """Hash fields for the options that are set (unset ones are not stored: smaller jobs)."""
    fields: list[str | int | float] = []
    if options.max_attempts is not None:
        fields += ["max_attempts", check_max_attempts(options.max_attempts)]
    if options.timeout_ms is not None:
        fields += ["timeout_ms", check_timeout_ms(options.timeout_ms)]
    if options.backoff is not None:
        b = options.backoff
        fields += ["backoff_base_ms", b.base_ms, "backoff_factor", repr(b.factor), "backoff_cap_ms", b.cap_ms]
    if options.idempotency_key:
        fields += ["idempotency_key", check_idempotency_key(options.idempotency_key)]
    return fields


@dataclasses.dataclass(slots=True)
class _Pending:
    """One job of an enqueue_many call on its way into Redis."""

    request: EnqueueRequest
    job_id: str
    at: str  # execution time for the script: '' means now
    fields: list[str | int | float]
    stale: str = ""
    job: Job | None = None


def _wreck(job_id: str, job_type: str, worker_id: str, lease_token: int) -> Job:
    """Just enough of an undecodable job to fail it under the lease just taken."""
    return Job(
        id=job_id,
        type=job_type,
        payload=b"",
        status=JobStatus.RUNNING,
        execution_time_ms=0,
        created_at=0,
        updated_at=0,
        worker_id=worker_id,
        lease_token=lease_token,
    )


def _status_name(raw: bytes) -> str:
    try:
        return JobStatus(int(raw)).name
    except ValueError:
        return raw.decode(errors="replace") or "missing"


def _refusal(reply: list[bytes]) -> str:
    if reply[0] == b"ok":
        return "ok"
    return f"stale lease (job is {_status_name(reply[1])})"
