"""The fetcher: claims jobs whenever the worker has free slots.

While the queue has jobs, it makes one round trip per batch of jobs: each round
records the completions that freed the slots, claims the ids the round before
took, and takes the next ones (round.lua, through Completions.round). An empty
queue is waited on with one blocking pop (an idle worker wakes on the push),
and the popped id is claimed at once, alone (claim.lua): the smallest call, for
the latency of an idle worker. Ids taken for the next round go back to the
queue when no slot frees within BATCH_LINGER_S: with long jobs they would wait
here while an idle worker could run them.

Jobs of a priority other than the default wait outside the list the pop blocks
on (lua/include/priority.lua); what wakes an idle worker for them is the type's
marker, pushed into that list. A popped marker is claimed (to drop it) in a
round that takes the ready ids in priority order.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..events import EXPIRED_BY_CLAIM, Call, Event, JobRef
from ..faults import crash_point
from ..model import Job
from ..store.connection import OwnConnection
from ..store.keys import wake_marker
from ..store.outcomes import Outcome, Result
from ..store.transitions import Claim
from ..supervise import raise_if_cancelled
from .completions import BATCH_LINGER_S, Completions
from .context import Context
from .slots import Slots

log = logging.getLogger("jobqueue.worker")

PAUSED_WAIT_S = 1.0  # how long a worker of a paused type waits before it pops again


class Fetcher:
    def __init__(
        self, context: Context, slots: Slots, completions: Completions, block_timeout_s: float
    ) -> None:
        """`block_timeout_s`: the longest single blocking pop (the wait is repeated)."""
        self.context = context
        self.slots = slots
        self.completions = completions
        self.block_timeout_s = block_timeout_s
        # Ids a round took into the popped list, to claim in the next.
        self.taken: list[str] = []
        # The last claim found the type paused (logged once, and once when it is over).
        self.paused = False
        self.marker = wake_marker(context.job_type, context.partition or None)

    async def run(self, connection: OwnConnection) -> None:
        slots = self.slots
        while True:
            raise_if_cancelled()
            await self._wait_for_a_free_slot(connection)
            await slots.wait_for_a_batch(BATCH_LINGER_S)
            free = slots.free
            claim, self.taken = self.taken[:free], self.taken[free:]
            # Enough for the free slots, and the next batch of slots to free.
            take = min(self.context.batch_size, max(0, free - len(claim) + slots.batch - len(self.taken)))
            slots.reserved += len(claim)
            try:
                claims, taken = await self.completions.round(claim=claim, take=take, via=connection)
            finally:
                slots.unreserve(len(claim))  # no await from here to _accept's hold
            self.taken += taken
            if taken:
                crash_point("after_pop")  # taken, as popped: in the popped list, not claimed
            paused = False
            if claims:
                crash_point("after_claim")
                paused = self._accept(claim, claims)
            if claim and len(slots.runs) <= len(claim):
                # An idle worker's jobs: let them start before this loop prepares its
                # next call. A busy worker does not yield here: the extra turn of the
                # event loop costs it more than it gains.
                await asyncio.sleep(0)
            self.completions.report()
            if paused:
                await self._wait_while_paused()
            elif not self.taken and len(taken) < take and slots.free:
                # The queue is empty (the take got less than it asked for).
                await self._pop_and_claim(connection)

    async def _pop_and_claim(self, connection: OwnConnection) -> None:
        c = self.context
        self.completions.hurry = True
        began, start, began_in = time.time(), time.perf_counter(), c.outage.generation
        try:
            job_id = await c.transitions.pop(
                connection, c.job_type, self.block_timeout_s, partition=c.partition or None
            )
        finally:
            self.completions.hurry = False
        if c.outage.down:
            c.outage.back(began_in)
        if job_id is None:
            return
        if job_id == self.marker:  # a job of another priority: the next round takes in order
            self.taken = [job_id]
            return
        popped = time.perf_counter()
        crash_point("after_pop")
        claims = await c.transitions.claim(
            c.job_type,
            [job_id],
            c.worker_id,
            c.lease_ms,
            c.default_max_attempts,
            via=connection,
            partition=c.partition or None,
        )
        replied = time.perf_counter()
        crash_point("after_claim")
        if self._accept([job_id], claims):
            await self._wait_while_paused()
            return
        await asyncio.sleep(0)  # as above: let it start
        # Reported once the job has started: the observers are not on its way.
        c.notify(Event.POPPED, None, Call("pop", c.job_type, began, popped - start, taken=(job_id,)))
        claimed = tuple(claim.id for claim in claims if isinstance(claim, Job))
        call = Call("claim", c.job_type, began + popped - start, replied - popped, claimed=claimed)
        c.notify(Event.ROUND, None, call)

    def _accept(self, job_ids: list[str], claims: list[Claim]) -> bool:
        """Holds the jobs claimed, and starts as many as slots allow; returns whether
        the type is paused (its ids went back to the queue)."""
        held = [claim for claim in claims if isinstance(claim, Job)]
        if held and self.paused:
            self.paused = False
            log.info("worker %s: %r was resumed: claiming its jobs again", *self._whose())
        for job in held:
            self.slots.hold(job)
        self.slots.start_waiting()  # before the observers hear of them: they are not on the jobs' way
        notify = self.context.notify
        claimed = Event.CLAIMED  # looked up once: Enum classes are slow to read
        for job in held:
            notify(claimed, job)
        paused = False
        if len(held) < len(claims):
            for job_id, claim in zip(job_ids, claims, strict=True):
                if isinstance(claim, Result) and claim.outcome is Outcome.PAUSED:
                    paused = True
                elif isinstance(claim, Result) and claim.outcome is Outcome.TOO_LATE:
                    notify(Event.EXPIRED, JobRef(job_id, self.context.job_type), EXPIRED_BY_CLAIM)
                elif not isinstance(claim, Job) and job_id != self.marker:
                    notify(Event.SKIPPED, JobRef(job_id, self.context.job_type), claim)
        return paused

    async def _wait_while_paused(self) -> None:
        if not self.paused:
            self.paused = True
            log.info("worker %s: %r is paused: claiming none of its jobs until it is resumed", *self._whose())
        await asyncio.sleep(PAUSED_WAIT_S)

    def _whose(self) -> tuple[str, str]:
        return self.context.worker_id, self.context.job_type

    async def _wait_for_a_free_slot(self, connection: OwnConnection) -> None:
        while not self.slots.free:
            if not self.taken:
                await self.slots.wait_for_one()
            elif not await self.slots.wait_for_one(BATCH_LINGER_S):
                await self.give_back_taken(connection)

    async def give_back_taken(self, via: OwnConnection | None = None) -> None:
        taken, self.taken = self.taken, []
        if taken:
            c = self.context
            await c.transitions.give_back(c.job_type, taken, via=via, partition=c.partition or None)
