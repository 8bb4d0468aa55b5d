"""JobStore: every change of job state in Redis, one method per Lua script.

Nothing else in jobqueue writes job state. Each method is one atomic script
(plus, for enqueue, the idempotent registration of the job type), so a process
that dies between two calls leaves Redis in a state the reaper can repair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import JobAlreadyFinished, JobNotFound, PayloadTooLarge
from ..model import (
    Job,
    JobStatus,
    check_execution_time,
    check_job_id,
    check_job_type,
    new_job_id,
    partition_of_type,
)
from .keys import Keyspace
from .scripts import Scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

DAY_MS = 24 * 3600 * 1000
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
_FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)


class JobStore:
    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keyspace | None = None,
        retention_ms: int = DAY_MS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        """`redis` must return bytes (decode_responses=False): payloads are binary."""
        self.redis = redis
        self.keys = keys or Keyspace()
        self.retention_ms = retention_ms
        self.max_payload_bytes = max_payload_bytes
        self._scripts = Scripts.register(redis)

    # -- producers and the API -------------------------------------------------

    async def enqueue(self, job_type: str, payload: bytes, execution_time_ms: int | None = None) -> Job:
        """Stores a PENDING job; `execution_time_ms` None (or 0) means now."""
        check_job_type(job_type)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(len(payload), self.max_payload_bytes)
        at = "" if not execution_time_ms else str(check_execution_time(execution_time_ms))
        job_id = new_job_id(partition_of_type(job_type))
        queue = self.keys.queue(job_type)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.types, job_type)
            await self._scripts.enqueue(
                keys=[self.keys.job(job_id), queue.scheduled, queue.ready],
                args=[job_id, job_type, payload, at, self.keys.schedule_channel],
                client=pipe,
            )
            _, (created_at, execution_time) = await pipe.execute()
        return Job(
            id=job_id,
            type=job_type,
            payload=payload,
            status=JobStatus.PENDING,
            execution_time_ms=int(execution_time),
            created_at=int(created_at),
            updated_at=int(created_at),
        )

    async def get(self, job_id: str) -> Job:
        job_id = check_job_id(job_id)
        fields: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        if not fields:
            raise JobNotFound(job_id)
        return decode_job(fields)

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancels a pending or running job; returns the status it had."""
        job_id = check_job_id(job_id)
        job_key = self.keys.job(job_id)
        job_type: bytes | None = await self.redis.hget(job_key, "type")  # type: ignore[assignment]
        if job_type is None:
            raise JobNotFound(job_id)
        queue = self.keys.queue(job_type.decode())
        reply = await self._scripts.cancel(
            keys=[job_key, queue.scheduled, queue.leases], args=[job_id, self.retention_ms]
        )
        outcome = reply[0].decode()
        if outcome == "not_found":
            raise JobNotFound(job_id)
        if outcome == "final":
            raise JobAlreadyFinished(job_id, _status_name(reply[1]))
        return JobStatus(int(reply[1]))

    async def job_types(self) -> set[str]:
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        return {t.decode() for t in members}

    # -- the scheduler ---------------------------------------------------------

    async def promote(self, job_type: str, limit: int = 1000) -> tuple[int, int | None]:
        """Moves due jobs to the ready list: (jobs moved, ms until the next is due or None)."""
        queue = self.keys.queue(job_type)
        moved, delay = await self._scripts.promote(keys=[queue.scheduled, queue.ready], args=[limit])
        return int(moved), (None if int(delay) < 0 else int(delay))

    # -- workers ---------------------------------------------------------------

    async def pop(self, blocking: Redis, job_type: str, timeout_s: float) -> str | None:
        """Waits for a ready job id and moves it to the popped list (BLMOVE).

        `blocking` is a client of its own: the call holds its connection while it waits.
        """
        queue = self.keys.queue(job_type)
        # Redis takes a decimal timeout; redis-py's annotation says int.
        job_id: bytes | None = await blocking.blmove(  # type: ignore[assignment]
            queue.ready,
            queue.popped,
            timeout_s,  # type: ignore[arg-type]
            "RIGHT",
            "LEFT",
        )
        return None if job_id is None else job_id.decode()

    async def claim(
        self, job_type: str, job_id: str, worker_id: str, lease_ms: int
    ) -> tuple[Job | None, str]:
        """Starts a run of a popped job: (the RUNNING job, 'ok') or (None, why not)."""
        queue = self.keys.queue(job_type)
        reply = await self._scripts.claim(
            keys=[self.keys.job(job_id), queue.popped, queue.suspects, queue.leases],
            args=[job_id, worker_id, lease_ms],
        )
        outcome = reply[0].decode()
        if outcome != "ok":
            detail = f" ({_status_name(reply[1])})" if len(reply) > 1 else ""
            return None, outcome + detail
        it = iter(reply[1:])
        return decode_job(dict(zip(it, it, strict=True))), "ok"

    async def heartbeat(
        self, job_type: str, held: Sequence[tuple[str, int]], lease_ms: int
    ) -> list[tuple[str, str]]:
        """Extends the leases of `held` (id, lease token); returns (id, status name) of those lost."""
        if not held:
            return []
        args: list[str | int] = [lease_ms]
        for job_id, token in held:
            args += [job_id, token]
        lost = await self._scripts.heartbeat(
            keys=[self.keys.queue(job_type).leases, *(self.keys.job(job_id) for job_id, _ in held)],
            args=args,
        )
        pairs = iter(lost)
        return [(job_id.decode(), _status_name(status)) for job_id, status in zip(pairs, pairs, strict=True)]

    async def finish(self, job: Job, status: JobStatus, error: str = "") -> str:
        """Records the outcome of a run; returns 'ok', or why it was refused (a stale lease)."""
        if status not in _FINAL:
            raise ValueError(f"a run finishes COMPLETED or FAILED, not {status.name}")
        reply = await self._scripts.finish(
            keys=[self.keys.job(job.id), self.keys.queue(job.type).leases],
            args=[job.id, job.lease_token, int(status), error, self.retention_ms],
        )
        return _refusal(reply)

    async def release(self, job: Job) -> str:
        """Hands a running job back to the ready list; returns 'ok' or why it was refused."""
        queue = self.keys.queue(job.type)
        reply = await self._scripts.release(
            keys=[self.keys.job(job.id), queue.leases, queue.ready], args=[job.id, job.lease_token]
        )
        return _refusal(reply)

    # -- the reaper ------------------------------------------------------------

    async def expired_leases(self, job_type: str, limit: int = 100) -> list[str]:
        ids = await self._scripts.expired_leases(keys=[self.keys.queue(job_type).leases], args=[limit])
        return [job_id.decode() for job_id in ids]

    async def recover(self, job_type: str, job_id: str) -> str:
        """Re-queues a job whose lease expired: 'requeued', 'alive' or 'dropped'."""
        queue = self.keys.queue(job_type)
        outcome = await self._scripts.recover(
            keys=[self.keys.job(job_id), queue.leases, queue.ready], args=[job_id]
        )
        return str(outcome.decode())

    async def sweep_popped(self, job_type: str, stall_ms: int) -> int:
        """Re-queues ids popped but not claimed within `stall_ms`; returns how many."""
        queue = self.keys.queue(job_type)
        return int(
            await self._scripts.sweep_popped(
                keys=[queue.popped, queue.suspects, queue.ready], args=[stall_ms]
            )
        )


def decode_job(fields: dict[bytes, bytes]) -> Job:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    def number(name: str) -> int:
        return int(fields.get(name.encode(), b"0"))

    return Job(
        id=text("id"),
        type=text("type"),
        payload=fields.get(b"payload", b""),
        status=JobStatus(number("status")),
        execution_time_ms=number("execution_time_ms"),
        created_at=number("created_at"),
        updated_at=number("updated_at"),
        attempt=number("attempt"),
        last_error=text("last_error"),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        worker_id=text("worker_id"),
        lease_token=number("lease_token"),
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
