"""What the reads of queues show: a type's counts (GetQueueStats) and the live workers
(ListWorkers). The field names are the wire messages' (wire.py converts by name)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MINUTES = 60  # the per-minute counts cover the last hour


@dataclass(slots=True)
class QueueStats:
    """One type's counts (or, with `type` empty, the sums over types)."""

    type: str = ""
    pending: int = 0  # scheduled + ready
    scheduled: int = 0
    ready: int = 0
    running: int = 0
    # Finished jobs still retained.
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    # How long the next ready job has waited since it became due; 0: none.
    oldest_ready_age_ms: int = 0
    # Jobs completed, and failed for good, in each of the last MINUTES minutes, oldest first.
    completed_per_minute: list[int] = field(default_factory=lambda: [0] * MINUTES)
    failed_per_minute: list[int] = field(default_factory=lambda: [0] * MINUTES)
    workers: int = 0  # live workers of the type
    paused: bool = False
    max_depth: int = 0  # most PENDING jobs the type accepts; 0: no limit
    partitions: int = 1  # how many partitions its enqueues go to (SetQueuePartitions)


@dataclass(slots=True)
class StatsReport:
    """GetQueueStats' answer: per type, by name, and their sums."""

    queues: list[QueueStats]
    total: QueueStats
    read_at: int  # Unix ms, the Redis clock


def total_of(queues: list[QueueStats], distinct_workers: int) -> QueueStats:
    """The sums over `queues`: counts add up, the oldest ready job is the oldest of all,
    workers are counted once however many types they serve; no pause, no limit."""
    total = QueueStats(workers=distinct_workers, partitions=0)
    if not queues:
        return total
    for name in _SUMMED:
        setattr(total, name, sum(getattr(queue, name) for queue in queues))
    total.oldest_ready_age_ms = max(queue.oldest_ready_age_ms for queue in queues)
    total.completed_per_minute = [sum(c) for c in zip(*(q.completed_per_minute for q in queues), strict=True)]
    total.failed_per_minute = [sum(f) for f in zip(*(q.failed_per_minute for q in queues), strict=True)]
    return total


_SUMMED = ("pending", "scheduled", "ready", "running", "completed", "failed", "cancelled", "expired")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker as ListWorkers shows it."""

    id: str
    host: str
    pid: int
    types: tuple[str, ...]
    concurrency: int
    jobs_held: int  # running, or claimed ahead
    started_at: int  # Unix ms
    last_heartbeat_at: int  # Unix ms, the Redis clock


def field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))
