"""supervise: background loops outlive Redis outages, with the backoff their caller chose."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue.supervise import Backoff, supervise

log = logging.getLogger("test")


class RecordingBackoff(Backoff):
    def __init__(self, base: float, cap: float) -> None:
        super().__init__(base, cap)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        delay = super().next_delay()
        self.delays.append(delay)
        return delay


async def test_a_loop_restarts_after_each_outage_within_its_backoff_cap() -> None:
    """The worker's heartbeat passes a cap of heartbeat_s: with the default cap (5 s) a
    run of outages would stop it for longer than liveness_s, and its jobs would run twice."""
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 8:
            raise RedisConnectionError("Redis is down")

    backoff = RecordingBackoff(base=0.001, cap=0.004)
    await supervise("flaky", flaky, backoff=backoff)
    assert calls == 9
    assert len(backoff.delays) == 8
    assert max(backoff.delays) <= 0.004


def test_the_default_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff()
    ceilings = [min(5.0, 0.1 * 2**n) for n in range(1, 10)]
    for ceiling in ceilings:
        assert 0.1 <= backoff.next_delay() <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.2
