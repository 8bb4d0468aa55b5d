"""Slots: the jobs a worker holds under its leases, and which of them run.

A worker holds up to `concurrency` running jobs, plus up to `prefetch` claimed
ahead that wait for a free slot: each starts the moment one frees, with no round
trip. Every held job is RUNNING in Redis under this worker's lease.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from ..events import Event, Failure
from ..model import Job, JobStatus


@dataclasses.dataclass(eq=False)
class Run:
    job: Job
    task: asyncio.Task[None] | None = None  # None while it waits for a slot
    # Why the worker cancelled the handler: RELEASED (shutdown), CANCELLED or LEASE_LOST.
    interrupted: Event | None = None
    status: JobStatus | None = None  # the job's status when its lease was found lost
    handler_done: bool = False
    failure: Failure | None = None  # how its handler failed, if it did


class Slots:
    def __init__(
        self,
        concurrency: int,
        prefetch: int,
        batch_size: int,
        start: Callable[[Run], Coroutine[Any, Any, None]],
    ) -> None:
        """`start`: runs one job (the task of a started Run)."""
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        # Every job held, running or waiting, by (id, lease token): a handler that
        # ignores its cancellation runs on after its lease was lost, and keeps its
        # slot, while this worker may claim the same job again.
        self.runs: dict[tuple[str, int], Run] = {}
        self.waiting: collections.deque[Run] = collections.deque()  # prefetched, not started
        self.freed = asyncio.Event()
        # Slots a fetcher is claiming jobs for (its round on its way): a worker's fetchers
        # of other partitions (lanes.py) do not count them free meanwhile.
        self.reserved = 0
        # A busy worker claims for this many free slots at once (see wait_for_a_batch).
        self.batch = max(1, min(batch_size, self.capacity // 2))
        self._start = start

    @property
    def free(self) -> int:
        return self.capacity - len(self.runs) - self.reserved

    def unreserve(self, count: int) -> None:
        """Ends a reservation (its jobs are held by now, or were not claimed)."""
        if count:
            self.reserved -= count
            self.freed.set()  # what was not claimed is free again

    def hold(self, job: Job) -> None:
        """Holds a claimed job; it starts when a slot is free (start_waiting)."""
        run = Run(job)
        self.runs[job.id, job.lease_token] = run
        self.waiting.append(run)

    def start_waiting(self) -> None:
        """Starts waiting runs while fewer than `concurrency` run."""
        while self.waiting and len(self.runs) - len(self.waiting) < self.concurrency:
            run = self.waiting.popleft()
            run.task = asyncio.create_task(self._start(run))

    def finish(self, job: Job) -> None:
        """Frees the slot of a run that ended, and starts the next waiting one."""
        del self.runs[job.id, job.lease_token]
        self.start_waiting()
        self.freed.set()

    def drop(self, run: Run) -> None:
        """Lets go of a waiting run that will not start (its lease was lost)."""
        self.waiting.remove(run)
        del self.runs[run.job.id, run.job.lease_token]
        self.freed.set()

    def take_waiting(self) -> list[Run]:
        """Lets go of every waiting run (at shutdown: they go back unstarted)."""
        waiting = list(self.waiting)
        self.waiting.clear()
        for run in waiting:
            del self.runs[run.job.id, run.job.lease_token]
        return waiting

    def leases(self) -> list[tuple[str, int]]:
        """(id, lease token) of the runs whose handler has not finished."""
        return [(r.job.id, r.job.lease_token) for r in self.runs.values() if not r.handler_done]

    def tasks(self) -> list[asyncio.Task[None]]:
        return [r.task for r in self.runs.values() if r.task]

    async def wait_for_one(self, linger_s: float | None = None) -> bool:
        """Waits while every slot is taken; with `linger_s`, at most that long.
        Returns whether a slot is free."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger_s):
                while not self.free:
                    self.freed.clear()
                    await self.freed.wait()
        return self.free > 0

    async def wait_for_a_batch(self, linger_s: float) -> None:
        """Waits up to `linger_s` for `batch` slots to be free: a round trip per
        freed slot would cost a busy worker more than its jobs, and a slot left free
        by long-running neighbours is filled soon all the same."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger_s):
                while self.free < self.batch:
                    self.freed.clear()
                    await self.freed.wait()
