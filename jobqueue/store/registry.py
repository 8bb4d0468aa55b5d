"""The workers' registry entries: what ListWorkers shows of a worker.

A worker writes its entry (`P:workers`, worker id -> JSON) after a heartbeat that
joined it to its type's `workers` set (its first, or one after it was forgotten)
and removes it when it leaves; a reaper removes a dead worker's when it forgets
it (reaper.py). Whether a worker is live is not in the entry: it is its score in
its types' `workers` sets (its liveness deadline, moved by every heartbeat).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..model import check_job_type
from ..queues import WorkerInfo

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace
    from .partitions import Partitions


class WorkerRegistry:
    def __init__(self, redis: Redis, keys: Keyspace, partitions: Partitions) -> None:
        self.redis = redis
        self.keys = keys
        self.partitions = partitions

    async def register(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        types: tuple[str, ...],
        concurrency: int,
        started_at: int,
        liveness_ms: int,
    ) -> None:
        """Writes the worker's entry (after a heartbeat that joined it, so again after it was forgotten)."""
        entry = {
            "host": host, "pid": pid, "types": list(types), "concurrency": concurrency,
            "started_at": started_at, "liveness_ms": liveness_ms,
        }  # fmt: skip
        await self.redis.hset(self.keys.workers, worker_id, json.dumps(entry))

    async def remove(self, worker_id: str) -> None:
        await self.redis.hdel(self.keys.workers, worker_id)

    async def live(self, job_type: str = "") -> list[WorkerInfo]:
        """The live workers (serving `job_type`, or any type when it is empty), by id.

        Two round trips: the entries, then the liveness deadlines and held sets of
        all of them, pipelined, with the Redis clock."""
        if job_type:
            job_type = check_job_type(job_type)
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.workers)  # type: ignore[assignment]
        entries = sorted(
            (worker_id.decode(), entry)
            for worker_id, value in raw.items()
            if (entry := _entry(value)) is not None and (not job_type or job_type in entry["types"])
        )
        # A worker of a type spread over partitions is alive, and holds jobs, in each.
        covered = {t: await self.partitions.covered(t) for _, entry in entries for t in entry["types"]}
        async with self.redis.pipeline(transaction=False) as pipe:
            # As a command: redis-py's cluster pipeline refuses its `time` method. On a
            # cluster it is one master's clock (the deadlines come from each partition's).
            pipe.execute_command("TIME")
            for worker_id, entry in entries:
                for name in entry["types"]:
                    for partition in covered[name]:
                        queue = self.keys.queue(name, partition)
                        pipe.zscore(queue.workers, worker_id)
                        pipe.scard(queue.held(worker_id))
            (seconds, micros), *replies = await pipe.execute()
        now = seconds * 1000 + micros // 1000
        workers, at = [], 0
        for worker_id, entry in entries:
            n = sum(len(covered[name]) for name in entry["types"])
            deadlines, held = replies[at : at + 2 * n : 2], replies[at + 1 : at + 2 * n : 2]
            at += 2 * n
            deadline = max((int(d) for d in deadlines if d is not None), default=0)
            if deadline <= now:
                continue
            workers.append(
                WorkerInfo(
                    worker_id,
                    host=entry["host"],
                    pid=entry["pid"],
                    types=tuple(entry["types"]),
                    concurrency=entry["concurrency"],
                    jobs_held=sum(held),
                    started_at=entry["started_at"],
                    last_heartbeat_at=deadline - entry["liveness_ms"],
                )
            )
        return workers


_FIELDS = {"host": str, "pid": int, "types": list, "concurrency": int, "started_at": int, "liveness_ms": int}


def _entry(value: bytes) -> dict[str, Any] | None:
    """An entry as register() writes it; None for anything else (not shown)."""
    try:
        entry = json.loads(value)
    except ValueError:
        return None
    if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in _FIELDS.items()):
        return None
    if not all(isinstance(t, str) for t in entry["types"]):
        return None
    return entry
