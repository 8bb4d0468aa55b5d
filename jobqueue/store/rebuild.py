"""Rebuilding a type's counters and indexes from its stored jobs (`jobqueue rebuild`).

The transition scripts keep `stats` (pending, running) and the `live` and finished
indexes beside every change of a job; a store written before they existed, or
damaged by a bug or by hand, disagrees with its jobs. This is a maintenance tool,
not a transition: it may SCAN (docs/design.md, "Rebuilding the counts and indexes").

Per type, three passes, each in batches of `count` ids:
1. the partition's job keys (SCAN MATCH, on the node that owns the partition's slot
   on a cluster): rebuild_jobs.lua puts each job of the type in the index its status
   names, and in no other, reading the job and fixing it in one atomic call;
2. each index (ZSCAN): an id whose job is gone or is of another type leaves it;
3. rebuild_counts.lua sets `pending` and `running` from `live` and `leases`, in one call.

Every call is atomic and idempotent, so the rebuild runs beside live traffic and may
be run again (after an interruption, say): a job a transition changes after its
repair stays right, since the transitions keep what they find right; the counters
are set last, from the repaired indexes at one instant. Totals and minute buckets are
history and are not rebuilt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster

from ..model import check_job_type, partition_of_type
from . import scripts

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace

INDEXES = ("live", "completed", "failed", "cancelled", "expired")  # rebuild_jobs.lua's KEYS order
MAX_COUNT = 1000


@dataclasses.dataclass(slots=True)
class TypeRebuild:
    """What a rebuild found of one type (with `dry_run`: what it would change)."""

    job_type: str
    jobs_seen: int = 0  # job keys of the partition read (of every type that shares it)
    added: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(INDEXES, 0))
    removed: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(INDEXES, 0))
    rescored: int = 0
    pending_seen: int = 0  # PENDING jobs of the type the job keys' pass met
    running_seen: int = 0
    stored: tuple[int, int] = (0, 0)  # pending, running in `stats` before
    counted: tuple[int, int] = (0, 0)  # pending, running set (dry run: the jobs seen)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.job_type,
            "jobs_seen": self.jobs_seen,
            "added": self.added,
            "removed": self.removed,
            "rescored": self.rescored,
            "pending": {"stored": self.stored[0], "counted": self.counted[0]},
            "running": {"stored": self.stored[1], "counted": self.counted[1]},
        }


# Called with (type, what the pass is at, ids read so far in it): the progress output.
Progress = Callable[[str, str, int], None]


class Rebuilder:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        loaded = scripts.load(redis, "rebuild_jobs", "rebuild_counts")
        self._jobs, self._counts = loaded["rebuild_jobs"], loaded["rebuild_counts"]

    async def job_types(self) -> list[str]:
        """The types the rebuild covers by default: the types registry."""
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    async def rebuild(
        self, job_type: str, *, count: int = 500, dry_run: bool = False, progress: Progress | None = None
    ) -> TypeRebuild:
        """Repairs (with `dry_run`: counts what it would repair in) one type's indexes,
        then its counters; `count`: ids per SCAN step and per script call."""
        job_type = check_job_type(job_type)
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be 1 to {MAX_COUNT}, not {count}")
        queue = self.keys.queue(job_type)
        prefix = self.keys.job_key_prefix(partition_of_type(job_type))
        report = TypeRebuild(job_type)
        seen = 0
        async for keys in self._batches(self._job_keys(prefix, count), count):
            ids = [key[len(prefix) :] for key in keys]
            await self._repair(ids, report, dry_run=dry_run, orphans=False)
            seen += len(ids)
            if progress:
                progress(job_type, "jobs", seen)
        report.jobs_seen = seen
        for index in INDEXES:
            seen = 0
            async for ids in self._batches(self._members(getattr(queue, index), count), count):
                await self._repair(ids, report, dry_run=dry_run, orphans=True)
                seen += len(ids)
                if progress:
                    progress(job_type, index, seen)
        stored_pending, stored_running, pending, running = await self._counts.run(
            self._counts.keys(queue), [job_type, prefix, int(dry_run)]
        )
        report.stored = (stored_pending, stored_running)
        report.counted = (report.pending_seen, report.running_seen) if dry_run else (pending, running)
        if report.jobs_seen and not dry_run:
            await self.redis.sadd(self.keys.types, job_type)  # schedulers and reapers see it
        return report

    async def _repair(self, ids: Sequence[str], report: TypeRebuild, *, dry_run: bool, orphans: bool) -> None:
        """One call of rebuild_jobs.lua on a batch of ids, its counts added to `report`."""
        job_type = report.job_type
        prefix = self.keys.job_key_prefix(partition_of_type(job_type))
        found = await self._jobs.run(
            self._jobs.keys(self.keys.queue(job_type)), [job_type, prefix, int(dry_run), int(orphans), *ids]
        )
        for i, index in enumerate(INDEXES):
            report.added[index] += found[i]
            report.removed[index] += found[5 + i]
        report.rescored += found[10]
        report.pending_seen += found[11]
        report.running_seen += found[12]

    async def _job_keys(self, prefix: str, count: int) -> AsyncIterator[str]:
        """The partition's job keys (SCAN MATCH; on a cluster, on its slot's master only)."""
        options: dict[str, Any] = {"match": prefix + "*", "count": count}
        if isinstance(self.redis, RedisCluster):
            await self.redis.initialize()
            slot = self.redis.keyslot(prefix)
            options["target_nodes"] = self.redis.nodes_manager.get_node_from_slot(slot)
        async for key in self.redis.scan_iter(**options):
            yield key.decode()

    async def _members(self, index: str, count: int) -> AsyncIterator[str]:
        async for member, _ in self.redis.zscan_iter(index, count=count):
            yield member.decode()

    @staticmethod
    async def _batches(items: AsyncIterator[str], count: int) -> AsyncIterator[list[str]]:
        batch: list[str] = []
        async for item in items:
            batch.append(item)
            if len(batch) == count:
                yield batch
                batch = []
        if batch:
            yield batch
