"""The heartbeat: the worker says it is alive and renews the leases it holds.

One script call per beat marks the worker alive (its liveness deadline moves
on) and renews the lease of every job it holds: running, waiting for a slot,
or done with its completion not yet recorded. A lease found lost (the job was
cancelled, or the worker counted as dead and the job went elsewhere) stops its
handler; a job not started yet is dropped.
"""

from __future__ import annotations

from ..events import Event
from ..model import JobStatus
from ..supervise import repeat
from .completions import Completions
from .context import Context
from .slots import Slots


class Heartbeat:
    def __init__(
        self, context: Context, slots: Slots, completions: Completions, *, interval_s: float, liveness_ms: int
    ) -> None:
        self.context = context
        self.slots = slots
        self.completions = completions
        self.interval_s = interval_s
        self.liveness_ms = liveness_ms

    async def run(self) -> None:
        await repeat(self.beat, self.interval_s)

    async def beat(self) -> None:
        c = self.context
        held = self.slots.leases() + self.completions.leases()
        lost = await c.transitions.heartbeat(c.job_type, c.worker_id, held, c.lease_ms, self.liveness_ms)
        for job_id, status in lost:
            run = self.slots.runs.get(job_id)
            if run is None or run.handler_done:
                continue
            run.interrupted = Event.CANCELLED if status is JobStatus.CANCELLED else Event.LEASE_LOST
            run.status = status
            if run.task is None:  # waiting for a slot: it never starts
                self.slots.drop(run)
                c.notify(run.interrupted, run.job, status)
            else:
                run.task.cancel()
