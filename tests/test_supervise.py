"""supervise: background loops outlive Redis outages, with the backoff their caller chose."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import supervise as supervise_module
from jobqueue.outage import Outage
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
    await supervise("flaky", flaky, Outage("redis://flaky"), backoff=backoff)
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


def test_a_young_outage_is_retried_within_a_second_and_an_old_one_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a short outage every loop is back at work within about a second; only an
    outage older than `young_s` backs off further, up to `cap`."""
    now = 1000.0
    monkeypatch.setattr(supervise_module.time, "monotonic", lambda: now)
    monkeypatch.setattr(supervise_module.random, "uniform", lambda low, high: high)  # the longest delay
    backoff = Backoff()
    assert [backoff.next_delay() for _ in range(6)] == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    now += 29.0
    assert backoff.next_delay() == 1.0
    now += 2.0  # the outage is 31 s old
    assert [backoff.next_delay() for _ in range(2)] == [5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 0.2  # a new outage is young again
