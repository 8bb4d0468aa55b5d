"""A Redis Cluster failing over under a server and a worker: a master SIGKILLed (its
replica promoted), and a manual CLUSTER FAILOVER, while the worker drains jobs enqueued
through the server and more enqueues arrive. And a Producer alone (no server, worker,
scheduler or reaper in its process) enqueueing across a master's SIGKILL.

Cluster errors meanwhile (a refused connection, CLUSTERDOWN, MOVED while the map
settles) are a Redis outage: the API answers `unavailable`, the worker's loops, the
scheduler and the reapers wait and retry, no process logs an ERROR, and every
acknowledged job completes.

The test starts a cluster of its own (the suite's shared one is never broken) and runs
once, not per Redis target.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio.cluster import RedisCluster

from jobqueue.client import SyncClient
from jobqueue.errors import NotReplicated
from jobqueue.model import JobOptions, JobStatus
from jobqueue.producer import Producer
from jobqueue.redis_cluster import LocalCluster
from jobqueue.redis_server import RedisServer, find_server_binary, free_port
from jobqueue.settings import Settings
from jobqueue.store.client import connect
from jobqueue.store.cluster_connection import pipeline_on_slot_master
from jobqueue.store.keys import Keyspace
from jobqueue.supervise import REDIS_DOWN

from .conftest import eventually, jobqueue_process, jobqueue_server, until
from .edge import error_lines

JOB_TYPE = "failover"  # tests/worker_apps.py:failover
BEFORE, DURING = 120, 40  # jobs enqueued before the fault, and from the fault on
RUN_S = b"0.05"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """3 masters with a replica each; a node is deemed failed after 1 s (the suite's
    shared cluster: 2 s), so that a replica takes over soon."""
    if find_server_binary() is None:
        pytest.skip("needs redis-server")
    with LocalCluster(tmp_path_factory.mktemp("failover-cluster"), node_timeout_ms=1000) as local:
        yield local


class Enqueuer:
    """Enqueues through the server from a thread, retrying what the server refuses, and
    keeps the codes of the refusals. `paused` held: no enqueue is in flight."""

    def __init__(self, client: SyncClient, count: int) -> None:
        self.client, self.count = client, count
        self.ids: list[str] = []
        self.refusals: list[Code] = []
        self.paused = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while len(self.ids) < self.count and time.monotonic() < deadline:
            with self.paused:
                try:
                    self.ids.append(self.client.enqueue(JOB_TYPE, RUN_S).id)
                except ConnectError as refused:
                    self.refusals.append(refused.code)
            time.sleep(0.01)


def _all_completed(client: SyncClient, waiting: set[str]) -> bool:
    for job_id in list(waiting):
        try:
            job = client.get(job_id)
        except ConnectError as refused:
            assert refused.code is Code.UNAVAILABLE, refused
            return False
        assert job.status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED), job
        if job.status is not JobStatus.COMPLETED:
            return False
        waiting.discard(job_id)
    return True


def _drain_through_a_fault(
    cluster: LocalCluster, tmp_path: Path, fault: Callable[[RedisServer, threading.Lock], float]
) -> float:
    """Runs a server and a worker on `cluster`, enqueues BEFORE jobs, then, once the
    worker runs them, applies `fault` to the master of the type's partition while
    DURING more are enqueued; checks that every acknowledged job completed and that no
    process logged an error. Returns what `fault` returned (seconds)."""
    starts = tmp_path / "starts"
    starts.touch()
    env = {
        "JOBQUEUE_REDIS_CLUSTER": "1",
        "JOBQUEUE_REAPER_INTERVAL_S": "0.2",
        "JOBQUEUE_CLAIM_TIMEOUT_S": "1",
        "JOBQUEUE_RESTART_GRACE_S": "0",
        "TEST_STARTS_FILE": str(starts),
    }
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    master = cluster.owner_of(Keyspace().queue(JOB_TYPE).ready)
    with (
        jobqueue_server(cluster.url, server_log, **env) as url,
        SyncClient(url, timeout_s=15) as client,
    ):
        acked = [client.enqueue(JOB_TYPE, RUN_S).id for _ in range(BEFORE)]
        with jobqueue_process(
            ["worker", f"tests/worker_apps.py:{JOB_TYPE}"], worker_log, JOBQUEUE_REDIS_URL=cluster.url, **env
        ):
            until(lambda: len(starts.read_text().splitlines()) >= 8, "the worker running jobs", 30)
            enqueuer = Enqueuer(client, DURING)
            enqueuer.thread.start()
            seconds = fault(master, enqueuer.paused)
            enqueuer.thread.join(70)
            acked += enqueuer.ids
            assert len(enqueuer.ids) == DURING, f"{len(enqueuer.ids)} of {DURING} enqueued"
            assert set(enqueuer.refusals) <= {Code.UNAVAILABLE}, enqueuer.refusals
            waiting = set(acked)
            until(lambda: _all_completed(client, waiting), f"{len(acked)} jobs completed", 60)
        # GetJob of every acknowledged id, once the worker is gone: none lost.
        assert {client.get(job_id).status for job_id in acked} == {JobStatus.COMPLETED}
    errors = error_lines(server_log.read_text(errors="replace")) + error_lines(
        worker_log.read_text(errors="replace")
    )
    assert not errors, "\n---\n".join(errors[:10])
    return seconds


def _wait_replicated(cluster: LocalCluster, master: RedisServer) -> None:
    """Every write the master applied so far is on its replica: a write of this
    connection's own to the type's slot, then WAIT (which waits for the connection's
    last write: on a connection that wrote nothing it answers at once). A worker's
    completion lost with the master would hold its job until its lease (30 s) ran out."""
    marker = f"{Keyspace().queue(JOB_TYPE).ready}:test-replicated"  # the type's hash tag
    with cluster.client(master) as client:
        client.incr(marker)
        assert client.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]


def test_a_killed_master_and_a_manual_failover_lose_no_job(cluster: LocalCluster, tmp_path: Path) -> None:
    """The partition's master SIGKILLed: its replica takes over; the killed process,
    restarted, rejoins as that one's replica; then a manual failover on it makes it the
    master again (one drain for both: each server and worker start costs seconds)."""
    took: dict[str, float] = {}

    def kill_then_fail_over(master: RedisServer, enqueues: threading.Lock) -> float:
        with enqueues:
            _wait_replicated(cluster, master)
            killed_at = time.monotonic()
            replica = cluster.kill_master(master)
        cluster.promoted(replica)
        took["promotion"] = time.monotonic() - killed_at
        cluster.restart(master)
        assert cluster.replicas_of(replica) == [master]
        took["manual failover"] = cluster.failover(master)
        assert cluster.role(master) == "master"
        print(", ".join(f"{what}: {seconds:.1f} s" for what, seconds in took.items()))
        return took["promotion"]

    assert _drain_through_a_fault(cluster, tmp_path, kill_then_fail_over) > 0


def test_a_manual_failover_waits_for_a_slow_settling(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LocalCluster.failover` asks again every 2 s while the failover is not over; when
    the roles switched but the cluster takes longer than that to settle (a loaded
    machine; here its check held false for 3 s), it waits instead of asking the new
    master, which would refuse with a ResponseError: the drain above's manual failover
    can meet that on a loaded machine."""
    master = cluster.masters[0]
    replica = cluster.replicas_of(master)[0]
    settled, started = cluster.settled, time.monotonic()
    monkeypatch.setattr(cluster, "settled", lambda: time.monotonic() - started > 3 and settled())
    assert cluster.failover(replica) > 2
    assert (cluster.role(replica), cluster.role(master)) == ("master", "slave")


def test_a_server_whose_cluster_is_unreachable_waits_for_it(tmp_path: Path) -> None:
    """No node answers (the cluster down, or every node named gone): the server starts
    all the same, as on a single Redis that is down, and answers `unavailable`."""
    log = tmp_path / "server.log"
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    with (
        jobqueue_server(nobody, log, JOBQUEUE_REDIS_CLUSTER="1") as url,
        SyncClient(url, timeout_s=15) as client,
    ):
        for call in (lambda: client.enqueue(JOB_TYPE, b""), client.stats):
            with pytest.raises(ConnectError) as refused:
                call()
            assert refused.value.code is Code.UNAVAILABLE, refused.value
    text = log.read_text(errors="replace")
    assert "unavailable (ClusterUnreachable: Redis Cluster cannot be connected" in text
    assert not error_lines(text), text[-3000:]


# A Producer alone: jobs acknowledged before the kill and after the recovery; how long
# after the replica's promotion its enqueues must be acknowledged again.
ALONE_BEFORE, ALONE_AFTER = 20, 20
RECOVERY_S = 10.0


async def _until_promoted(
    cluster: LocalCluster, replica: RedisServer, attempt: Callable[[], Awaitable[bool]]
) -> int:
    """Calls `attempt` (False: it failed, to retry) until `replica` is promoted and the
    cluster settled; returns how many attempts failed."""
    promotion = asyncio.ensure_future(asyncio.to_thread(cluster.promoted, replica))
    failed = 0
    for _ in range(10_000):  # bounded by the promotion's own timeout (LocalCluster.promoted)
        if promotion.done():
            break
        if not await attempt():
            failed += 1
            await asyncio.sleep(0.05)  # a retry's pause, as a client's backoff
    await promotion
    return failed


async def test_a_producer_alone_enqueues_again_once_the_replica_took_over(cluster: LocalCluster) -> None:
    """A Producer that only enqueues, with replica acks (its master has a replica: each
    enqueue waits for it, on the script's connection), keeps enqueueing while the master
    of its type's slot is SIGKILLed. Once the replica is promoted, its enqueues are
    acknowledged again within RECOVERY_S, with no server, scheduler or reaper in its
    process to read the slot map again for it. Each job is retried with its idempotency
    key until acknowledged, and every acknowledged job is stored, once (a retry answers
    with the job stored first)."""
    keyspace = Keyspace()
    job_type = "alone"
    master = cluster.owner_of(keyspace.queue(job_type).ready)
    acked: dict[str, str] = {}  # payload (the job's number) -> id of the job acknowledged
    refusals: list[str] = []  # what the failed attempts failed with

    async with Producer.connect(Settings(redis_url=cluster.url, redis_cluster=True)) as producer:

        async def enqueue_next() -> bool:
            """One attempt at the next job (numbered from 0: its payload and its
            idempotency key name it); False: an outage, retried."""
            number = len(acked)
            try:
                job = await producer.enqueue(
                    job_type, str(number), options=JobOptions(idempotency_key=f"job-{number}")
                )
            except (*REDIS_DOWN, NotReplicated) as failed:
                refusals.append(type(failed).__name__)
                return False
            acked[str(number)] = job.id
            return True

        for _ in range(ALONE_BEFORE):
            assert await enqueue_next(), refusals
        replica_acks = producer.store.transitions.replica_acks
        assert replica_acks is not None
        assert await replica_acks.wanted(keyspace.queue(job_type).ready) == 1  # the WAIT path

        replica = await asyncio.to_thread(cluster.kill_master, master)
        assert await _until_promoted(cluster, replica, enqueue_next), (
            "no enqueue failed while its master was down"
        )
        await eventually(enqueue_next, RECOVERY_S, 0.05, "an enqueue acknowledged after the promotion")
        for _ in range(ALONE_AFTER):
            assert await enqueue_next(), refusals[-3:]

        for payload, job_id in acked.items():
            job = await producer.get(job_id)
            assert (job.status, job.payload) == (JobStatus.PENDING, payload.encode()), job
        # Once each: no retry stored a second job.
        pending = await producer.store.redis.hget(keyspace.queue(job_type).stats, "pending")
        assert pending == str(len(acked)).encode()
    print(f"{len(acked)} acknowledged, refusals: {sorted(set(refusals))}")


async def test_the_replica_acks_pipeline_alone_finds_the_promoted_replica(cluster: LocalCluster) -> None:
    """The Producer above is helped by its other reads: its partition counts, read every
    2 s through redis-py's own routing, meet CLUSTERDOWN while the killed master's slots
    are uncovered, and redis-py then reads the whole map again. Here the replica
    acks' pipeline (`pipeline_on_slot_master`, a write and its WAIT) is the only user of
    its client: once the replica is promoted, it succeeds again within RECOVERY_S only
    because its own failures had the slot map read again (`SlotMap`)."""
    key = "{alone}:count"
    master = cluster.owner_of(key)
    client = cast("RedisCluster", connect(cluster.url, cluster=True))  # typed as Redis by connect
    replies: list[object] = []
    try:

        async def write_and_wait() -> bool:
            try:
                written, _acked = await pipeline_on_slot_master(
                    client, [key], [("INCR", key), ("WAIT", 1, 1000)]
                )
            except REDIS_DOWN:
                return False
            replies.append(written)
            return not isinstance(written, REDIS_DOWN)  # CLUSTERDOWN comes as a reply

        assert await write_and_wait()
        replica = await asyncio.to_thread(cluster.kill_master, master)
        assert await _until_promoted(cluster, replica, write_and_wait), (
            "no write failed while its master was down"
        )
        await eventually(write_and_wait, RECOVERY_S, 0.05, "a write acknowledged after the promotion")
        assert replies[-1] == int(await client.get(key))  # on the promoted replica
    finally:
        await client.aclose()
