"""supervise: background loops outlive Redis outages, with the backoff their caller chose."""

from __future__ import annotations

import logging

import pytest
from connectrpc.code import Code
from redis._parsers import _RESP2Parser
from redis.exceptions import ClusterError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import supervise as supervise_module
from jobqueue.outage import Outage
from jobqueue.server.errors import to_connect_error
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


# What a Redis Cluster answers during a failover or a slot migration (parsed by
# redis-py's own parser), and what redis-py's cluster client raises itself then.
CLUSTER_REPLIES = (
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "MOVED 3999 127.0.0.1:6381",
    "ASK 3999 127.0.0.1:6381",
)


def _cluster_errors() -> list[Exception]:
    parser = _RESP2Parser(65536)  # type: ignore[no-untyped-call]
    parsed: list[Exception] = [parser.parse_error(reply) for reply in CLUSTER_REPLIES]
    return [
        *parsed,
        ClusterError("TTL exhausted."),
        SlotNotCoveredError('Slot "42" is not covered by the cluster.'),
    ]


@pytest.mark.parametrize("error", _cluster_errors(), ids=lambda error: type(error).__name__)
async def test_a_cluster_changing_is_an_outage_not_a_bug(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop that meets one is restarted without an ERROR (the outage is told once, as
    a WARNING), and an API call that meets one answers `unavailable`, saying why."""
    calls = 0

    async def meets_it_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error

    outage = Outage("redis://cluster")
    with caplog.at_level(logging.DEBUG):
        await supervise("loop", meets_it_once, outage, backoff=Backoff(0.001, 0.002))
        refused = to_connect_error(error, "EnqueueJob", Outage("redis://cluster"))
    assert calls == 2
    assert outage.down  # told; a call begun during the outage ends it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert refused.code is Code.UNAVAILABLE
    assert "failover or a slot migration" in refused.message
