"""Completions: the jobs whose handler returned and whose completion is not yet
recorded, and the rounds that record them.

A handler that returns frees its slot at once; its completion waits here. A
busy fetcher sends what is buffered with its next round (round.lua: one round
trip records a batch, claims the next and takes the one after). What it leaves
the completer sends after BATCH_LINGER_S, or at once while the fetcher waits on
an empty queue or has stopped (`hurry`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..events import Call, Event
from ..model import Job, JobStatus
from ..store.outcomes import Outcome, Result
from ..store.transitions import Claim
from ..supervise import raise_if_cancelled
from .context import Context

if TYPE_CHECKING:
    from ..store.connection import OwnConnection

# Longest a worker holds back a round trip to make a batch: a claim for more
# than one free slot, a completion for the fetcher to send with its next round.
BATCH_LINGER_S = 0.005


class Completions:
    def __init__(self, context: Context) -> None:
        self.context = context
        # Handler done, completion not yet recorded; by (id, lease token): a stale run
        # of a job (its handler outlived its lease) and the job's current run may both
        # be here, and each must be recorded (the stale one is refused) on its own.
        self.pending: dict[tuple[str, int], Job] = {}
        self.hurry = False  # the fetcher is idle or gone: the completer sends at once
        self._sending: set[tuple[str, int]] = set()  # of those, the ones on their way to Redis
        self._added = asyncio.Event()
        self._all_recorded = asyncio.Event()
        self._unreported: list[tuple[list[Job], list[Result], Call]] = []

    def add(self, job: Job) -> None:
        self.pending[job.id, job.lease_token] = job
        self._all_recorded.clear()
        self._added.set()

    def leases(self) -> list[tuple[str, int]]:
        """(id, lease token) of the jobs waiting here: their leases must be kept."""
        return [(job.id, job.lease_token) for job in self.pending.values()]

    async def round(
        self, *, claim: Sequence[str] = (), take: int = 0, via: OwnConnection | None = None
    ) -> tuple[list[Claim], list[str]]:
        """One round trip: records up to `batch_size` completions not already on their
        way, claims `claim` and takes up to `take` ready ids; returns (claims, ids
        taken). `via`: the fetcher's connection (the completer uses the pool)."""
        c = self.context
        batch = [job for key, job in self.pending.items() if key not in self._sending]
        if len(batch) > c.batch_size:
            batch = batch[: c.batch_size]
            self._added.set()
        if not batch and not take and not claim:
            return [], []
        keys = [(job.id, job.lease_token) for job in batch]
        self._sending.update(keys)
        began, start, began_in = time.time(), time.perf_counter(), c.outage.generation
        try:
            records, claims, taken = await c.transitions.round(
                c.job_type,
                c.worker_id,
                batch,
                claim=claim,
                take=take,
                lease_ms=c.lease_ms,
                default_max_attempts=c.default_max_attempts,
                via=via,
                partition=c.partition or None,
            )
        except BaseException:
            if batch:
                self._added.set()  # not recorded (the fetcher stopped, or Redis is down): retry here
            raise
        finally:
            self._sending.difference_update(keys)
        seconds = time.perf_counter() - start
        if c.outage.down:
            c.outage.back(began_in)
        for key in keys:
            del self.pending[key]
        if not self.pending:
            self._all_recorded.set()
        # Reported by `report`, once the caller has started the claimed jobs: the
        # observers are not on their way.
        call = Call("round", c.job_type, began, seconds, len(batch), _ids(claims), tuple(taken))
        self._unreported.append((batch, records, call))
        return claims, taken

    def report(self) -> None:
        """Tells the observers what the rounds made since the last report did."""
        notify = self.context.notify
        ok, completed = Outcome.OK, Event.COMPLETED  # looked up once: Enum classes are slow to read
        for batch, records, call in self._unreported:
            for job, record in zip(batch, records, strict=True):
                if record.outcome is ok:
                    notify(completed, job)
                elif record.status is JobStatus.CANCELLED:
                    notify(Event.CANCELLED, job, record)
                else:
                    notify(Event.STALE_RESULT, job, record)
            notify(Event.ROUND, None, call)
        self._unreported.clear()

    async def run(self) -> None:
        """The completer: records the completions the fetcher does not take along."""
        while True:
            raise_if_cancelled()
            await self._added.wait()
            self._added.clear()
            if not self.hurry:
                await asyncio.sleep(BATCH_LINGER_S)
            await self.round()
            self.report()

    async def drain(self, completer: asyncio.Task[None], timeout_s: float) -> int:
        """Lets the completer record what is buffered (within `timeout_s`), then stops
        it; returns how many completions were left unrecorded."""
        self.hurry = True
        if self.pending:
            recorded = asyncio.create_task(self._all_recorded.wait())
            await asyncio.wait({recorded, completer}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            recorded.cancel()
        completer.cancel()
        await asyncio.gather(completer, return_exceptions=True)
        self.report()  # what a stopped fetcher or completer made and did not report
        return len(self.pending)


def _ids(claims: list[Claim]) -> tuple[str, ...]:
    return tuple(claim.id for claim in claims if isinstance(claim, Job))
