"""The heartbeat: the worker says it is alive and renews the leases it holds.

One script call per beat marks the worker alive (its liveness deadline moves
on) and renews the lease of every job it holds: running, waiting for a slot,
or done with its completion not yet recorded. A lease found lost (the job was
cancelled, or the worker counted as dead and the job went elsewhere) stops its
handler; a job not started yet is dropped.

A worker that was paused (SIGSTOP, a stalled VM, a long GC) may have counted as
dead meanwhile, and its jobs run elsewhere: before it starts a job it claimed, it
`confirm`s its leases when its last heartbeat is old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..events import Event
from ..model import JobStatus
from ..supervise import REDIS_DOWN, Backoff, repeat
from .completions import Completions
from .context import Context
from .slots import Slots


class Heartbeat:
    def __init__(
        self,
        context: Context,
        slots: Slots,
        completions: Completions,
        *,
        interval_s: float,
        liveness_ms: int,
        on_join: Callable[[], Awaitable[None]],
    ) -> None:
        self.context = context
        self.slots = slots
        self.completions = completions
        self.interval_s = interval_s
        self.liveness_ms = liveness_ms
        # The leases held when the last successful beat began are held until about
        # liveness later; from half of it (time.monotonic()) this worker may have been
        # paused long enough to count as dead (normally a beat is interval_s old).
        self._stale_after_s = liveness_ms / 2000
        self.stale_at = time.monotonic() + self._stale_after_s
        self._confirming: asyncio.Task[None] | None = None
        # Called after a beat that found the worker unregistered (its first, or after it
        # was forgotten), until it succeeds: writes what ListWorkers shows of it.
        self.on_join = on_join
        self._joined = False

    async def run(self) -> None:
        await repeat(self.beat, self.interval_s)

    async def confirm(self) -> None:
        """Beats now, through Redis outages, so that the leases lost while this worker
        was paused are known (their runs cancelled or dropped). Concurrent callers
        share one beat."""
        if self._confirming is None or self._confirming.done():
            self._confirming = asyncio.create_task(self._beat_until_it_succeeds())
        await asyncio.shield(self._confirming)

    async def _beat_until_it_succeeds(self) -> None:
        backoff = Backoff(base=min(0.1, self.interval_s), cap=self.interval_s)
        while True:
            try:
                await self.beat()
            except REDIS_DOWN as exc:
                self.context.outage.failed(exc)
                await asyncio.sleep(backoff.next_delay())
            else:
                return

    async def beat(self) -> None:
        c = self.context
        began, began_in = time.monotonic(), c.outage.generation
        held = self.slots.leases() + self.completions.leases()
        if c.partition:  # one beat per partition: each renews the leases of its own jobs
            held = [lease for lease in held if lease[0].startswith(c.partition)]
        beat = await c.transitions.heartbeat(
            c.job_type, c.worker_id, held, c.lease_ms, self.liveness_ms, partition=c.partition or None
        )
        self.stale_at = began + self._stale_after_s
        if c.outage.down:
            c.outage.back(began_in)
        if beat.joined:
            self._joined = False
        for job_id, token, status in beat.lost:
            run = self.slots.runs.get((job_id, token))
            if run is None or run.handler_done or run.interrupted is not None:
                continue
            run.interrupted = Event.CANCELLED if status is JobStatus.CANCELLED else Event.LEASE_LOST
            run.status = status
            if run.task is None:  # waiting for a slot: it never starts
                self.slots.drop(run)
                c.notify(run.interrupted, run.job, status)
            else:
                run.task.cancel()
        if not self._joined:
            await self.on_join()
            self._joined = True
