"""The partition counts of types (SetQueuePartitions; docs/design.md, "Partitions of a type").

A type's jobs live in `count` partitions (default 1: its first, partition_of_type's
tag). Two hashes without a hash tag hold what was set, each read and written by
single-key commands only: `partitions` (type -> count: where enqueues go) and
`partitions_covered` (type -> the highest count it ever had: what workers,
schedulers and reapers cover, so that a job left in a partition removed by a
shrink is still run). Every process reads both when it first needs them and again
once they are REFRESH_S old, so a change reaches every server and worker within
that, without a restart.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from ..model import check_job_type, check_partitions, partitions_of_type

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace

# How long a process trusts the counts it read.
REFRESH_S = 2.0


class Partitions:
    def __init__(self, redis: Redis, keys: Keyspace, *, refresh_s: float = REFRESH_S) -> None:
        self.redis = redis
        self.keys = keys
        self.refresh_s = refresh_s
        self._counts: dict[str, int] = {}
        self._covered: dict[str, int] = {}
        self._fresh_until = -math.inf
        self._reading: asyncio.Task[None] | None = None

    async def set(self, job_type: str, partitions: int) -> int:
        """Sets the type's partition count; returns how many partitions are covered
        (the highest count ever set, this one included). The covered count is written
        first: no enqueue goes to a partition before workers are told to cover it."""
        job_type, partitions = check_job_type(job_type), check_partitions(partitions)
        stored: bytes | None = await self.redis.hget(self.keys.partitions_covered, job_type)  # type: ignore[assignment]
        covered = max(partitions, int(stored or 1))
        if covered > int(stored or 1):
            await self.redis.hset(self.keys.partitions_covered, job_type, covered)
        await self.redis.hset(self.keys.partitions, job_type, partitions)
        self._counts[job_type], self._covered[job_type] = partitions, covered  # this process sees it at once
        return covered

    async def count(self, job_type: str) -> int:
        """How many partitions the type's enqueues go to."""
        await self._refresh()
        return self._counts.get(job_type, 1)

    async def tags(self, job_type: str) -> tuple[str, ...]:
        """The hash tags of the partitions the type's enqueues go to."""
        return partitions_of_type(job_type, await self.count(job_type))

    async def covered(self, job_type: str) -> tuple[str, ...]:
        """The hash tags of every partition the type ever had: what its workers,
        schedulers and reapers cover."""
        await self._refresh()
        count = max(self._covered.get(job_type, 1), self._counts.get(job_type, 1))
        return partitions_of_type(job_type, count)

    async def _refresh(self) -> None:
        if time.monotonic() < self._fresh_until:
            return
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        await asyncio.shield(self._reading)

    async def _read(self) -> None:
        counts: dict[bytes, bytes] = await self.redis.hgetall(self.keys.partitions)  # type: ignore[assignment]
        covered: dict[bytes, bytes] = await self.redis.hgetall(self.keys.partitions_covered)  # type: ignore[assignment]
        self._counts = {t.decode(): int(n) for t, n in counts.items()}
        self._covered = {t.decode(): int(n) for t, n in covered.items()}
        self._fresh_until = time.monotonic() + self.refresh_s
