"""Every change of job state: one method per Lua script of lua/, and the blocking pop.

Each method is one atomic script, so a process that dies between two calls
leaves Redis in a state the reaper can repair. The methods take and return
domain values (ids, `Job`s, `Result`s); the key lists come from each script's
declared keys (scripts.py) and the outcome codes are decoded in outcomes.py.
Reads that change nothing are in inspect.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..errors import NotReplicated
from ..model import Job, JobStatus, UniqueMode, check_job_id, partition_of_id, partition_of_type
from . import scripts
from .codec import JOB_FIELDS, TRACE_FIELD, NewJob, decode_job_values, status_of
from .outcomes import OK_CODE, Outcome, Result, decode, decode_all

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .connection import OwnConnection
    from .keys import Keyspace
    from .replication import ReplicaAcks

log = logging.getLogger("jobqueue.store")

# A claimed job, or why the id was not claimed.
Claim = Job | Result
_LEASE_TOKEN = JOB_FIELDS.index(b"lease_token")
# With tracing on, a claim also returns the job's trace context, after JOB_FIELDS.
_TRACED_FIELDS = (*JOB_FIELDS, TRACE_FIELD.encode())
_TRACE_CONTEXT = 1 + len(JOB_FIELDS)  # its place in a claim's reply


class Beat(NamedTuple):
    """What a heartbeat found."""

    # The worker was not registered as alive: its first beat, or it was forgotten
    # (a stall past its liveness, or Redis lost its data). Its ListWorkers entry may
    # be gone.
    joined: bool
    # (id, the run's lease token, the job's status; None if the job is gone) of each
    # lease it lost.
    lost: list[tuple[str, int, JobStatus | None]]


class Transitions:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        retention_ms: int,
        idempotency_window_ms: int,
        trace_contexts: bool = False,
        replica_acks: ReplicaAcks | None = None,
    ) -> None:
        """`redis` must return bytes (decode_responses=False): payloads are binary.
        `trace_contexts`: claims return the jobs' trace contexts (tracing on).
        `replica_acks`: how many replicas an enqueue waits for (None: none)."""
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self.idempotency_window_ms = idempotency_window_ms
        self.trace_contexts = trace_contexts
        self._claim_fields = _TRACED_FIELDS if trace_contexts else JOB_FIELDS
        self._scripts = scripts.load(redis)
        self.replica_acks = replica_acks

    # -- producers and the API -------------------------------------------------

    async def enqueue(
        self, job_type: str, jobs: Sequence[NewJob], *, max_depth: int = 0, partition: str | None = None
    ) -> tuple[int, list[int | bytes]]:
        """Stores new PENDING jobs of one type (enqueue.lua); the ids are set.

        Returns (created_at, per job: its execution time if it was created, else
        the id of the job its idempotency key (or unique key) points at, b"~" and the
        id of a PENDING job debounced, or b"full": refused, the type already holds
        `max_depth` pending jobs (0: no limit), or b"expires_early": refused, its
        expiry is not after now and its execution time). `partition`: where they go
        (their ids must start with it); None: the type's first.

        With replica acks wanted (replication.py), NotReplicated if fewer replicas than
        wanted confirmed the writes in time.
        """
        queue = self.keys.queue(job_type, partition)
        job_key = self.keys.job_key_prefix(partition or partition_of_type(job_type))
        keys = self._scripts["enqueue"].keys(queue, more=[job_key + new.job_id for new in jobs])
        args: list[str | bytes | int | float] = [
            job_type, self.keys.schedule_channel, self.idempotency_window_ms, len(jobs), max_depth,
        ]  # fmt: skip
        for new in jobs:
            key_index = 0
            options = new.request.options
            if options.idempotency_key:
                keys.append(queue.idempotency(options.idempotency_key))
                key_index = len(keys)  # Lua indexes from 1
            unique = ""
            if options.unique_key:
                keys.append(queue.unique(options.unique_key))
                mode = "a" if options.unique_mode == UniqueMode.WHILE_ACTIVE else options.debounce_ms
                unique = f",{len(keys)},{mode}"
            args += [
                f"{new.at},{new.stale},{key_index},{len(new.fields) // 2}{unique}",
                new.request.payload,
                *new.fields,
            ]
        replicas = 0 if self.replica_acks is None else await self.replica_acks.wanted(keys[0])
        if not replicas:
            created_at, *outcomes = await self._scripts["enqueue"].run(keys, args)
            return created_at, outcomes
        assert self.replica_acks is not None
        timeout_ms = self.replica_acks.timeout_ms
        reply, acked = await self._scripts["enqueue"].run_replicated(keys, args, replicas, timeout_ms)
        if acked < replicas:
            raise NotReplicated(acked, replicas, self.replica_acks.timeout_s)
        created_at, *outcomes = reply
        return created_at, outcomes

    async def cancel(self, job_id: str) -> Result:
        """Ends a PENDING or RUNNING job as CANCELLED: OK (with the status it had),
        NOT_FOUND or WRONG_STATE."""
        job_id = check_job_id(job_id)
        return await self._on_job("cancel", job_id, [job_id, self.retention_ms])

    async def redrive(self, job_id: str) -> Result:
        """Runs a FAILED, CANCELLED or EXPIRED job again, due now, attempts from zero, no
        expiry (RetryJob):
        OK, NOT_FOUND or WRONG_STATE."""
        job_id = check_job_id(job_id)
        return await self._on_job("redrive", job_id, [job_id])

    async def delete(self, job_id: str) -> Result:
        """Removes a finished job, its index entry and its idempotency key (DeleteJobs):
        OK (with its status), NOT_FOUND or WRONG_STATE (not finished)."""
        job_id = check_job_id(job_id)
        job_key = self.keys.job(job_id)
        stored = await self.redis.hmget(job_key, ["type", "idempotency_key"])
        job_type, idempotency_key = cast("list[bytes | None]", stored)
        if job_type is None:
            return Result(Outcome.NOT_FOUND)
        queue = self.keys.queue(job_type.decode(), partition_of_id(job_id))
        more = [queue.idempotency(idempotency_key.decode())] if idempotency_key else []
        script = self._scripts["delete"]
        return decode(await script.run(script.keys(queue, job=job_key, more=more), [job_id]))

    async def _on_job(self, name: str, job_id: str, args: list[str | int]) -> Result:
        """Runs a script on one job known by id alone (its queue's keys from its type)."""
        job_type = await self._type_of(job_id)
        if job_type is None:
            return Result(Outcome.NOT_FOUND)
        script = self._scripts[name]
        keys = script.keys(self.keys.queue(job_type, partition_of_id(job_id)), job=self.keys.job(job_id))
        return decode(await script.run(keys, args))

    async def _type_of(self, job_id: str) -> str | None:
        """The job's type, for its queue's keys (None: no such job)."""
        job_type: bytes | None = await self.redis.hget(self.keys.job(job_id), "type")  # type: ignore[assignment]
        return None if job_type is None else job_type.decode()

    # -- the scheduler ---------------------------------------------------------

    async def promote(
        self, job_type: str, limit: int, *, partition: str | None = None
    ) -> tuple[int, float | None]:
        """Moves due jobs to the ready list: (jobs moved, ms until the next is due or
        None), the ms to the µs."""
        keys = self._scripts["promote"].keys(self.keys.queue(job_type, partition))
        moved, delay_us = await self._scripts["promote"].run(keys, [limit])
        return int(moved), (None if delay_us < 0 else delay_us / 1000)

    # -- workers ---------------------------------------------------------------

    async def pop(
        self, connection: OwnConnection, job_type: str, timeout_s: float, *, partition: str | None = None
    ) -> str | None:
        """Waits for a ready job id and moves it to the popped list (BLMOVE): the one
        transition that is a command, since a script cannot block.

        The connection is the caller's own: the call holds it while it waits.
        """
        queue = self.keys.queue(job_type, partition)
        job_id: bytes | None = await connection.execute(
            "BLMOVE", queue.ready, queue.popped, "RIGHT", "LEFT", timeout_s, blocks_s=timeout_s
        )
        return None if job_id is None else job_id.decode()

    async def claim(
        self,
        job_type: str,
        job_ids: Sequence[str],
        worker_id: str,
        lease_ms: int,
        default_max_attempts: int,
        *,
        via: OwnConnection | None = None,
        partition: str | None = None,
    ) -> list[Claim]:
        """Starts runs of popped jobs (claim.lua): per id, the RUNNING job, or why not.

        `via`: the caller's own connection, else one from the pool.
        """
        script = self._scripts["claim"]
        keys = script.keys(
            self.keys.queue(job_type, partition), worker_id=worker_id, more=[*map(self.keys.job, job_ids)]
        )
        args: list[str | int | bytes] = [
            worker_id, lease_ms, default_max_attempts, job_type, self.retention_ms, *job_ids,
            *self._claim_fields,
        ]  # fmt: skip
        return await self._claimed(job_type, worker_id, job_ids, await script.run(keys, args, via))

    async def round(
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
        partition: str | None = None,
    ) -> tuple[list[Result], list[Claim], list[str]]:
        """A busy worker's round trip (round.lua): records its successful runs (OK, or
        STALE: its lease was lost), claims the popped ids `claim` (as `claim`), then
        takes up to `take` ready ids into the popped list, oldest first: its ids to
        claim in its next round. Returns (records, claims, ids taken)."""
        script = self._scripts["round"]
        keys = script.keys(
            self.keys.queue(job_type, partition),
            worker_id=worker_id,
            more=[*(self.keys.job(job.id) for job in completed), *map(self.keys.job, claim)],
        )
        args: list[str | int | bytes] = [
            self.retention_ms, take, len(completed), worker_id, lease_ms, default_max_attempts, job_type,
        ]  # fmt: skip
        for job in completed:
            # A run's last progress goes with its completion (worker/progress.py): progress_at set.
            progress = repr(job.progress) if job.progress_at else ""
            args += [job.id, job.lease_token, job.result, progress, job.progress_message]
        if claim:
            args += [*claim, *self._claim_fields]
        records, taken, claims = await script.run(keys, args, via)
        return (
            decode_all(records),
            await self._claimed(job_type, worker_id, claim, claims) if claim else [],
            [job_id.decode() for job_id in taken],
        )

    async def _claimed(
        self, job_type: str, worker_id: str, job_ids: Sequence[str], replies: Any
    ) -> list[Claim]:
        """Decodes claim_popped's replies; a job whose record cannot be decoded is
        failed for good (a dead letter), not redelivered forever."""
        claims: list[Claim] = []
        for job_id, reply in zip(job_ids, replies, strict=True):
            if reply[0] != OK_CODE:
                claims.append(decode(reply))
                continue
            try:
                job = decode_job_values(reply[1:_TRACE_CONTEXT])
            except ValueError as exc:
                log.error(  # noqa: TRY400 - the cause is in the line; a traceback would add nothing
                    "job %s (%s): corrupt record (%s): failed for good",
                    job_id,
                    job_type,
                    exc,
                    extra={"job_id": job_id, "job_type": job_type},
                )
                wreck = Job(job_id, job_type, b"", JobStatus.RUNNING, 0, 0, 0, worker_id=worker_id)
                wreck.lease_token = int(reply[1 + _LEASE_TOKEN])
                claims.append(await self.fail(wreck, f"corrupt job record: {exc}", None))
                continue
            if self.trace_contexts and reply[_TRACE_CONTEXT]:
                job.trace_context = reply[_TRACE_CONTEXT].decode()
            claims.append(job)
        return claims

    async def heartbeat(
        self,
        job_type: str,
        worker_id: str,
        held: Sequence[tuple[str, int]],
        lease_ms: int,
        liveness_ms: int,
        *,
        partition: str | None = None,
    ) -> Beat:
        """Marks the worker alive and extends the leases of `held` (id, lease token)."""
        script = self._scripts["heartbeat"]
        keys = script.keys(
            self.keys.queue(job_type, partition),
            worker_id=worker_id,
            more=[self.keys.job(i) for i, _ in held],
        )
        args: list[str | int] = [lease_ms, worker_id, liveness_ms]
        for job_id, token in held:
            args += [job_id, token]
        joined, *reply = await script.run(keys, args)
        triples = iter(reply)
        lost = [
            (job_id.decode(), int(token), status_of(status))
            for job_id, token, status in zip(triples, triples, triples, strict=True)
        ]
        return Beat(bool(joined), lost)

    async def fail(self, job: Job, error: str, retry_delay_ms: int | None) -> Result:
        """Records a failed run: RETRYING (attempts are left and `retry_delay_ms` is
        not None), DEAD_LETTERED, or STALE (its lease was lost)."""
        script = self._scripts["fail"]
        queue = self.keys.queue(job.type, partition_of_id(job.id))
        keys = script.keys(queue, job=self.keys.job(job.id), worker_id=job.worker_id)
        delay = -1 if retry_delay_ms is None else max(0, retry_delay_ms)
        args: list[str | int] = [
            job.id, job.lease_token, error, delay, self.retention_ms, self.keys.schedule_channel,
        ]  # fmt: skip
        return decode(await script.run(keys, args))

    async def progress(self, job: Job, fraction: float, message: str) -> Result:
        """Writes a running job's progress (set_progress): OK, or STALE (its lease was
        lost, or the job is no longer RUNNING): nothing written."""
        script = self._scripts["progress"]
        keys = script.keys(self.keys.queue(job.type, partition_of_id(job.id)), job=self.keys.job(job.id))
        return decode(await script.run(keys, [job.lease_token, repr(fraction), message, job.id]))

    async def release(self, job: Job) -> Result:
        """Hands a running job back to the front of the ready list (a worker's
        shutdown): OK, or STALE."""
        script = self._scripts["release"]
        queue = self.keys.queue(job.type, partition_of_id(job.id))
        keys = script.keys(queue, job=self.keys.job(job.id), worker_id=job.worker_id)
        return decode(await script.run(keys, [job.id, job.lease_token]))

    async def give_back(
        self,
        job_type: str,
        job_ids: Sequence[str],
        *,
        via: OwnConnection | None = None,
        partition: str | None = None,
    ) -> int:
        """Returns taken, unclaimed ids (oldest first) to the front of the ready queue;
        returns how many were still the caller's to give."""
        script = self._scripts["give_back"]
        keys = script.keys(self.keys.queue(job_type, partition), more=[*map(self.keys.job, job_ids)])
        return int(await script.run(keys, job_ids, via))

    async def forget_worker(
        self, job_type: str, worker_id: str, *, leaving: bool = False, partition: str | None = None
    ) -> Result:
        """Drops a dead worker (or, `leaving`, one that shuts down) from the registry:
        OK, or ALIVE when a dead worker came back meanwhile."""
        script = self._scripts["forget_worker"]
        keys = script.keys(self.keys.queue(job_type, partition), worker_id=worker_id)
        return decode(await script.run(keys, [worker_id, int(leaving)]))

    # -- the reaper ------------------------------------------------------------

    async def recover(self, job_type: str, job_id: str, dead_worker: str | None = None) -> Result:
        """Takes back a job whose lease expired (or, given `dead_worker`, whose worker
        died): RECOVERED, DEAD_LETTERED (that was its last attempt), ALIVE, MOVED or
        NOT_RUNNING."""
        script = self._scripts["recover"]
        keys = script.keys(self.keys.queue(job_type, partition_of_id(job_id)), job=self.keys.job(job_id))
        return decode(await script.run(keys, [job_id, dead_worker or "lease", self.retention_ms]))

    async def expire(
        self, job_type: str, job_ids: Sequence[str], *, partition: str | None = None
    ) -> list[str]:
        """Ends the jobs of `job_ids` (from `expiring`, past their expiry) that are still
        PENDING and never started as EXPIRED (expire.lua); returns their ids."""
        script = self._scripts["expire"]
        keys = script.keys(self.keys.queue(job_type, partition), more=[*map(self.keys.job, job_ids)])
        ended = await script.run(keys, [self.retention_ms, job_type, *job_ids])
        return [job_id.decode() for job_id in ended]

    async def tidy(
        self, job_type: str, *, forget_if_total: int | None = None, partition: str | None = None
    ) -> int:
        """Trims the type's finished indexes to retention. Returns -1 if the type holds a
        job or a worker; else its total_enqueued, or (given `forget_if_total`, the total
        seen when it was found empty) 1 once its stats, defaults and suspects are gone."""
        script = self._scripts["tidy"]
        forget = forget_if_total is not None
        args = [self.retention_ms, int(forget), forget_if_total or 0]
        return int(await script.run(script.keys(self.keys.queue(job_type, partition)), args))

    async def sweep_popped(self, job_type: str, stall_ms: int, *, partition: str | None = None) -> int:
        """Returns ids popped but not claimed within `stall_ms` to the ready list;
        returns how many."""
        queue = self.keys.queue(job_type, partition)
        # The script reads the priority of each id it sweeps: their keys must be declared.
        popped = cast("list[bytes]", await self.redis.lrange(queue.popped, 0, -1))
        script = self._scripts["sweep_popped"]
        keys = script.keys(queue, more=[self.keys.job(job_id.decode()) for job_id in popped])
        return int(await script.run(keys, [stall_ms]))
