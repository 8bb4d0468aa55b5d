"""The cluster client (store/client.py's `connect_cluster`) sends each command once:
no MOVED while it learns the slot map, no client closed under commands in flight
(which redis-py would then send again). On the local cluster only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, ResponseError, SlotNotCoveredError

from jobqueue.events import Event
from jobqueue.model import EnqueueRequest
from jobqueue.producer import Producer
from jobqueue.redis_cluster import LocalCluster
from jobqueue.settings import Settings
from jobqueue.store.client import ClusterUnreachable, connect
from jobqueue.worker import Job, Worker

from .conftest import eventually

# Enough commands at once to spread over every master, many in flight together.
BURST = 300


@pytest.fixture
async def cluster(cluster_redis_url: str) -> AsyncIterator[RedisCluster]:
    async with _cluster_client(cluster_redis_url) as client:
        yield client


@contextlib.asynccontextmanager
async def _cluster_client(url: str) -> AsyncIterator[RedisCluster]:
    """jobqueue's cluster client of the cluster `url`'s node belongs to, its slot map read."""
    client = cast("RedisCluster", connect(url, max_connections=None, cluster=True))
    try:
        await client.initialize()
        yield client
    finally:
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


# A script that counts, then keeps its node busy (ARGV[1] ms): a command Redis has
# applied and not yet answered for that long.
COUNT_THEN_SPIN = """
local count = redis.call('INCR', KEYS[1])
local started = redis.call('TIME')
local deadline = started[1] * 1e6 + started[2] + ARGV[1] * 1000
repeat
  local now = redis.call('TIME')
until now[1] * 1e6 + now[2] >= deadline
return count
"""
# Under the cluster's node timeout (redis_cluster.py): the busy node is not failed over.
SPIN_MS = 1000


@pytest.fixture(scope="module")
def own_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A cluster of this module's own for the tests that make a slot unserved and a node
    busy: the suite's shared server and workers on the shared cluster would meet them
    (outages to them: their calls meanwhile would fail)."""
    with LocalCluster(tmp_path_factory.mktemp("clusterdown"), replicas=0) as local:
        yield local.url


@pytest.fixture
async def own_cluster(own_cluster_url: str) -> AsyncIterator[RedisCluster]:
    async with _cluster_client(own_cluster_url) as client:
        yield client


# How soon the busy node answers others BUSY: the sign that the script runs.
BUSY_AFTER_MS = 100


@pytest.mark.parametrize("sent_by", ["a command", "a pipeline"])
@pytest.mark.parametrize("unserved_by", ["its master", "every node"])
async def test_a_clusterdown_leaves_the_commands_in_flight_on_other_nodes_alone(
    own_cluster: RedisCluster, unserved_by: str, sent_by: str
) -> None:
    """A slot made unserved (CLUSTER DELSLOTS) answers CLUSTERDOWN. redis-py then closed
    the whole client, and so the connection of a script applied but not yet answered on
    another master, and sent that script again. Unserved by its master only, the map
    read again still names it (the other nodes' view); by every node, the map read
    again misses the slot, a failure to read it (ClusterUnreachable), after which
    redis-py closed the client too. A non-transactional pipeline (store/scripts.py's
    `run_each`, the enqueuer's, controls.py's) closed it on its retry the same way."""
    cluster = own_cluster
    prefix = _prefix()
    counter = f"{prefix}:counter"
    busy = cluster.get_node_from_key(counter)
    keys = (f"{prefix}:down{i}" for i in range(1000))
    unserved = next(key for key in keys if cluster.get_node_from_key(key) is not busy)
    owner = cast("ClusterNode", cluster.get_node_from_key(unserved))
    slot = key_slot(unserved.encode())
    async with contextlib.AsyncExitStack() as stack:
        nodes = {
            node.name: await stack.enter_async_context(_node_client(node)) for node in cluster.get_nodes()
        }
        busy_node, owner_node = nodes[busy.name], nodes[owner.name]
        unserving = list(nodes.values()) if unserved_by == "every node" else [owner_node]
        threshold = await _config(busy_node, "busy-reply-threshold")
        coverage = await _config(owner_node, "cluster-require-full-coverage")
        await busy_node.config_set("busy-reply-threshold", BUSY_AFTER_MS)
        try:
            for node in unserving:
                # The other slots still served: "CLUSTERDOWN Hash slot not served" for this one.
                await node.config_set("cluster-require-full-coverage", "no")
                await node.execute_command("CLUSTER DELSLOTS", slot)
            counting = asyncio.create_task(cluster.eval(COUNT_THEN_SPIN, 1, counter, SPIN_MS))
            await eventually(lambda: _busy(busy_node), timeout=10, what="the script running")
            with pytest.raises(ClusterUnreachable if unserved_by == "every node" else ClusterDownError):
                await _get(cluster, unserved, sent_by)
            assert await asyncio.wait_for(counting, 30) == 1
        finally:
            await owner_node.execute_command("CLUSTER ADDSLOTS", slot)
            for node in unserving:
                await node.config_set("cluster-require-full-coverage", coverage)
            await busy_node.config_set("busy-reply-threshold", threshold)
            for node in nodes.values():
                await eventually(lambda node=node: _served(node, slot), timeout=30, what="the slot served")
    # The client reads the map again and serves the slot again; the script counted once.
    assert await cluster.set(unserved, 1)
    assert int(await cluster.get(counter) or 0) == 1


async def test_a_callers_own_aclose_in_its_handler_of_a_cluster_error_closes_the_client(
    cluster_redis_url: str, cluster: RedisCluster
) -> None:
    """The `aclose` that only marks the map stale is redis-py's own, from its handler:
    a caller handling the same error (here a slot missing from the client's map) and
    closing the client closes every connection."""
    fresh = cast("RedisCluster", connect(cluster_redis_url, cluster=True))
    key = f"{_prefix()}:missing"
    await fresh.initialize()
    ids = {node.name: await fresh.client_id(target_nodes=node) for node in fresh.get_primaries()}
    fresh.nodes_manager.slots_cache[key_slot(key.encode())] = []  # no node for the slot
    try:
        await fresh.get(key)
    except SlotNotCoveredError:
        await fresh.aclose()
    await eventually(lambda: _all_gone(cluster, ids), what="the client's connections closed")


async def _all_gone(cluster: RedisCluster, ids: dict[str, int]) -> bool:
    """Whether no node lists its connection of `ids` (node name -> CLIENT ID) any more."""
    for name, client_id in ids.items():
        listed = await cluster.client_list(target_nodes=cluster.get_node(node_name=name))
        if any(int(client["id"]) == client_id for client in listed):
            return False
    return True


@contextlib.asynccontextmanager
async def _node_client(node: ClusterNode) -> AsyncIterator[Redis]:
    """A plain client of one node, for the commands that change its configuration."""
    client = Redis(host=node.host, port=node.port, socket_timeout=10)
    try:
        yield client
    finally:
        await client.aclose()


async def _get(cluster: RedisCluster, key: str, sent_by: str) -> Any:
    if sent_by == "a command":
        return await cluster.get(key)
    async with cluster.pipeline(transaction=False) as pipe:
        pipe.get(key)
        return await pipe.execute()


async def _config(node: Redis, name: str) -> str:
    value: str = (await node.config_get(name))[name]
    return value


async def _busy(node: Redis) -> bool:
    try:
        await node.ping()
    except ResponseError as error:
        return str(error).startswith("BUSY")
    return False


async def _served(node: Redis, slot: int) -> bool:
    info = await node.cluster("INFO")
    slots = await node.cluster("SLOTS")
    return info.get("cluster_state") == "ok" and any(first <= slot <= last for first, last, *_ in slots)
