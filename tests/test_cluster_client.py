"""The cluster client (store/client.py's `connect_cluster`) sends each command once:
no MOVED while it learns the slot map, no client closed under commands in flight
(which redis-py would then send again). On the local cluster only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from redis.asyncio.cluster import RedisCluster

from jobqueue.events import Event
from jobqueue.model import EnqueueRequest
from jobqueue.producer import Producer
from jobqueue.settings import Settings
from jobqueue.store.client import connect
from jobqueue.worker import Job, Worker

from .conftest import eventually

# Enough commands at once to spread over every master, many in flight together.
BURST = 300


@pytest.fixture
async def cluster(cluster_redis_url: str) -> AsyncIterator[RedisCluster]:
    client = cast("RedisCluster", connect(cluster_redis_url, max_connections=None, cluster=True))
    await client.initialize()
    yield client
    await client.aclose()


def _prefix() -> str:
    return f"once{uuid.uuid4().hex[:8]}"


async def _moved_replies(cluster: RedisCluster) -> int:
    """MOVED errors the masters have answered since they started (INFO errorstats)."""
    replies: dict[Any, dict[str, Any]] = await cluster.info("errorstats", target_nodes=RedisCluster.PRIMARIES)
    return sum(int(node.get("errorstat_MOVED", {}).get("count", 0)) for node in replies.values())


async def test_a_new_client_sends_its_first_commands_to_their_slots_masters(
    cluster_redis_url: str, cluster: RedisCluster
) -> None:
    prefix = _prefix()
    moved_before = await _moved_replies(cluster)
    fresh = connect(cluster_redis_url, cluster=True)  # no slot map yet
    try:
        # Keys over many slots, every command issued before the map is read.
        counts = await asyncio.gather(*(fresh.incr(f"{prefix}:{i}") for i in range(BURST)))
    finally:
        await fresh.aclose()
    assert counts == [1] * BURST
    assert await _moved_replies(cluster) == moved_before


async def test_a_moved_under_commands_in_flight_sends_each_once(cluster: RedisCluster) -> None:
    prefix = _prefix()
    keys = [f"{prefix}:{i}" for i in range(BURST)]
    await asyncio.gather(*(cluster.set(key, 0) for key in keys))
    # The map made stale for every slot but one master's (as after a failover or a
    # migration): its commands get MOVED while the others' are in flight.
    manager = cluster.nodes_manager
    masters = cluster.get_primaries()
    wrong = masters[0]
    for slot, nodes in list(manager.slots_cache.items()):
        if nodes[0] is not wrong:
            manager.slots_cache[slot] = [wrong]
    await asyncio.gather(*(cluster.incr(key) for key in keys))
    values = await asyncio.gather(*(cluster.get(key) for key in keys))
    assert [int(value) for value in values] == [1] * BURST


async def test_handlers_apply_each_job_once_while_the_worker_starts(cluster_redis_url: str) -> None:
    """N jobs waiting, a worker starting with room for many at once: each handler's
    INCR through Worker.redis counts once, while the worker's own connections and its
    handlers' client read the slot map again (as after a MOVED) all along."""
    jobs = 1000
    settings = Settings(redis_url=cluster_redis_url, redis_cluster=True, prefix=_prefix())
    counter = f"{settings.prefix}:incrs"

    async def handler(job: Job) -> None:
        await worker.redis.incr(counter)

    worker = Worker("once", handler, concurrency=200, settings=settings)
    producer = Producer.connect(settings)
    check = connect(cluster_redis_url, cluster=True)
    stop = asyncio.Event()
    try:
        await producer.enqueue_many([EnqueueRequest("once", b"") for _ in range(jobs)])
        serving = asyncio.create_task(worker.serve(stop))
        rereading = asyncio.create_task(_reread_maps(worker, serving))
        try:
            await eventually(lambda: _completed(worker, jobs), timeout=60, what=f"{jobs} jobs completed")
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)
            await rereading
        assert int(await check.get(counter) or 0) == jobs
    finally:
        await producer.aclose()
        await check.aclose()


async def _completed(worker: Worker, jobs: int) -> bool:
    return worker.stats[Event.COMPLETED] >= jobs


async def _reread_maps(worker: Worker, serving: asyncio.Task[None]) -> None:
    """Reads the slot map again, in the store's client (the one the worker's own
    connections route by) and in Worker.redis, until the worker stops."""
    for _ in range(10_000):
        if serving.done():
            return
        with contextlib.suppress(RuntimeError):  # not serving yet: no store, no client
            for client in (worker.store.redis, worker.redis):
                await cast("RedisCluster", client).nodes_manager.initialize()
        await asyncio.sleep(0.01)
