"""Every Redis key name jobqueue uses is built here (docs/design.md lists them).

Keys of one partition share the hash tag `{pppp}`, so a Lua script that declares
them all runs on one Redis Cluster slot.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from ..model import partition_of_id, partition_of_type


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one job type's queue (in one partition)."""

    scheduled: str  # ZSET id -> execution time (ms): pending jobs not yet due
    ready: str  # LIST of ids due now; LPUSH new, workers pop from the right
    popped: str  # LIST of ids a worker popped and has not claimed yet
    suspects: str  # HASH id -> ms when the reaper first saw it in `popped`
    leases: str  # ZSET id -> lease expiry (ms): running jobs
    failed: str  # ZSET id -> ms it failed for good: the dead letters
    workers: str  # ZSET worker id -> liveness deadline (ms): workers of this type
    defaults: str  # HASH option -> the default the type's workers apply (worker_defaults.py)
    stats: str  # HASH: live counts, totals, per-minute buckets (kept by the scripts), `paused`
    live: str  # ZSET id -> created_at (ms): the unfinished jobs (PENDING, RUNNING)
    completed: str  # ZSET id -> finished_at (ms): COMPLETED jobs, trimmed to retention
    cancelled: str  # ZSET id -> finished_at (ms): CANCELLED jobs, trimmed to retention
    expired: str  # ZSET id -> finished_at (ms): EXPIRED jobs, trimmed to retention
    expiring: str  # ZSET id -> expires_at_ms: jobs enqueued with an expiry, for the reaper to end
    events: str  # STREAM of the partition's state changes, capped (WatchJob, WatchJobs)
    prio: str  # ZSET id -> place in line: due jobs of priorities other than the default
    _base: str  # "P:{pppp}", for the keys below
    _type: str

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names of the queue's fixed keys (what a script's KEYS line may name)."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))

    def named(self) -> dict[str, str]:
        """The fixed keys by name (what docs/design.md lists)."""
        return {name: getattr(self, name) for name in self.names()}

    def held(self, worker_id: str) -> str:
        """SET of the ids a worker claimed and has not finished (may hold stale ids)."""
        return f"{self._base}:held:{self._type}:{worker_id}"

    def idempotency(self, key: str) -> str:
        """STRING: the id of the job enqueued with `key`, for the idempotency window."""
        return f"{self._base}:idem:{self._type}:{hashlib.sha256(key.encode()).hexdigest()}"

    def unique(self, key: str) -> str:
        """STRING: the id of the job that holds unique key `key` (while it is active)."""
        return f"{self._base}:unique:{self._type}:{hashlib.sha256(key.encode()).hexdigest()}"


def wake_marker(job_type: str, partition: str | None = None) -> str:
    """The id lua/include/priority.lua pushes into a type's `ready` list (of its
    partition, default its first) to wake an idle worker for a job of another
    priority: a UUID of version 0, which no job has."""
    return (partition or partition_of_type(job_type)) + "0000-0000-0000-0000-000000000000"


class Keyspace:
    def __init__(self, prefix: str = "jq") -> None:
        self.prefix = prefix
        # SET of every job type ever enqueued: schedulers and reapers iterate it.
        self.types = f"{prefix}:types"
        # Pub/Sub channel: "a job was scheduled earlier than the type's earliest one".
        self.schedule_channel = f"{prefix}:scheduled"
        # HASH worker id -> JSON {host, pid, types, concurrency, started_at, liveness_ms}:
        # what ListWorkers shows; written by a worker when it starts, removed when it leaves.
        self.workers = f"{prefix}:workers"
        # HASH type -> its partition count (SetQueuePartitions), and type -> the highest
        # count it ever had: what workers, schedulers and reapers cover (partitions.py).
        self.partitions = f"{prefix}:partitions"
        self.partitions_covered = f"{prefix}:partitions_covered"
        self._queues: dict[str | tuple[str, str], QueueKeys] = {}

    def job(self, job_id: str) -> str:
        # One f-string, not job_key_prefix(...) + job_id: a busy worker makes two per job.
        return f"{self.prefix}:{{{partition_of_id(job_id)}}}:job:{job_id}"

    def events(self, partition: str) -> str:
        """STREAM of the partition's state changes (QueueKeys.events of each of its types),
        named from the partition alone: WatchJob knows only a job's id."""
        return f"{self.prefix}:{{{partition}}}:events"

    def job_key_prefix(self, partition: str) -> str:
        """What the key of every job in `partition` starts with (then comes the id)."""
        return f"{self.prefix}:{{{partition}}}:job:"

    def queue(self, job_type: str, partition: str | None = None) -> QueueKeys:
        """The keys of the type's queue in `partition` (a tag of partitions_of_type;
        None: its first, the only one of a type not spread)."""
        cached = job_type if partition is None else (job_type, partition)
        queue = self._queues.get(cached)
        if queue is None:
            if len(self._queues) >= 1024:  # a process sees few types; bound it anyway
                self._queues.clear()
            queue = self._queues[cached] = self._make_queue(
                job_type, partition or partition_of_type(job_type)
            )
        return queue

    def _make_queue(self, job_type: str, partition: str) -> QueueKeys:
        base = f"{self.prefix}:{{{partition}}}"
        return QueueKeys(
            scheduled=f"{base}:scheduled:{job_type}",
            ready=f"{base}:ready:{job_type}",
            popped=f"{base}:popped:{job_type}",
            suspects=f"{base}:suspects:{job_type}",
            leases=f"{base}:leases:{job_type}",
            failed=f"{base}:failed:{job_type}",
            workers=f"{base}:workers:{job_type}",
            defaults=f"{base}:defaults:{job_type}",
            stats=f"{base}:stats:{job_type}",
            live=f"{base}:live:{job_type}",
            completed=f"{base}:completed:{job_type}",
            cancelled=f"{base}:cancelled:{job_type}",
            expired=f"{base}:expired:{job_type}",
            expiring=f"{base}:expiring:{job_type}",
            events=self.events(partition),
            prio=f"{base}:prio:{job_type}",
            _base=base,
            _type=job_type,
        )
