"""Prometheus metrics: the server's GET /metrics and the workers' metrics port,
scraped over HTTP (curl) and parsed with prometheus_client's parser; every value
asserted follows from what the test did."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from jobqueue.auth.tokens import file_line, new_token
from jobqueue.client import Client
from jobqueue.events import Event
from jobqueue.model import Job, JobStatus
from jobqueue.ports import AddressInUse, port_free
from jobqueue.redis_server import free_port
from jobqueue.settings import Settings
from jobqueue.worker import PermanentError, RetryAfter, Worker

from .conftest import ROOT, eventually, jobqueue_server, status_is
from .harness import Harness
from .test_api import curl, grpcurl, grpcurl_json
from .test_worker import make_worker, outliving_its_lease, running, take_over

SERVICE = "mpataki.jobqueue.v1.JobService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A `jobqueue server` on a key prefix of its own (its reaper quick), and a store on it."""

    url: str
    settings: Settings
    store: Harness


@pytest.fixture(scope="module")
def deployment_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    prefix = f"metrics-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("metrics-server") / "server.log"
    env = {"JOBQUEUE_PREFIX": prefix, "JOBQUEUE_REAPER_INTERVAL_S": "0.2", "JOBQUEUE_RESTART_GRACE_S": "0"}
    with jobqueue_server(redis_url, log, **env) as url:
        yield url, prefix


@pytest.fixture
def deployment(deployment_server: tuple[str, str], redis: Redis, settings: Settings) -> Deployment:
    url, prefix = deployment_server
    settings = dataclasses.replace(settings, prefix=prefix)
    return Deployment(url, settings, Harness(redis, settings))


async def scrape(url: str, *curl_args: str) -> Samples:
    """GET url; its samples by name and labels."""
    reply = await curl(*curl_args, url)
    assert reply.status == 200, reply
    assert reply.headers["content-type"].startswith("text/plain; version="), reply.headers
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one not exposed (a counter that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def unique_type(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def enqueue_json(server_url: str, job_type: str, payload: str, **fields: object) -> str:
    """EnqueueJob in the Connect protocol (JSON over HTTP/1.1, curl); the job's id."""
    body = {"type": job_type, "payload": base64.b64encode(payload.encode()).decode(), **fields}
    reply = await curl(
        "-X", "POST", "-H", "content-type: application/json", "--data-binary", json.dumps(body),
        f"{server_url}/{SERVICE}/EnqueueJob",
    )  # fmt: skip
    assert reply.status == 200, reply
    job_id: str = reply.json()["job"]["id"]
    return job_id


async def by_payload(job: Job) -> None:
    """ok: returns; permanent: fails for good; flaky: fails its first attempt."""
    if job.payload == b"permanent":
        raise PermanentError("not this one")
    if job.payload == b"flaky" and job.attempt == 1:
        raise RetryAfter(0.05)


async def test_server_and_worker_metrics_follow_what_happened(deployment: Deployment) -> None:
    """Enqueues through curl and the Python client, runs the jobs with a worker that
    serves its metrics (some fail, to dead letters; one is retried), lets the server's
    reaper take back an expired lease, makes RPCs fail with their codes, then reads
    both expositions."""
    url, store = deployment.url, deployment.store
    ran, idle = unique_type("ran"), unique_type("idle")
    payloads = ("ok", "ok", "ok", "permanent", "permanent", "flaky")
    ids = [await enqueue_json(url, ran, payload) for payload in payloads]
    for _ in range(2):  # the second is the first again (idempotency): not a new job
        await enqueue_json(url, ran, "ok", idempotencyKey="once")
    async with Client(url) as client:
        held = await client.enqueue(idle, b"")
        with pytest.raises(ConnectError) as refused:
            await client.enqueue("", b"")
        assert refused.value.code is Code.INVALID_ARGUMENT
    assert (await curl("-X", "POST", "-H", "content-type: application/json", "--data-binary", '{"id": "x"}',
                       f"{url}/{SERVICE}/GetJob")).status == 400  # fmt: skip
    missing = await grpcurl(url, f"{SERVICE}/GetJob", data={"id": str(uuid.uuid4())})
    assert "NotFound" in missing.err, missing
    assert grpcurl_json(await grpcurl(url, f"{SERVICE}/GetQueueStats", data={"type": ran}))

    metrics_port = free_port()
    worker = Worker(
        ran, by_payload, settings=deployment.settings, run_reaper=False, metrics_port=metrics_port
    )
    async with running(worker):

        async def all_finished() -> bool:
            report = await store.store.stats.read(ran)
            return (report.queues[0].completed, report.queues[0].failed) == (5, 2)

        await eventually(all_finished, what="the jobs run to their end")
        # The expired lease of a holder that never heartbeated (not a worker that died).
        popping = store.own_connection()
        try:
            assert await store.pop(popping, idle, timeout_s=10) == held.id
        finally:
            await popping.aclose()
        await store.claimed(idle, held.id, "gone", lease_ms=1, default_max_attempts=3)
        async with Client(url) as client:
            await client.pause(idle)  # the reaper recovers all the same

        async def recovered() -> Samples | None:
            samples = await scrape(f"{url}/metrics")
            lease_expired = value(samples, "jobqueue_jobs_recovered_total", type=idle, reason="lease_expiry")
            # The queue's counts are read again once the last read is a second old.
            back_in_line = value(samples, "jobqueue_queue_jobs", type=idle, state="ready")
            if (lease_expired, back_in_line) == (1, 1):
                return samples
            return None

        async with Client(url) as client:  # a stream, counted as it ends: after the job's end
            watched = [event async for event in await client.watch_job(ids[0])]
            assert watched[-1].status is JobStatus.COMPLETED
            with pytest.raises(ConnectError) as unknown:
                async for _ in await client.watch_job(str(uuid.uuid4())):
                    pass
            assert unknown.value.code is Code.NOT_FOUND
        server = await eventually(recovered, what="the server's reaper recovers the lease")
        worker_samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")

    assert value(server, "jobqueue_jobs_enqueued_total", type=ran) == 7
    assert value(server, "jobqueue_jobs_enqueued_total", type=idle) == 1
    assert value(server, "jobqueue_jobs_recovered_total", type=idle, reason="worker_death") == 0
    for state, count in {"completed": 5, "failed": 2, "ready": 0, "running": 0, "scheduled": 0}.items():
        assert value(server, "jobqueue_queue_jobs", type=ran, state=state) == count, state
    assert value(server, "jobqueue_queue_paused", type=idle) == 1
    assert value(server, "jobqueue_queue_paused", type=ran) == 0

    def rpcs(method: str, code: str) -> float:
        return value(server, "jobqueue_rpcs_total", service=SERVICE, method=method, code=code)

    assert rpcs("EnqueueJob", "ok") == 9
    assert rpcs("EnqueueJob", "invalid_argument") == 1
    assert rpcs("GetJob", "invalid_argument") == 1
    assert rpcs("GetJob", "not_found") == 1
    assert rpcs("PauseQueue", "ok") == 1
    assert rpcs("GetQueueStats", "ok") == 1
    assert rpcs("WatchJob", "ok") == 1
    assert rpcs("WatchJob", "not_found") == 1
    duration = "jobqueue_rpc_duration_seconds_count"
    assert value(server, duration, service=SERVICE, method="EnqueueJob") == 10
    assert value(server, duration, service=SERVICE, method="GetJob") == 2

    # The worker: 7 jobs, one of them twice (retried after its first attempt).
    expected = {"started": 8, "completed": 5, "failed": 3, "retried": 1, "dead_lettered": 2}
    for what, count in expected.items():
        assert value(worker_samples, f"jobqueue_jobs_{what}_total", type=ran) == count, what
    assert value(worker_samples, "jobqueue_stale_results_total", type=ran) == 0
    for histogram in ("jobqueue_job_handler_duration_seconds", "jobqueue_job_wait_seconds"):
        assert value(worker_samples, f"{histogram}_count", type=ran) == 8, histogram
        assert value(worker_samples, f"{histogram}_bucket", type=ran, le="+Inf") == 8, histogram
    # What the server's producer and reaper saw is not the worker's, nor the other way round.
    assert value(worker_samples, "jobqueue_jobs_enqueued_total", type=ran) == 0
    assert value(server, "jobqueue_jobs_started_total", type=ran) == 0


async def test_a_refused_stale_result_is_counted(private_store: Harness) -> None:
    """A handler that outlives its lease cannot record its result: the worker counts it."""
    store = private_store
    started, taken_over = asyncio.Event(), asyncio.Event()
    port = free_port()
    handler = outliving_its_lease(started, taken_over)
    worker = make_worker(store.settings, handler, run_reaper=False, concurrency=1, metrics_port=port)
    async with running(worker):
        job = await store.enqueue("t", b"")
        await asyncio.wait_for(started.wait(), 10)
        await take_over(store, job)
        taken_over.set()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="its second attempt")

        async def counted() -> bool:
            return worker.stats[Event.COMPLETED] == 1

        await eventually(counted, what="the completion reported")
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert worker.stats[Event.STALE_RESULT] == 1
    assert value(samples, "jobqueue_stale_results_total", type="t") == 1
    assert value(samples, "jobqueue_jobs_started_total", type="t") == 2
    assert value(samples, "jobqueue_jobs_completed_total", type="t") == 1


async def test_workers_of_one_process_share_a_port_until_the_last_stops(private_store: Harness) -> None:
    store = private_store

    async def done(job: Job) -> None:
        return None

    port = free_port()
    first, second = (
        Worker(name, done, settings=store.settings, metrics_port=port) for name in ("first", "second")
    )
    async with running(first):
        async with running(second):
            jobs = [await store.enqueue(name, b"") for name in ("first", "second", "second")]
            for job in jobs:
                await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="the jobs")

            async def both_counted() -> bool:
                samples = await scrape(f"http://127.0.0.1:{port}/metrics")
                counts = [
                    value(samples, "jobqueue_jobs_completed_total", type=t) for t in ("first", "second")
                ]
                return counts == [1, 2]

            await eventually(both_counted, what="both workers' completions on one port")
        assert not port_free("127.0.0.1", port)  # a worker of the process still serves on it
        await scrape(f"http://127.0.0.1:{port}/metrics")
    assert port_free("127.0.0.1", port)  # closed with the last of them


async def test_a_metrics_port_in_use_is_named(private_store: Harness) -> None:
    async def done(job: Job) -> None:
        return None

    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        worker = Worker("t", done, settings=private_store.settings, metrics_port=port)
        with pytest.raises(AddressInUse, match=f"metrics port {port} on 127.0.0.1 is in use"):
            await worker.serve(asyncio.Event())
    finally:
        taken.close()
        await taken.wait_closed()
    with pytest.raises(ValueError, match="metrics_port must be a TCP port"):
        Worker("t", done, metrics_port=0)


NAPPER = """
import asyncio
from jobqueue.worker import Worker

async def nap(job):
    await asyncio.sleep(float(job.payload or b"0"))

# A long lease and a short liveness: a killed worker's job comes back through liveness.
worker = Worker("napper", nap, lease_s=30.0, liveness_s=1.0, heartbeat_s=0.2)
"""


async def test_the_cli_worker_serves_its_metrics_and_a_killed_one_is_recovered(
    deployment: Deployment, redis_url: str, tmp_path: Path
) -> None:
    """`jobqueue worker --metrics-port`: its jobs counted; killed while it runs one,
    the server's reaper takes that job back (reason worker_death)."""
    store, port = deployment.store, free_port()
    app = tmp_path / "napper.py"
    app.write_text(NAPPER)
    env = {**os.environ, "JOBQUEUE_REDIS_URL": redis_url, "JOBQUEUE_PREFIX": deployment.settings.prefix}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobqueue.cli", "worker", str(app), "--metrics-port", str(port),
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        quick = [await store.enqueue("napper", b"0") for _ in range(3)]
        for job in quick:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what="the quick jobs")

        async def counted() -> Samples | None:
            samples = await scrape(f"http://127.0.0.1:{port}/metrics")
            return samples if value(samples, "jobqueue_jobs_completed_total", type="napper") == 3 else None

        samples = await eventually(counted, what="the worker's completions")
        assert value(samples, "jobqueue_jobs_started_total", type="napper") == 3
        assert value(samples, "jobqueue_job_handler_duration_seconds_count", type="napper") == 3
        long = await store.enqueue("napper", b"60")
        await eventually(status_is(store, long.id, JobStatus.RUNNING), what="the long job running")
    finally:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)

    async def recovered() -> bool:
        samples = await scrape(f"{deployment.url}/metrics")
        return value(samples, "jobqueue_jobs_recovered_total", type="napper", reason="worker_death") == 1

    await eventually(recovered, timeout=30, what="the server's reaper recovers the dead worker's job")
    assert (await store.get(long.id)).status is JobStatus.PENDING, log.read_text()


async def test_metrics_answer_get_only(server_url: str) -> None:
    refused = await curl("-X", "POST", f"{server_url}/metrics")
    assert (refused.status, refused.headers["allow"]) == (405, "GET, HEAD")
    assert (await curl(f"{server_url}/metrics/more")).status == 404
    head = await curl("-I", f"{server_url}/metrics")
    assert head.status == 200


@pytest.mark.skipif(shutil.which("h2corn") is None and not Path(sys.executable).with_name("h2corn").exists(),
                    reason="h2corn is not installed")  # fmt: skip
async def test_h2corn_serves_the_metrics_of_its_one_process(redis_url: str, tmp_path: Path) -> None:
    with jobqueue_server(redis_url, tmp_path / "server.log", server="h2corn") as url:
        async with Client(url) as client:
            with pytest.raises(ConnectError):
                await client.get(str(uuid.uuid4()))
        samples = await scrape(f"{url}/metrics")
    assert value(samples, "jobqueue_rpcs_total", service=SERVICE, method="GetJob", code="not_found") == 1


async def test_with_auth_refused_calls_are_counted_and_a_scrape_needs_a_token(
    redis_url: str, tmp_path: Path
) -> None:
    reader = new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(file_line("reader", reader) + "\n")
    prefix = f"metrics-auth-{uuid.uuid4().hex[:6]}"
    env = {"JOBQUEUE_AUTH_TOKENS_FILE": str(tokens), "JOBQUEUE_PREFIX": prefix}
    with jobqueue_server(redis_url, tmp_path / "server.log", **env) as url:
        for credentials in ([], ["-H", f"Authorization: Bearer {reader}"]):  # none; a role without it
            refused = await curl(
                "-X", "POST", "-H", "content-type: application/json", *credentials, "--data-binary",
                '{"type": "t"}', f"{url}/{SERVICE}/EnqueueJob",
            )  # fmt: skip
            assert refused.status in (401, 403), refused
        assert (await curl(f"{url}/metrics")).status == 401
        samples = await scrape(f"{url}/metrics", "-H", f"Authorization: Bearer {reader}")
    for code in ("unauthenticated", "permission_denied"):
        refusals = value(samples, "jobqueue_rpcs_total", service=SERVICE, method="EnqueueJob", code=code)
        assert refusals == 1, code
    assert value(samples, "jobqueue_jobs_enqueued_total", type="t") == 0
