"""GetQueueStats' reads: the counts of a type's jobs, from the counters the
transition scripts keep, never by counting jobs (docs/design.md, "Queue stats,
workers, pause and admission").

One type is one call of queue_stats.lua (one round trip, read only); every type
is the `types` registry, then one pipelined round trip of a call per type. The
cost grows with the number of types, not of jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..model import check_job_type, partition_of_type
from ..queues import MINUTES, QueueStats, StatsReport, total_of
from . import scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace

# Ids looked at from the right end of `ready` for the oldest ready job: stale copies
# of cancelled jobs may lie there (cancel leaves them), a few at most in practice.
OLDEST_LOOK = 8


class StatsReader:
    def __init__(
        self, redis: Redis, keys: Keyspace, *, retention_ms: int, max_depth_of: Callable[[str], int]
    ) -> None:
        """`max_depth_of`: the deployment's limit of pending jobs for a type (0: none)."""
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        self.max_depth_of = max_depth_of
        self._script = scripts.load(redis, "queue_stats")["queue_stats"]

    async def read(self, job_type: str = "") -> StatsReport:
        """The counts of `job_type` (a type without jobs has zeros), or of every type
        ever enqueued when it is empty; with their sums."""
        if job_type:
            job_type = check_job_type(job_type)
            reply = await self._script.run(*self._call(job_type))
            return self._report([job_type], [reply], reply[0])
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        job_types = sorted(m.decode() for m in members)
        if not job_types:
            seconds, micros = await self.redis.time()
            return self._report([], [], seconds * 1000 + micros // 1000)
        replies = await self._script.run_each([self._call(name) for name in job_types])
        return self._report(job_types, replies, max(reply[0] for reply in replies))

    def _call(self, job_type: str) -> tuple[list[str], list[str | int]]:
        keys = self._script.keys(self.keys.queue(job_type))
        prefix = self.keys.job_key_prefix(partition_of_type(job_type))
        return keys, [self.retention_ms, prefix, OLDEST_LOOK]

    def _report(self, job_types: Sequence[str], replies: Sequence[Any], read_at: int) -> StatsReport:
        queues, workers = [], set()
        for job_type, reply in zip(job_types, replies, strict=True):
            queue, live = self._queue(job_type, reply)
            queues.append(queue)
            workers.update(live)
        return StatsReport(queues, total_of(queues, len(workers)), read_at)

    def _queue(self, job_type: str, reply: Sequence[Any]) -> tuple[QueueStats, list[bytes]]:
        now, raw, scheduled, completed, failed, cancelled, oldest, live, expired = reply
        counters = dict(zip(raw[::2], raw[1::2], strict=True))
        pending = int(counters.get(b"pending", 0))
        done, dead = per_minute(counters, now // 60_000)
        queue = QueueStats(
            job_type,
            pending=pending,
            scheduled=scheduled,
            # Popped but not yet claimed counts as ready: it is PENDING and due.
            ready=max(0, pending - scheduled),
            running=int(counters.get(b"running", 0)),
            completed=completed,
            failed=failed,
            cancelled=cancelled,
            expired=expired,
            oldest_ready_age_ms=oldest,
            completed_per_minute=done,
            failed_per_minute=dead,
            workers=len(live),
            paused=counters.get(b"paused") == b"1",
            max_depth=self.max_depth_of(job_type),
        )
        return queue, live


def per_minute(counters: dict[bytes, bytes], minute: int) -> tuple[list[int], list[int]]:
    """The jobs completed and failed in each of the MINUTES minutes up to `minute`,
    oldest first, from the buckets of `stats`: slot s = m % 60 holds minute m in
    `m<s>`, so a slot last written more than an hour ago counts nowhere."""
    completed, failed = [0] * MINUTES, [0] * MINUTES
    first = minute - MINUTES + 1
    for minute_key, completed_key, failed_key in _SLOTS:
        written = counters.get(minute_key)
        if written is not None and 0 <= (i := int(written) - first) < MINUTES:
            completed[i] = int(counters.get(completed_key, 0))
            failed[i] = int(counters.get(failed_key, 0))
    return completed, failed


_SLOTS = [(f"m{s}".encode(), f"c{s}".encode(), f"f{s}".encode()) for s in range(60)]
