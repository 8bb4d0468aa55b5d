"""Keeps a background loop alive through Redis outages and bugs.

The scheduler, the reaper and the worker's loops must never die quietly: a
process whose reaper stopped would look healthy while jobs pile up. Each loop
restarts after any error, with capped exponential backoff and jitter. A Redis
outage is told once per process (outage.py), not by each loop at each retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from .outage import Outage

log = logging.getLogger("jobqueue.supervise")

# A Redis Cluster in a failover or a slot migration answers for a while with errors
# that say so: CLUSTERDOWN (ClusterDownError, MasterDownError: ClusterErrors, as is
# redis-py's "TTL exhausted" after its own redirects), TRYAGAIN (a multi-key command
# on a migrating slot), a slot no node serves (SlotNotCoveredError), or redirects
# that keep coming (MOVED, ASK: an AskError, past an own connection's MAX_REDIRECTS).
# They end when the cluster settles: an outage, not a bug.
CLUSTER_UNSETTLED = (ClusterError, TryAgainError, SlotNotCoveredError, AskError)


class RedisBusy(ResponseError):
    """BUSY: a Redis running a script for longer than its busy-reply-threshold (a
    script of someone else's, or one of ours over far more data than it was written
    for) answers every other command so until the script ends or is killed. The
    node is unavailable for that while, as if it were down (store/client.py's
    connections raise this for a BUSY reply; redis-py has no class of its own for
    it: a plain ResponseError, which the loops would log as a bug)."""


# ReadOnlyError: a master demoted to a replica (a failover under way) refuses writes
# until its clients find the new one (a sentinel URL's connection does so itself).
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ConnectionError,
    TimeoutError,
    RedisBusy,
    *CLUSTER_UNSETTLED,
)


class Backoff:
    """Capped exponential delays with full jitter: 0.1 s, 0.2 s, ... up to `cap`.

    While an outage is young (its first `young_s`), no delay exceeds `young_cap`:
    most outages are short (a restart, a failover), and a loop that backed off for
    long would leave its work undone well after Redis is back. A long outage is
    retried less and less often, up to `cap`.
    """

    def __init__(
        self, base: float = 0.1, cap: float = 5.0, *, young_cap: float = 1.0, young_s: float = 30.0
    ) -> None:
        self.base, self.cap, self.failures = base, cap, 0
        self.young_cap, self.young_s = min(young_cap, cap), young_s
        self._since = 0.0  # when the first of the current run of failures happened

    def next_delay(self) -> float:
        now = time.monotonic()
        if self.failures == 0:
            self._since = now
        self.failures += 1
        cap = self.young_cap if now - self._since < self.young_s else self.cap
        return random.uniform(self.base, min(cap, self.base * 2**self.failures))

    def reset(self) -> None:
        self.failures = 0


class QuickDeaths:
    """Counts the deaths in a row of a child process that its keeper restarts, each
    within `quick_s` of its start (a death after a longer run counts as the first):
    a child that dies that soon again and again dies of something a restart does not
    cure (a bad file, a port taken...), and after `limit` of them its keeper gives up
    rather than restart it forever."""

    def __init__(self, quick_s: float = 30.0, limit: int = 5) -> None:
        self.quick_s, self.limit, self.count = quick_s, limit, 0

    def died(self, ran_s: float) -> bool:
        """Counts a death after `ran_s` of life; whether to give up."""
        self.count = self.count + 1 if ran_s < self.quick_s else 1
        return self.count >= self.limit


def raise_if_cancelled() -> None:
    """Re-raises a cancellation of the current task that a library swallowed.

    On Python 3.11, asyncio.wait_for (which redis-py uses for every socket write)
    can return normally although the task was cancelled meanwhile, and the
    cancellation is lost. A loop that relied on it would never stop; every
    background loop calls this once per round.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def repeat(step: Callable[[], Awaitable[object]], interval_s: float) -> None:
    """Runs `step` every `interval_s` (after each run ends), until cancelled."""
    while True:
        raise_if_cancelled()
        await step()
        await asyncio.sleep(interval_s)


async def supervise(
    name: str, loop: Callable[[], Awaitable[None]], outage: Outage, *, backoff: Backoff | None = None
) -> None:
    """Runs `loop` until it returns or is cancelled, restarting it after every error.

    Redis being unavailable is reported to `outage` (the loop reports its successes
    itself); any other error is a bug, logged with its traceback. The backoff
    (default: 0.1 s doubling up to 1 s while the outage is young, then up to 5 s)
    resets when a restarted loop has run for a while without failing.
    """
    backoff = backoff or Backoff()
    clock = asyncio.get_running_loop().time
    while True:
        started = clock()
        try:
            await loop()
        except REDIS_DOWN as exc:
            raise_if_cancelled()
            delay = backoff.next_delay()
            outage.failed(exc)
            log.debug("%s: Redis unavailable (%s); retrying in %.2f s", name, exc, delay)
        except Exception:
            raise_if_cancelled()
            delay = backoff.next_delay()
            log.exception("%s failed; restarting in %.2f s", name, delay)
        else:
            return
        if clock() - started > 30:
            backoff.reset()
        await asyncio.sleep(delay)
