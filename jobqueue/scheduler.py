"""The scheduler: moves jobs from the schedule to the ready list when they are due.

It does not tick. It sleeps until the earliest scheduled job of any type is due,
and wakes early when an enqueue publishes that a type got a new earliest job.
Promotion is one atomic script, so any number of schedulers (in every server
and worker process) can run at once and each job is promoted exactly once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Collection
from typing import Any

from .events import Call, Event, Notify
from .store import Store
from .supervise import raise_if_cancelled, supervise


class Scheduler:
    def __init__(
        self,
        store: Store,
        job_types: Collection[str] | None,
        notify: Notify,
        *,
        refresh_s: float = 10.0,
        batch: int = 1000,
    ) -> None:
        """`job_types` None means every type ever enqueued (re-read every `refresh_s`).

        The refresh is a safety net only (a wake-up message lost while the Pub/Sub
        connection was down); wake-ups normally come from the messages.
        """
        self.store = store
        self.job_types = frozenset(job_types) if job_types is not None else None
        self.refresh_s = refresh_s
        self.batch = batch
        self.notify = notify

    async def run(self) -> None:
        await supervise("scheduler", self._run, self.store.outage)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        woken: set[str] = set()
        wake = asyncio.Event()
        # A cluster client learns the slot map on its first command; its Pub/Sub needs it
        # first (the node it subscribes on). On a cluster, PUBLISH reaches every node.
        await self.store.redis.initialize()
        pubsub = self.store.redis.pubsub()
        # Subscribe before the first full pass, so no wake-up falls in between.
        await pubsub.subscribe(self.store.keys.schedule_channel)
        listener = asyncio.create_task(self._listen(pubsub, woken, wake))
        try:
            # (job type, partition) -> loop time of its next promotion; a type spread over
            # partitions has a schedule in each (its wake-up names the type: all of them).
            due: dict[tuple[str, str], float] = {}
            covered = self.store.partitions.covered
            refresh_at = 0.0
            while True:
                raise_if_cancelled()
                wake.clear()
                now = loop.time()
                if now >= refresh_at:
                    for job_type in await self._types():
                        for partition in await covered(job_type):
                            due[job_type, partition] = now
                    refresh_at = now + self.refresh_s
                for job_type in woken:
                    for partition in await covered(job_type):
                        due[job_type, partition] = now
                woken.clear()
                for (job_type, partition), when in list(due.items()):
                    if when <= now:
                        due[job_type, partition] = await self._promote(job_type, partition)
                if woken:
                    continue
                deadline = min(min(due.values(), default=math.inf), refresh_at)
                await _wait(wake, listener, deadline - loop.time())
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await pubsub.aclose()

    async def _types(self) -> Collection[str]:
        return self.job_types if self.job_types is not None else await self.store.inspect.job_types()

    async def _promote(self, job_type: str, partition: str) -> float:
        """Promotes what is due; returns the loop time to look at this type (in this
        partition) again."""
        began, start, began_in = time.time(), time.perf_counter(), self.store.outage.generation
        moved, delay_ms = await self.store.transitions.promote(job_type, self.batch, partition=partition)
        if self.store.outage.down:
            self.store.outage.back(began_in)
        self.notify(
            Event.PROMOTED, None, Call("promote", job_type, began, time.perf_counter() - start, moved=moved)
        )
        loop_now = asyncio.get_running_loop().time()
        if moved == self.batch:
            return loop_now  # more may be due right now
        return math.inf if delay_ms is None else loop_now + delay_ms / 1000

    async def _listen(self, pubsub: Any, woken: set[str], wake: asyncio.Event) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            job_type = message["data"].decode()
            if self.job_types is None or job_type in self.job_types:
                woken.add(job_type)
                wake.set()


async def _wait(wake: asyncio.Event, listener: asyncio.Task[None], seconds: float) -> None:
    """Sleeps until `wake` is set or `seconds` pass; raises if the listener died."""
    raise_if_cancelled()  # before a long sleep, not only at the top of the loop
    if listener.done():
        listener.result()
        raise ConnectionError("scheduler: Pub/Sub listener stopped")
    if seconds <= 0:
        return
    waiter = asyncio.create_task(wake.wait())
    try:
        await asyncio.wait({waiter, listener}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if listener.done():
        listener.result()
        raise ConnectionError("scheduler: Pub/Sub listener stopped")
