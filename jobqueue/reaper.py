"""The reaper: brings back jobs whose worker died or stalled.

Three ways a job can be stranded, each repaired by one atomic script per job:
- its worker stopped heartbeating (its registry entry is past its liveness
  deadline): the worker's held jobs are recovered at once (recover.lua, by worker);
- its lease expired (the backstop, e.g. for a worker missing from the
  registry): it is recovered too (recover.lua, by lease);
- a worker popped its id from the ready list but never claimed it (it died in
  between): it is swept back after `claim_timeout_s` (sweep_popped.lua).
A job taken back from a run that was its last attempt ends FAILED instead.
It also ends the PENDING jobs not started by their expiry (expire.lua), so they
do not wait for a worker that may never come; a claim checks the expiry too.
Every server and worker process runs one; the scripts make that safe. Each pass
also tidies its types (upkeep.py): the bounds of what idle types keep in Redis.
"""

from __future__ import annotations

from collections.abc import Collection

from .events import EXPIRED_BY_REAPER, Event, JobRef, Notify, Swept
from .store import Store
from .store.outcomes import Outcome, Result
from .supervise import repeat, supervise
from .upkeep import Upkeep

BATCH = 100  # expired leases, dead workers or jobs past their expiry handled per read
EXPIRE_BATCHES = 10  # at most this many batches of jobs past their expiry per type and pass
# RECOVERED's detail for a lease that expired (for a dead worker: "worker <id> died").
LEASE_EXPIRED = "its lease expired"


class Reaper:
    def __init__(self, store: Store, job_types: Collection[str] | None, notify: Notify) -> None:
        """`job_types` None: every type ever enqueued. Timings from the store's settings."""
        self.store = store
        self.job_types = frozenset(job_types) if job_types is not None else None
        settings = store.settings
        self.interval_s = settings.reaper_interval_s
        self.claim_timeout_ms = int(settings.claim_timeout_s * 1000)
        self.restart_grace_s = settings.restart_grace_s
        self.notify = notify
        # Trims each type's finished indexes; a reaper of every type also forgets idle types.
        self.upkeep = Upkeep(store, may_forget=job_types is None)

    async def run(self) -> None:
        await supervise("reaper", lambda: repeat(self.reap_once, self.interval_s), self.store.outage)

    async def reap_once(self) -> int:
        """One pass over every type; returns how many jobs went back to ready."""
        inspect, began_in = self.store.inspect, self.store.outage.generation
        job_types = self.job_types if self.job_types is not None else await inspect.job_types()
        # Right after a Redis restart every worker looks dead and every lease
        # expired (no heartbeat got through): wait for live workers to check in.
        # Redis counts uptime in whole seconds from a truncated start time, so it
        # reads 3 as soon as 2.01 s after a start at x.99: `<=` keeps the grace whole.
        grace = self.restart_grace_s
        just_restarted = grace > 0 and await inspect.redis_uptime_s() <= grace
        back = 0
        for job_type in job_types:
            # Every partition the type has or had (a shrink leaves jobs in the others).
            for partition in await self.store.partitions.covered(job_type):
                back += await self._reap(job_type, partition, just_restarted)
        await self.upkeep.run_once(job_types)
        if self.store.outage.down:
            self.store.outage.back(began_in)
        return back

    async def _reap(self, job_type: str, partition: str, just_restarted: bool) -> int:
        back = 0
        if not just_restarted:
            back += await self._recover_from_dead_workers(job_type, partition)
            back += await self._recover_expired(job_type, partition)
        await self._expire_late(job_type, partition)
        swept = await self.store.transitions.sweep_popped(
            job_type, self.claim_timeout_ms, partition=partition
        )
        if swept:
            self.notify(Event.SWEPT, None, Swept(job_type, count=swept))
            back += swept
        return back

    async def _recover_from_dead_workers(self, job_type: str, partition: str) -> int:
        back = 0
        inspect, transitions = self.store.inspect, self.store.transitions
        for worker_id in await inspect.dead_workers(job_type, BATCH, partition=partition):
            for job_id in await inspect.held_by(job_type, worker_id, partition=partition):
                result = await transitions.recover(job_type, job_id, worker_id)
                back += self._note(JobRef(job_id, job_type), result, f"worker {worker_id} died")
            if (await transitions.forget_worker(job_type, worker_id, partition=partition)).ok:
                await self.store.registry.remove(worker_id)
                self.notify(Event.WORKER_LOST, None, Swept(job_type, worker_id=worker_id))
        return back

    async def _recover_expired(self, job_type: str, partition: str) -> int:
        back = 0
        while True:
            expired = await self.store.inspect.expired_leases(job_type, BATCH, partition=partition)
            for job_id in expired:
                result = await self.store.transitions.recover(job_type, job_id)
                back += self._note(JobRef(job_id, job_type), result, LEASE_EXPIRED)
            if len(expired) < BATCH:
                return back

    async def _expire_late(self, job_type: str, partition: str) -> None:
        """Ends the type's PENDING jobs past their expiry as EXPIRED, a bounded number
        per pass (the next pass goes on)."""
        for _ in range(EXPIRE_BATCHES):
            due = await self.store.inspect.past_expiry(job_type, BATCH, partition=partition)
            if due:
                for job_id in await self.store.transitions.expire(job_type, due, partition=partition):
                    self.notify(Event.EXPIRED, JobRef(job_id, job_type), EXPIRED_BY_REAPER)
            if len(due) < BATCH:
                return

    def _note(self, job: JobRef, result: Result, why: str) -> int:
        if result.outcome is Outcome.RECOVERED:
            self.notify(Event.RECOVERED, job, why)
            return 1
        if result.outcome is Outcome.DEAD_LETTERED:
            self.notify(Event.DEAD_LETTERED, job, why)
        return 0
