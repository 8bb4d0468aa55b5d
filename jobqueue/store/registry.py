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

from ..model import check_job_type, partition_of_type
from ..queues import WorkerInfo
from . import scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.typing import EncodableT

    from .keys import Keyspace

# Held ids checked one by one at most per worker and type; a bigger set (a worker's
# held set is its concurrency, prefetch and a heartbeat's losses) counts as its size.
HELD_LOOK = 1000


class WorkerRegistry:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._held = scripts.load(redis, "worker_held")["worker_held"]

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

        Two round trips: the entries, then for every worker and type one call of
        worker_held.lua (its liveness deadline, the jobs it holds), pipelined."""
        if job_type:
            job_type = check_job_type(job_type)
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.workers)  # type: ignore[assignment]
        entries = sorted(
            (worker_id.decode(), entry)
            for worker_id, value in raw.items()
            if (entry := _entry(value)) is not None and (not job_type or job_type in entry["types"])
        )
        calls: list[tuple[list[str], list[EncodableT]]] = [
            (
                self._held.keys(self.keys.queue(name), worker_id=worker_id),
                [worker_id, self.keys.job_key_prefix(partition_of_type(name)), HELD_LOOK],
            )
            for worker_id, entry in entries
            for name in entry["types"]
        ]
        replies = await self._held.run_each(calls) if calls else []
        workers, at = [], 0
        for worker_id, entry in entries:
            # On a cluster each type's reply has its own master's clock: each deadline is
            # compared with the clock of the node that holds it.
            of_worker = replies[at : at + len(entry["types"])]
            at += len(entry["types"])
            if not any(deadline > now for now, deadline, _ in of_worker):
                continue
            workers.append(
                WorkerInfo(
                    worker_id,
                    host=entry["host"],
                    pid=entry["pid"],
                    types=tuple(entry["types"]),
                    concurrency=entry["concurrency"],
                    jobs_held=sum(held for _, _, held in of_worker),
                    started_at=entry["started_at"],
                    last_heartbeat_at=max(deadline for _, deadline, _ in of_worker) - entry["liveness_ms"],
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
