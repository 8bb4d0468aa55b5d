"""OwnConnection: the worker fetcher's connection, outside redis-py's pool and retry wrappers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from jobqueue.model import Job
from jobqueue.store.connection import OwnConnection, Unblocked
from jobqueue.supervise import REDIS_DOWN

from .conftest import eventually
from .harness import Harness

pytestmark = pytest.mark.redis_targets

# One hash tag: on a cluster the keys of one command share a slot. A cluster
# connection sends a command without keys (CLIENT ID) by its first argument's slot:
# the tag `ID` puts these keys there too, so CLIENT ID names the connection they use.
A_STRING, READY, POPPED = "{ID}a string", "{ID}ready", "{ID}popped"


def on_their_node(redis: Redis) -> dict[str, Any]:
    """Options that send a node-local command (CLIENT LIST) where these keys live."""
    return {"target_nodes": redis.get_node_from_key(READY)} if isinstance(redis, RedisCluster) else {}


async def client_id(connection: OwnConnection) -> int:
    reply: int = await connection.execute("CLIENT", "ID")
    return reply


async def _is(commands: Awaitable[dict[int, str]], client: int, command: str | None) -> bool:
    return (await commands).get(client) == command


async def test_an_error_reply_leaves_the_connection_in_use(redis: Redis, blocking: OwnConnection) -> None:
    before = await client_id(blocking)
    await redis.set(A_STRING, "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await blocking.execute("LPUSH", A_STRING, "x")
    assert await client_id(blocking) == before
    assert await blocking.execute("GET", A_STRING) == b"x"


async def test_a_cancelled_call_drops_the_connection_and_its_late_reply(
    redis: Redis, blocking: OwnConnection
) -> None:
    before = await client_id(blocking)
    waiting = asyncio.create_task(blocking.execute("BLMOVE", READY, POPPED, "RIGHT", "LEFT", 30))

    async def commands() -> dict[int, str]:
        return {int(c["id"]): c["cmd"] for c in await redis.client_list(**on_their_node(redis))}

    await eventually(lambda: _is(commands(), before, "blmove"), what="the BLMOVE to block")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: _is(commands(), before, None), what="Redis to drop the connection")
    await redis.lpush(READY, "late")
    # Had the connection been kept, this would read the BLMOVE's reply ("late").
    assert await blocking.execute("ECHO", "fresh") == b"fresh"
    assert await client_id(blocking) != before
    assert await redis.lrange(READY, 0, -1) == [b"late"]  # the cancelled pop took nothing


async def test_a_pop_unblocked_by_redis_is_an_outage(redis: Redis, blocking: OwnConnection) -> None:
    """A failover ends the blocked pops of a master that becomes a replica with an
    UNBLOCKED error: the fetcher must take it as an outage (and, on a cluster, look
    for the slot's new master), not as a bug. CLIENT UNBLOCK ... ERROR sends the same."""
    before = await client_id(blocking)
    waiting = asyncio.create_task(blocking.execute("BLMOVE", READY, POPPED, "RIGHT", "LEFT", 30))

    async def commands() -> dict[int, str]:
        return {int(c["id"]): c["cmd"] for c in await redis.client_list(**on_their_node(redis))}

    await eventually(lambda: _is(commands(), before, "blmove"), what="the BLMOVE to block")
    await redis.execute_command("CLIENT UNBLOCK", before, "ERROR", **on_their_node(redis))
    with pytest.raises(Unblocked, match="UNBLOCKED") as unblocked:
        await waiting
    assert isinstance(unblocked.value, REDIS_DOWN)
    assert await blocking.execute("ECHO", "again") == b"again"


async def test_scripts_survive_a_script_flush(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    await store.redis.script_flush()
    job_id = await store.pop(blocking, "t", 1)
    assert job_id is not None
    [job] = await store.transitions.claim("t", [job_id], "w", 60_000, 1, via=blocking)
    assert isinstance(job, Job)
    assert job.id == job_id


async def test_two_callers_at_once_are_refused(blocking: OwnConnection) -> None:
    waiting = asyncio.create_task(blocking.execute("BLMOVE", READY, POPPED, "RIGHT", "LEFT", 0.2))
    await asyncio.sleep(0)  # let it send
    with pytest.raises(RuntimeError, match="one caller at a time"):
        await blocking.execute("PING")
    assert await waiting is None
    assert await blocking.execute("PING") == b"PONG"


async def test_a_cluster_connection_follows_a_slot_that_moves(
    redis: Redis, blocking: OwnConnection, redis_target: str
) -> None:
    """A slot migrated to another master while a connection knows its old owner: during
    the migration a key already gone answers ASK, after it every key answers MOVED."""
    if redis_target != "cluster":
        pytest.skip("a Redis Cluster's slots")
    assert isinstance(redis, RedisCluster)
    stays, arrives = "{moving}stays", "{moving}arrives"
    await redis.rpush(stays, "a")
    assert await blocking.execute("LLEN", stays) == 1  # the route to the old owner is known
    slot = redis.keyslot(stays)
    source = redis.get_node_from_key(stays)
    target = next(node for node in redis.get_primaries() if node.name != source.name)
    source_id, target_id = [
        (await redis.execute_command("CLUSTER MYID", target_nodes=node)).decode() for node in (source, target)
    ]
    await redis.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id, target_nodes=target)
    await redis.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id, target_nodes=source)
    # A key the old owner does not have is asked for on the new one (ASK, then ASKING).
    assert await blocking.execute("RPUSH", arrives, "b") == 1
    await redis.execute_command(
        "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", stays, target_nodes=source
    )
    for node in redis.get_primaries():
        await redis.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id, target_nodes=node)
    # Both keys now answer from the new owner (MOVED, then the map read again).
    assert await blocking.execute("LLEN", stays) == 1
    assert await blocking.execute("LRANGE", arrives, 0, -1) == [b"b"]
    assert await redis.execute_command("CLUSTER COUNTKEYSINSLOT", slot, target_nodes=target) == 2
