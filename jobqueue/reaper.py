"""The reaper: brings back jobs whose worker died or stalled.

Two ways a job can be stranded, two repairs, each one atomic script per job:
- a RUNNING job whose lease expired (its worker stopped heartbeating) goes back
  to the head of the ready list (recover.lua);
- an id a worker popped from the ready list but never claimed (it died in
  between) goes back after `claim_timeout_s` (sweep_popped.lua).
Every server and worker process runs one; the scripts make that safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

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
        batch: int = 100,
    ) -> None:
        self.store = store
        self.job_types = frozenset(job_types) if job_types is not None else None
        self.interval_s = interval_s
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.batch = batch
        self.requeued = 0  # jobs brought back by this reaper, for tests and metrics

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
        for job_type in job_types:
            await self._recover_expired(job_type)
            swept = await self.store.sweep_popped(job_type, self.claim_timeout_ms)
            if swept:
                log.warning("re-queued %d %s job(s) popped but never claimed", swept, job_type)
                self.requeued += swept
        return self.requeued - before

    async def _recover_expired(self, job_type: str) -> None:
        while True:
            expired = await self.store.expired_leases(job_type, self.batch)
            for job_id in expired:
                if await self.store.recover(job_type, job_id) == "requeued":
                    log.warning("job %s (%s): lease expired, re-queued", job_id, job_type)
                    self.requeued += 1
            if len(expired) < self.batch:
                return
