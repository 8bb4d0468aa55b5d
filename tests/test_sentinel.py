"""Redis Sentinel: redis+sentinel:// URLs, and a failover during a run.

The module starts its own deployment (jobqueue/redis_sentinel.py: a master, a replica,
three sentinels, loopback only). A server and a worker run as subprocesses on the
sentinel URL; the failover is a SENTINEL FAILOVER, awaited as a polled condition.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue import JobOptions
from jobqueue.client import SyncClient
from jobqueue.errors import NotReplicated
from jobqueue.model import Job, JobStatus, partition_of_type
from jobqueue.redis_sentinel import LocalSentinel
from jobqueue.redis_server import HOST, find_server_binary
from jobqueue.settings import Settings
from jobqueue.store.client import connect
from jobqueue.store.enqueuer import Enqueuer
from jobqueue.store.keys import Keyspace
from jobqueue.store.replication import ReplicaAcks
from jobqueue.store.sentinel_url import parse_sentinel_url
from jobqueue.store.store import Store

from .conftest import jobqueue_process, jobqueue_server
from .edge import error_lines
from .store_audit import audit

WORKER = ["worker", "tests/worker_apps.py:quick"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    if find_server_binary() is None:
        pytest.skip("the sentinel tests need redis-server")
    with LocalSentinel(tmp_path_factory.mktemp("sentinel")) as local:
        yield local


@pytest.fixture
async def master(deployment: LocalSentinel) -> AsyncIterator[Redis]:
    """A client of the master through the sentinels, on an empty keyspace."""
    client = connect(deployment.url)
    await client.flushall()
    yield client
    await client.aclose()


def test_url_forms() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26380,10.0.0.2,[::1]:5000/cache/2?x=1")
    assert parsed.sentinels == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 5000))
    assert parsed.master_name == "cache"
    assert parsed.master_url == "redis://:s3cret@10.0.0.1/2?x=1"
    tls = parse_sentinel_url("rediss+sentinel://a:1/m?sentinel_password=p&ssl_ca_certs=/ca.pem")
    assert (tls.master_url, tls.sentinel_password) == ("rediss://a/0?ssl_ca_certs=%2Fca.pem", "p")
    for url, says in (
        ("redis+sentinel://a:1,b:x/m", "sentinel 'b:x' is not HOST or HOST:PORT"),
        ("redis+sentinel://a:1", "the master's name is missing"),
        ("redis+sentinel://:pw@a:1/m/zero", "/MASTER_NAME or /MASTER_NAME/DB"),
    ):
        with pytest.raises(ValueError, match=says) as caught:
            parse_sentinel_url(url)
        assert "pw" not in str(caught.value)  # the password is redacted


def test_replica_acks_settings_are_checked() -> None:
    assert Settings(replica_acks=" AUTO ").replica_acks == "auto"
    assert Settings.from_env({"JOBQUEUE_REPLICA_ACKS": "2"}).replica_acks == "2"
    with pytest.raises(ValueError, match="replica_acks \\(JOBQUEUE_REPLICA_ACKS\\) must be auto or a number"):
        Settings(replica_acks="all")
    with pytest.raises(ValueError, match="replica_ack_timeout_s"):
        Settings(replica_ack_timeout_s=0)


async def test_replica_acks_auto_follows_the_replicas(master: Redis, redis: Redis) -> None:
    """ "auto": 1 on a master with a replica; 0 on the suite's Redis, which has none."""
    assert await ReplicaAcks(master, "auto", 1.0).wanted("k") == 1
    assert await ReplicaAcks(redis, "auto", 1.0).wanted("k") == 0
    assert await ReplicaAcks(master, "0", 1.0).wanted("k") == 0


async def test_enqueue_short_of_replicas_is_unavailable(deployment: LocalSentinel, master: Redis) -> None:
    """Two replicas asked, one exists: the job is stored on the master, the call fails
    with NotReplicated (`unavailable`), and a retry with its key returns the same job."""
    # The timeout is long enough for a loaded machine's replica to confirm: the test
    # waits it out whole (the second replica never comes).
    settings = Settings(redis_url=deployment.url, replica_acks="2", replica_ack_timeout_s=2.0)
    store = Store(master, settings)
    options = JobOptions(idempotency_key="k1")
    with pytest.raises(NotReplicated, match="may or may not be stored: 1 of 2 replicas"):
        await Enqueuer(store).enqueue("quick", b"", options=options)
    [key] = await master.keys(store.keys.job_key_prefix(partition_of_type("quick")) + "*")
    assert await master.hget(key, "status") == b"1"  # PENDING, on the master
    store_one = Store(master, Settings(redis_url=deployment.url, replica_acks="1"))
    again = await Enqueuer(store_one).enqueue("quick", b"", options=options)
    assert key.decode().endswith(again.id)


def test_server_and_worker_on_the_sentinel_url(
    deployment: LocalSentinel, master: Redis, tmp_path: Path
) -> None:
    url = deployment.url
    with (
        jobqueue_server(url, tmp_path / "server.log") as server_url,
        jobqueue_process(WORKER, tmp_path / "worker.log", JOBQUEUE_REDIS_URL=url),
        SyncClient(server_url) as client,
    ):
        ids = [client.enqueue("quick", b"").id for _ in range(20)]
        for job_id in ids:
            assert client.wait(job_id, 30).status is JobStatus.COMPLETED
        # Every acknowledged enqueue is on the replica already (auto: one replica ack).
        replica = deployment.nodes[1]
        with sync_redis.Redis(host=HOST, port=replica.port) as on_replica:
            prefix = Keyspace("jq").job_key_prefix(partition_of_type("quick"))
            assert all(on_replica.exists(prefix + job_id) for job_id in ids)
    for log in ("server.log", "worker.log"):
        assert not error_lines((tmp_path / log).read_text(errors="replace")), log


def _enqueue_acked(client: SyncClient, key: str, deadline: float, **kwargs: object) -> tuple[Job, int]:
    """EnqueueJob retried with the same idempotency key while it answers `unavailable`
    (a failover under way); the job and the number of refusals."""
    refusals = 0
    while True:
        try:
            return client.enqueue("quick", b"", options=JobOptions(idempotency_key=key), **kwargs), refusals  # type: ignore[arg-type]
        except ConnectError as exc:
            if exc.code is not Code.UNAVAILABLE or time.monotonic() > deadline:
                raise
            refusals += 1
            time.sleep(0.05)


async def test_failover_during_a_run_loses_no_acknowledged_job(
    deployment: LocalSentinel, master: Redis, tmp_path: Path
) -> None:
    """SENTINEL FAILOVER while jobs flow: the server, the worker and the scheduler follow
    the new master; every acknowledged job completes (none lost), the type's counts and
    indexes agree with its jobs, and no process logs an ERROR. A client's pool moves to
    the new master before Sentinel demotes the old one (which keeps accepting writes
    until then)."""
    url = deployment.url
    deadline = time.monotonic() + 45
    probe = connect(url, timeout_s=2)  # a pool whose connections are on the old master
    await probe.ping()
    moved = False
    with (
        jobqueue_server(url, tmp_path / "server.log") as server_url,
        jobqueue_process(WORKER, tmp_path / "worker.log", JOBQUEUE_REDIS_URL=url),
        SyncClient(server_url) as client,
    ):
        acked = [_enqueue_acked(client, f"before-{i}", deadline)[0].id for i in range(30)]
        old = deployment.master_address()
        deployment.failover()
        # Enqueues go on through the switch, until the old master serves as a replica.
        while not deployment.failed_over(old):
            acked.append(_enqueue_acked(client, f"during-{len(acked)}", deadline)[0].id)
            with contextlib.suppress(RedisError):
                moved = moved or int((await probe.info("server"))["tcp_port"]) != old[1]
            assert time.monotonic() < deadline, "the failover did not end in time"
        # Due later: the scheduler must promote them on the new master.
        due = int(time.time() * 1000) + 300
        for i in range(10):
            acked.append(_enqueue_acked(client, f"after-{i}", deadline, execution_time_ms=due)[0].id)
        for job_id in acked:
            assert client.wait(job_id, max(1.0, deadline - time.monotonic())).status is JobStatus.COMPLETED
    await probe.aclose()
    assert moved, "the pool stayed on the old master until Sentinel demoted it"
    host, port = deployment.master_address()
    with sync_redis.Redis(host=host, port=port) as new_master:
        assert audit(new_master, Keyspace("jq"), "quick") == []
    for log in ("server.log", "worker.log"):
        assert not error_lines((tmp_path / log).read_text(errors="replace")), log


async def test_a_password_reaches_the_master_through_the_sentinels(tmp_path: Path) -> None:
    """The URL's password is the master's: the pool and a connection of the store's own
    (a worker's blocking pops) authenticate with it; the sentinels need none."""
    with LocalSentinel(tmp_path, password="p@ss:w/rd") as deployment:
        assert ":p%40ss%3Aw%2Frd@" in deployment.url
        client = connect(deployment.url)
        store = Store(client, Settings(redis_url=deployment.url))
        own = store.own_connection()
        try:
            job = await Enqueuer(store).enqueue("quick", b"x")  # auto: waits for the replica
            assert await own.execute(
                "HGET", store.keys.job_key_prefix(partition_of_type("quick")) + job.id, "type"
            )
            assert await client.exists(store.keys.job_key_prefix(partition_of_type("quick")) + job.id)
        finally:
            await own.aclose()
            await client.aclose()
