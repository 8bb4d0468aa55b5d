"""supervise: background loops outlive Redis outages, with the backoff their caller chose."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from connectrpc.code import Code
from redis._parsers import _RESP2Parser
from redis.exceptions import ClusterError, ResponseError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import supervise as supervise_module
from jobqueue.outage import Outage
from jobqueue.redis_server import RedisServer
from jobqueue.server.errors import to_connect_error
from jobqueue.store.client import connect
from jobqueue.supervise import REDIS_DOWN, Backoff, RedisBusy, supervise

from .conftest import eventually

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


# Keeps its Redis busy until SCRIPT KILL (it writes nothing, so it can be killed), or
# for at most ARGV[1] seconds.
SPIN = """
local deadline = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
repeat until tonumber(redis.call('TIME')[1]) >= deadline
return 'spun'
"""


async def test_a_busy_redis_is_an_outage_not_a_bug(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A script running past busy-reply-threshold makes Redis answer BUSY to everything
    else: through jobqueue's clients that is RedisBusy, an outage (a loop restarts
    without an ERROR, an API call answers `unavailable`), and the client works again
    once the script is gone. A Redis of the test's own: others' loops would meet it."""
    with RedisServer(tmp_path, extra_args=["--busy-reply-threshold", "50"]) as server:
        spinner, client = connect(server.url), connect(server.url)
        try:
            spinning = asyncio.create_task(spinner.eval(SPIN, 0, 60))

            async def answers_busy() -> bool:
                try:
                    await client.ping()
                except RedisBusy:
                    return True
                return False

            await eventually(answers_busy, timeout=30, what="BUSY")
            with pytest.raises(REDIS_DOWN) as busy:
                await client.get("a key")
            calls = 0

            async def meets_it_once() -> None:
                nonlocal calls
                calls += 1
                if calls == 1:
                    await client.get("a key")

            outage = Outage(server.url)
            with caplog.at_level(logging.DEBUG):
                await supervise("loop", meets_it_once, outage, backoff=Backoff(0.001, 0.002))
                refused = to_connect_error(busy.value, "GetJob", Outage(server.url))
            assert calls == 2 and outage.down
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert refused.code is Code.UNAVAILABLE
            await client.script_kill()
            with pytest.raises(ResponseError, match="Script killed"):
                await spinning
            assert await client.ping()
        finally:
            await spinner.aclose()
            await client.aclose()
