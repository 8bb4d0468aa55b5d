"""Redis clients (jobqueue.store.client): every way to name the server, C packing, the pools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.utils
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

from jobqueue.redis_server import RedisServer, is_loopback_url
from jobqueue.settings import Settings
from jobqueue.store.client import connect

from .conftest import eventually
from .harness import Harness


async def test_unix_socket_url(tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    with RedisServer(tmp_path, extra_args=["--unixsocket", str(socket), "--unixsocketperm", "700"]):
        url = f"unix://{socket}?db=0"
        redis = connect(url)
        store = Harness(redis, Settings(redis_url=url))
        blocking = store.own_connection()
        try:
            job = await store.enqueue("t", b"over a socket")
            assert await store.pop(blocking, "t", 1) == job.id
            assert (await store.get(job.id)).payload == b"over a socket"
        finally:
            await blocking.aclose()
            await redis.aclose()


@pytest.mark.parametrize("unbounded", [False, True], ids=["server pool", "worker pool"])
async def test_commands_are_packed_in_c_and_arrive_intact(redis_url: str, unbounded: bool) -> None:
    client = connect(redis_url, max_connections=None if unbounded else 8)
    try:
        connection = client.connection_pool.make_connection()
        assert type(connection).pack_command is not AbstractConnection.pack_command
        await client.delete("packed")
        await client.rpush("packed", "žluť", b"\x00\xff", 7, 2.5)
        assert await client.lrange("packed", 0, -1) == ["žluť".encode(), b"\x00\xff", b"7", b"2.5"]
        await client.execute_command("CLIENT SETNAME", "jq-test")  # two words, sent as two
        assert await client.client_getname() == "jq-test"
        with pytest.raises(DataError):
            await client.rpush("packed", object())  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_new_connections_do_not_read_package_metadata(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py 8 would look its version up (a blocked event loop) for each one."""
    client = connect(redis_url, max_connections=None)
    try:
        await client.ping()  # the one lookup, if any, is made here
        lookups: list[str] = []
        monkeypatch.setattr(redis.utils, "get_lib_version", lambda: lookups.append("lookup") or "0")
        await asyncio.gather(*(client.blpop(["empty"], 0.05) for _ in range(3)))  # three new connections
        assert len(client.connection_pool._available_connections) >= 3
        assert lookups == []
    finally:
        await client.aclose()


async def test_the_unbounded_pool_has_no_bound(redis_url: str) -> None:
    """redis-py's own "no bound" is 100 connections, then MaxConnectionsError: a
    worker whose 150 handlers each wait on a command of their own must not fail."""
    client = connect(redis_url, max_connections=None)
    observer = connect(redis_url)
    try:
        waiting = [asyncio.create_task(client.blpop(["unbounded"], 20)) for _ in range(150)]

        async def all_blocked() -> bool:
            if any(task.done() for task in waiting):
                await asyncio.gather(*waiting)  # raises the pool's error, if any
            info = await observer.info("clients")
            return bool(info["blocked_clients"] >= 150)

        await eventually(all_blocked, what="150 blocked clients")
        await observer.rpush("unbounded", *range(150))
        popped = await asyncio.gather(*waiting)
        assert sorted(int(value) for _, value in popped) == list(range(150))
    finally:
        await client.aclose()
        await observer.aclose()


async def test_a_new_connection_sends_no_ping_and_no_hello(redis_url: str) -> None:
    """Its first command is the first thing Redis's MONITOR sees from it: redis-py 8
    would PING it and switch it to RESP3 (HELLO), two round trips per connection."""
    observer = connect(redis_url)
    client = connect(redis_url, max_connections=None)
    try:
        async with observer.monitor() as monitor:
            await client.set("first-command", "x")
            seen = []
            async with asyncio.timeout(10):
                while not seen or seen[-1]["command"] != "SET first-command x":
                    seen.append(await monitor.next_command())
        ours = [entry["command"] for entry in seen if entry["client_address"] != "lua"]
        assert not [command for command in ours if command.startswith(("PING", "HELLO"))], ours
        info = await client.client_info()
        assert int(info["resp"]) == 2
    finally:
        await client.aclose()
        await observer.aclose()


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("redis://127.0.0.1:6390/0", True),
        ("redis://127.8.9.10", True),
        ("redis://localhost:6379", True),
        ("redis://[::1]:6379/0", True),
        ("unix:///tmp/redis.sock", True),
        ("redis://10.0.0.5:6379", False),
        ("redis://redis.example:6379", False),
        ("redis://128.0.0.1", False),
    ],
)
def test_which_redis_the_bench_scripts_may_load(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


async def test_the_unbounded_pool_reuses_clean_connections_only(redis_url: str) -> None:
    """The worker's lean pool (no lock, no metrics) still hands out each connection
    ready for a command: one left with a reply nobody read is reconnected first."""
    client = connect(redis_url, max_connections=None)
    pool = client.connection_pool
    try:
        for _ in range(20):
            await client.set("clean", "x")
        assert len(pool._available_connections) == 1 and not pool._in_use_connections

        dirty = await pool.get_connection()
        await dirty.send_command("INCR", "unread")  # its reply stays on the socket
        await pool.release(dirty)
        await eventually(dirty.can_read, what="the unread reply on the socket")
        assert await client.get("clean") == b"x"  # not the INCR's 1
        assert await client.get("unread") == b"1"
        assert len(pool._available_connections) == 1
    finally:
        await client.aclose()
