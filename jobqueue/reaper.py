"""The reaper: brings back jobs whose worker died or stalled.

Three ways a job can be stranded, each repaired by one atomic script per job:
- its worker stopped heartbeating (its registry entry is past its liveness
  deadline): the worker's held jobs go back at once (recover.lua, by worker);
- its lease expired (the backstop, e.g. for a worker missing from the
  registry): it goes back too (recover.lua, by lease);
- a worker popped its id from the ready list but never claimed it (it died in
  between): it goes back after `claim_timeout_s` (sweep_popped.lua).
A job taken back from a run that was its last attempt ends FAILED instead.
Every server and worker process runs one; the scripts make that safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from .config import Settings
from .store import JobStore
from .supervise import raise_if_cancelled, supervise

log = logging.getLogger("jobqueue.reaper")


class Reaper:
    def __init__(
        self,
        store: JobStore,
        job_types: Collection[str] | None = None,
        *,
        interval_s: float = 1.0,
        claim_timeout_s: float = 5.0,
        restart_grace_s: float = 0.0,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.job_types = frozenset(job_types) if job_types is not None else None
        self.interval_s = interval_s
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.restart_grace_s = restart_grace_s
        self.batch = batch
        self.requeued = 0  # jobs brought back by this reaper, for tests and metrics
        self.failed = 0  # jobs taken back from their last attempt, so FAILED

    @classmethod
    def from_settings(
        cls, store: JobStore, settings: Settings, job_types: Collection[str] | None = None
    ) -> Reaper:
        return cls(
            store,
            job_types,
            interval_s=settings.reaper_interval_s,
            claim_timeout_s=settings.claim_timeout_s,
            restart_grace_s=settings.restart_grace_s,
        )

    async def run(self) -> None:
        await supervise("reaper", self._run, log)

    async def _run(self) -> None:
        while True:
            raise_if_cancelled()
            await self.reap_once()
            await asyncio.sleep(self.interval_s)

    async def reap_once(self) -> int:
        """One pass over every type; returns how many jobs it re-queued."""
        job_types = self.job_types if self.job_types is not None else await self.store.job_types()
        before = self.requeued
        # Right after a Redis restart every worker looks dead and every lease
        # expired (no heartbeat got through): wait for live workers to check in.
        # Redis counts uptime in whole seconds from a truncated start time, so it
        # reads 3 as soon as 2.01 s after a start at x.99: `<=` keeps the grace whole.
        grace = self.restart_grace_s
        just_restarted = grace > 0 and await self.store.redis_uptime_s() <= grace
        for job_type in job_types:
            if not just_restarted:
                await self._recover_from_dead_workers(job_type)
                await self._recover_expired(job_type)
            swept = await self.store.sweep_popped(job_type, self.claim_timeout_ms)
            if swept:
                log.warning("re-queued %d %s job(s) popped but never claimed", swept, job_type)
                self.requeued += swept
        return self.requeued - before

    async def _recover_from_dead_workers(self, job_type: str) -> None:
        for worker_id in await self.store.dead_workers(job_type, self.batch):
            for job_id in await self.store.held_by(job_type, worker_id):
                self._note(
                    job_id, job_type, await self.store.recover(job_type, job_id, worker_id), "worker died"
                )
            if await self.store.forget_worker(job_type, worker_id):
                log.warning(
                    "worker %s (%s) stopped heartbeating; its jobs were taken back", worker_id, job_type
                )

    async def _recover_expired(self, job_type: str) -> None:
        while True:
            expired = await self.store.expired_leases(job_type, self.batch)
            for job_id in expired:
                self._note(job_id, job_type, await self.store.recover(job_type, job_id), "lease expired")
            if len(expired) < self.batch:
                return

    def _note(self, job_id: str, job_type: str, outcome: str, why: str) -> None:
        if outcome == "requeued":
            self.requeued += 1
            log.warning("job %s (%s): %s, re-queued", job_id, job_type, why)
        elif outcome == "failed":
            self.failed += 1
            log.warning("job %s (%s): %s during its last attempt: FAILED", job_id, job_type, why)
