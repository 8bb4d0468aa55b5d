"""The heartbeat: the worker says it is alive and renews the leases it holds.

One script call per beat marks the worker alive (its liveness deadline moves
on) and renews the lease of every job it holds: running, waiting for a slot,
or done with its completion not yet recorded. A lease found lost (the job was
cancelled, or the worker counted as dead and the job went elsewhere) stops its
handler; a job not started yet is dropped.
"""

from __future__ import annotations

import asyncio

from ..events import Event, Observers
from ..model import JobStatus
from ..store.transitions import Transitions
from ..supervise import raise_if_cancelled
from .completions import Completions
from .slots import Slots


class Heartbeat:
    def __init__(
        self,
        transitions: Transitions,
        slots: Slots,
        completions: Completions,
        job_type: str,
        worker_id: str,
        *,
        interval_s: float,
        lease_ms: int,
        liveness_ms: int,
        notify: Observers,
    ) -> None:
        self.transitions = transitions
        self.slots = slots
        self.completions = completions
        self.job_type = job_type
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.lease_ms = lease_ms
        self.liveness_ms = liveness_ms
        self.notify = notify

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            await self.beat()
            await asyncio.sleep(self.interval_s)

    async def beat(self) -> None:
        held = self.slots.leases() + self.completions.leases()
        lost = await self.transitions.heartbeat(
            self.job_type, self.worker_id, held, self.lease_ms, self.liveness_ms
        )
        for job_id, status in lost:
            run = self.slots.runs.get(job_id)
            if run is None or run.handler_done:
                continue
            run.interrupted = Event.CANCELLED if status is JobStatus.CANCELLED else Event.LEASE_LOST
            run.status = status
            if run.task is None:  # waiting for a slot: it never starts
                self.slots.drop(run)
                self.notify(run.interrupted, run.job, status)
            else:
                run.task.cancel()
