"""Replica acks on a Redis Cluster (store/replication.py): an enqueue's WAIT goes to the
master that ran its script, on the script's connection. On the local cluster only
(3 masters with a replica each)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from jobqueue.errors import NotReplicated
from jobqueue.model import EnqueueRequest, partition_of_type
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.store.client import connect
from jobqueue.store.enqueuer import Enqueuer


@pytest.fixture
async def cluster(cluster_redis_url: str) -> AsyncIterator[RedisCluster]:
    client = cast("RedisCluster", connect(cluster_redis_url, cluster=True))  # typed as Redis by connect
    await client.initialize()
    yield client
    await client.aclose()


def _types_on_every_master(cluster: RedisCluster) -> list[str]:
    """Job types whose partitions' slots are on three different masters."""
    found: dict[str, str] = {}
    for i in range(1000):
        job_type = f"acks{uuid.uuid4().hex[:6]}{i}"
        tag = partition_of_type(job_type)
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(f"{{{tag}}}"))
        found.setdefault(node.name, job_type)
        if len(found) == 3:
            return list(found.values())
    raise AssertionError("no types over three masters")


async def test_acked_enqueues_are_on_the_replica_of_their_master(
    cluster_redis_url: str, cluster: RedisCluster
) -> None:
    store = Store(cast("Redis", cluster), Settings(redis_url=cluster_redis_url, redis_cluster=True))
    acks = store.transitions.replica_acks
    assert acks is not None
    enqueuer = Enqueuer(store)
    checked = 0
    for job_type in _types_on_every_master(cluster):
        key = store.keys.queue(job_type).stats
        master = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
        info = await cluster.info("replication", target_nodes=master)
        # "auto", per master: 1 where the master has a replica.
        assert await acks.wanted(key) == (1 if int(info["connected_slaves"]) else 0)
        if not int(info["connected_slaves"]):
            continue
        jobs = [await enqueuer.enqueue(job_type, b"x") for _ in range(5)]
        jobs += await enqueuer.enqueue_many([EnqueueRequest(job_type, b"y")] * 20)
        replica = info["slave0"]
        # The replica's own view, asked directly: WAIT answered, so it has every job.
        address = {"host": replica["ip"], "port": int(replica["port"])}
        async with Redis(**address, single_connection_client=True) as reader:
            assert await reader.execute_command("READONLY")  # type: ignore[no-untyped-call]
            for job in jobs:
                assert await reader.hget(store.keys.job(job.id), "status") == b"1", job.id  # PENDING
        checked += 1
    assert checked, "no master of the cluster has a replica"


async def test_more_acks_than_replicas_is_unavailable_and_the_job_is_on_the_master(
    cluster_redis_url: str, cluster: RedisCluster
) -> None:
    settings = Settings(
        redis_url=cluster_redis_url, redis_cluster=True, replica_acks="2", replica_ack_timeout_s=0.3
    )
    store = Store(cast("Redis", cluster), settings)
    job_type = f"acks{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotReplicated, match="may or may not be stored: 1 of 2 replicas"):
        await Enqueuer(store).enqueue(job_type, b"x")
    stats = await cluster.hget(store.keys.queue(job_type).stats, "pending")
    assert stats == b"1"  # stored on the master all the same


async def test_a_master_still_without_the_script_after_script_load_gets_its_text(
    cluster_redis_url: str, cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master that answers NOSCRIPT (a replica just promoted, a restarted node made
    master again) gets the script's text (EVAL), and keeps it: SCRIPT LOAD alone goes to
    the masters of the client's slot map, which right after a failover may not name it
    yet (an enqueue during a manual failover so answered `internal`). Here the client's
    SCRIPT LOAD reaches no node, and the master's scripts are flushed before each call:
    an enqueue with its WAIT, a single script call and a pipelined one all succeed."""
    store = Store(cast("Redis", cluster), Settings(redis_url=cluster_redis_url, redis_cluster=True))
    job_type = f"acks{uuid.uuid4().hex[:8]}"
    master = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(store.keys.queue(job_type).stats))
    assert store.transitions.replica_acks is not None
    assert await store.transitions.replica_acks.wanted(store.keys.queue(job_type).stats) == 1  # the WAIT path

    async def load_nowhere(script: str) -> str:
        return hashlib.sha1(script.encode()).hexdigest()

    monkeypatch.setattr(cluster, "script_load", load_nowhere)

    async def flush_the_master() -> None:
        await cluster.execute_command("SCRIPT FLUSH", target_nodes=master)  # type: ignore[no-untyped-call]

    await flush_the_master()
    job = await Enqueuer(store).enqueue(job_type, b"x")  # the enqueue script and its WAIT
    await flush_the_master()
    assert (await store.transitions.cancel(job.id)).ok  # one script call through the pool
    await flush_the_master()
    other = f"acks{uuid.uuid4().hex[:8]}"
    await Enqueuer(store).enqueue(other, b"y")
    await flush_the_master()
    report = await store.stats.read()  # one script call per type, pipelined
    counts = {queue.type: queue for queue in report.queues}
    assert counts[job_type].cancelled == 1
    assert counts[other].pending == 1
