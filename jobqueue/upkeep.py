"""Bounds what idle job types leave in Redis (docs/design.md, "Bounds").

Run by the reapers, for each of their types once per `interval_s`:
- it trims the type's finished indexes to retention (`tidy.lua`): the scripts trim
  them at a type's first finish of a minute only, so a type that stopped finishing
  jobs would keep the ids of jobs long expired;
- a reaper of every type (a server's) forgets a type that held no job (retention
  passed) and no worker, with no enqueue, for `type_idle_s`: it leaves the types
  registry, and its `stats` (counts and totals), `defaults` and `suspects` go.

An enqueuer registers a type before its enqueue script runs, and only once per
TYPE_REFRESH_S: a type forgotten between the two would hold a job unregistered.
So the registry entry goes first and the script checks again (an enqueue since
puts it back), and a forgotten type is watched for TYPE_REFRESH_S more: if it gets
counts again (its `stats` exists), it is registered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from .store import Store
from .store.enqueuer import TYPE_REFRESH_S

log = logging.getLogger("jobqueue.reaper")

INTERVAL_S = 60.0


class Upkeep:
    def __init__(self, store: Store, *, may_forget: bool, interval_s: float = INTERVAL_S) -> None:
        self.store = store
        self.may_forget = may_forget
        self.interval_s = interval_s
        self.idle_s = store.settings.type_idle_s
        self._due: dict[str, float] = {}  # type -> when to tidy it next
        self._empty: dict[str, tuple[float, int]] = {}  # type -> (found empty at, total_enqueued then)
        self._forgotten: dict[str, float] = {}  # type -> until when to watch it

    async def run_once(self, job_types: Iterable[str]) -> list[str]:
        """Tidies the types that are due; returns those it forgot."""
        now, forgotten, job_types = time.monotonic(), [], set(job_types)
        for gone in [t for t in self._due if t not in job_types]:  # forgotten elsewhere, say
            self._due.pop(gone)
            self._empty.pop(gone, None)
        for job_type in job_types:
            if self._due.get(job_type, 0.0) > now:
                continue
            self._due[job_type] = now + self.interval_s
            # A type spread over partitions is tidied in each, and never forgotten: its
            # partition count is an operator's setting (docs/design.md, "Bounds").
            partitions = await self.store.partitions.covered(job_type)
            for partition in partitions[1:]:
                await self.store.transitions.tidy(job_type, partition=partition)
            total = await self.store.transitions.tidy(job_type)
            if total < 0 or not self.may_forget or len(partitions) > 1:
                self._empty.pop(job_type, None)
                continue
            since, seen = self._empty.setdefault(job_type, (now, total))
            if seen != total:
                self._empty[job_type] = (now, total)
            elif now - since >= self.idle_s and await self._forget(job_type, total):
                forgotten.append(job_type)
        await self._watch_forgotten(now)
        return forgotten

    async def _forget(self, job_type: str, total: int) -> bool:
        registry = self.store.keys.types
        del self._empty[job_type], self._due[job_type]
        await self.store.redis.srem(registry, job_type)
        if await self.store.transitions.tidy(job_type, forget_if_total=total) == 1:
            self._forgotten[job_type] = time.monotonic() + TYPE_REFRESH_S
            log.info("forgot job type %r: no job and no worker for %g s", job_type, self.idle_s)
            return True
        await self.store.redis.sadd(registry, job_type)  # it changed meanwhile: registered again
        return False

    async def _watch_forgotten(self, now: float) -> None:
        for job_type, until in list(self._forgotten.items()):
            if until < now:
                del self._forgotten[job_type]
            elif await self.store.redis.exists(self.store.keys.queue(job_type).stats):
                await self.store.redis.sadd(self.store.keys.types, job_type)
                del self._forgotten[job_type]
