"""Lanes: a worker's parts for each partition of its type (docs/design.md, "Partitions
of a type").

A script's keys are one partition's, so a worker of a type spread over N partitions
runs, per partition, a fetcher on a connection of its own (an idle one blocks on
that partition's `ready` list: a job arriving in any partition wakes the worker at
once, with one BLMOVE, as with one partition), a completion buffer (a round records
its own partition's jobs) and a heartbeat (its liveness and leases in that
partition). The lanes share the worker's slots. A type of one partition has one lane:
the worker of before. Lanes are added when the type gets more partitions, never
removed: a shrink leaves jobs in the partitions it stops enqueueing to.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from ..outage import Outage
from ..store.connection import OwnConnection
from ..supervise import Backoff, supervise
from .completions import Completions
from .context import Context
from .fetcher import Fetcher
from .heartbeat import Heartbeat
from .slots import Slots


@dataclasses.dataclass(eq=False)
class Lane:
    partition: str
    completions: Completions
    fetcher: Fetcher
    heartbeat: Heartbeat
    connection: OwnConnection
    fetching: asyncio.Task[None]
    completer: asyncio.Task[None]
    beating: asyncio.Task[None]


@dataclasses.dataclass(eq=False)
class LaneMaker:
    """What every lane of a worker is made of."""

    context: Context  # the worker's, without a partition
    slots: Slots
    block_timeout_s: float
    heartbeat_s: float
    liveness_ms: int
    on_join: Callable[[], Awaitable[None]]
    connect: Callable[[], OwnConnection]
    outage: Outage

    def start(self, partition: str) -> Lane:
        context = dataclasses.replace(self.context, partition=partition)
        completions = Completions(context)
        fetcher = Fetcher(context, self.slots, completions, self.block_timeout_s)
        heartbeat = Heartbeat(
            context,
            self.slots,
            completions,
            interval_s=self.heartbeat_s,
            liveness_ms=self.liveness_ms,
            on_join=self.on_join,
        )
        # The fetcher's round trips (pops included) go one after another on a connection of its own.
        connection = self.connect()
        # A heartbeat that waits out a long backoff after a Redis outage would let the
        # worker count as dead (liveness_s) and its running jobs run twice: it retries
        # at least once per heartbeat_s.
        retry_heartbeat = Backoff(base=min(0.1, self.heartbeat_s), cap=self.heartbeat_s)
        outage = self.outage
        return Lane(
            partition,
            completions,
            fetcher,
            heartbeat,
            connection,
            fetching=asyncio.create_task(supervise("fetcher", lambda: fetcher.run(connection), outage)),
            completer=asyncio.create_task(supervise("completer", completions.run, outage)),
            beating=asyncio.create_task(
                supervise("heartbeat", heartbeat.run, outage, backoff=retry_heartbeat)
            ),
        )
