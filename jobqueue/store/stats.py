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

from ..model import check_job_type
from ..queues import MINUTES, QueueStats, StatsReport, total_of
from . import scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace
    from .partitions import Partitions

# Ids looked at from the right end of `ready` for the oldest ready job: stale copies
# of cancelled jobs may lie there (cancel leaves them), a few at most in practice.
OLDEST_LOOK = 8


class StatsReader:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        partitions: Partitions,
        *,
        retention_ms: int,
        max_depth_of: Callable[[str], int],
    ) -> None:
        """`max_depth_of`: the deployment's limit of pending jobs for a type (0: none)."""
        self.redis = redis
        self.keys = keys
        self.partitions = partitions
        self.retention_ms = retention_ms
        self.max_depth_of = max_depth_of
        self._script = scripts.load(redis, "queue_stats")["queue_stats"]

    async def read(self, job_type: str = "") -> StatsReport:
        """The counts of `job_type` (a type without jobs has zeros), or of every type
        ever enqueued when it is empty; with their sums."""
        if job_type:
            job_types = [check_job_type(job_type)]
        else:
            members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
            job_types = sorted(m.decode() for m in members)
            if not job_types:
                seconds, micros = await self.redis.time()
                return self._report([], [], seconds * 1000 + micros // 1000)
        # A type spread over partitions is one call per partition, its counts summed.
        partitions = {t: await self.partitions.covered(t) for t in job_types}
        calls = [self._call(t, p) for t in job_types for p in partitions[t]]
        if len(calls) == 1:
            replies = [await self._script.run(*calls[0])]
        else:
            replies = await self._script.run_each(calls)
        read_at = max(reply[0] for reply in replies)
        of_types, at = [], 0
        for name in job_types:
            count = len(partitions[name])
            of_types.append((await self.partitions.count(name), replies[at : at + count]))
            at += count
        return self._report(job_types, of_types, read_at)

    def _call(self, job_type: str, partition: str) -> tuple[list[str], list[str | int]]:
        keys = self._script.keys(self.keys.queue(job_type, partition))
        prefix = self.keys.job_key_prefix(partition)
        return keys, [self.retention_ms, prefix, OLDEST_LOOK]

    def _report(
        self, job_types: Sequence[str], replies: Sequence[tuple[int, Sequence[Any]]], read_at: int
    ) -> StatsReport:
        queues, workers = [], set()
        for job_type, (partitions, of_type) in zip(job_types, replies, strict=True):
            queue, live = self._queue(job_type, partitions, of_type)
            queues.append(queue)
            workers.update(live)
        return StatsReport(queues, total_of(queues, len(workers)), read_at)

    def _queue(
        self, job_type: str, partitions: int, replies: Sequence[Sequence[Any]]
    ) -> tuple[QueueStats, set[bytes]]:
        """The type's counts: its partitions' summed (a worker counted once);
        `partitions`: its count now (more may be covered, after a shrink)."""
        pending = scheduled = running = completed = failed = cancelled = expired = oldest = 0
        done, dead = [0] * MINUTES, [0] * MINUTES
        live: set[bytes] = set()
        paused = False
        for reply in replies:
            now, raw, p_scheduled, p_completed, p_failed, p_cancelled, p_oldest, p_live, p_expired = reply
            counters = dict(zip(raw[::2], raw[1::2], strict=True))
            pending += int(counters.get(b"pending", 0))
            running += int(counters.get(b"running", 0))
            scheduled += p_scheduled
            completed += p_completed
            failed += p_failed
            cancelled += p_cancelled
            expired += p_expired
            oldest = max(oldest, p_oldest)
            live.update(p_live)
            paused = paused or counters.get(b"paused") == b"1"
            p_done, p_dead = per_minute(counters, now // 60_000)
            done = [a + b for a, b in zip(done, p_done, strict=True)]
            dead = [a + b for a, b in zip(dead, p_dead, strict=True)]
        queue = QueueStats(
            job_type,
            pending=pending,
            scheduled=scheduled,
            # Popped but not yet claimed counts as ready: it is PENDING and due.
            ready=max(0, pending - scheduled),
            running=running,
            completed=completed,
            failed=failed,
            cancelled=cancelled,
            expired=expired,
            oldest_ready_age_ms=oldest,
            completed_per_minute=done,
            failed_per_minute=dead,
            workers=len(live),
            paused=paused,
            max_depth=self.max_depth_of(job_type),
            partitions=partitions,
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
