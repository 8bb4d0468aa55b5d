"""Results through the API and WaitJob: grpcurl, HTTP + JSON (Connect), the Python
clients and the CLI, against the suite's shared server."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jobqueue.cli import ExitCode
from jobqueue.client import Client, SyncClient, WaitTimeout
from jobqueue.model import JobStatus

from .conftest import clients, eventually, jobqueue_server_process
from .harness import Harness
from .test_api import (
    SERVICE,
    b64,
    claim,
    finish,
    grpcurl,
    grpcurl_json,
    host_port,
    new_type,
    post_json,
    run,
    tool,
)
from .test_api_errors import HTTP_STATUS, UNKNOWN_ID
from .test_cli import jobqueue, one_line_error, view_rows

pytestmark = pytest.mark.redis_targets

RESULT = b"the answer \x00\xff"


async def completed_with(store: Harness, redis_url: str, result: bytes) -> str:
    """A new job, run to COMPLETED with `result` the way a worker records it."""
    job_type = new_type()
    queued = await store.enqueue(job_type, b"question")
    job = await claim(store, redis_url, job_type, queued.id)
    job.result = result
    assert (await store.complete(job)).outcome.name == "OK"
    return queued.id


async def test_get_job_returns_the_result_to_grpcurl_and_json(
    store: Harness, redis_url: str, server_url: str
) -> None:
    job_id = await completed_with(store, redis_url, RESULT)
    by_grpc = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetJob", data={"id": job_id}))["job"]
    by_json = (await post_json(server_url, "GetJob", json.dumps({"id": job_id}))).json()["job"]
    assert by_grpc["result"] == by_json["result"] == b64(RESULT)
    assert by_json["status"] == "JOB_STATUS_COMPLETED"


async def test_list_jobs_returns_results_with_payloads_only(
    store: Harness, redis_url: str, server_url: str
) -> None:
    job_id = await completed_with(store, redis_url, RESULT)
    job_type = (await store.get(job_id)).type
    query = {"filter": {"type": job_type, "status": "JOB_STATUS_COMPLETED"}}
    [bare] = (await post_json(server_url, "ListJobs", json.dumps(query))).json()["jobs"]
    [full] = (await post_json(server_url, "ListJobs", json.dumps(query | {"withPayloads": True}))).json()[
        "jobs"
    ]
    assert "result" not in bare and "payload" not in bare
    assert (full["result"], full["payload"]) == (b64(RESULT), b64(b"question"))


async def xread_waiters(redis: Redis) -> int:
    """Connections blocked in XREAD: an events hub's reader among them."""
    return sum(1 for c in await clients(redis) if c["cmd"] == "xread" and "b" in c["flags"])


async def test_wait_job_answers_when_the_job_finishes(
    store: Harness, redis: Redis, redis_url: str, server_url: str
) -> None:
    """The wait follows the job's events: it answers at the completion, well before its
    timeout (60 s here; the test gives it 30 s in all)."""
    job_type = new_type()
    queued = await store.enqueue(job_type, b"")
    job = await claim(store, redis_url, job_type, queued.id)
    before = await xread_waiters(redis)
    request = json.dumps({"id": job.id, "timeoutMs": 60_000})
    grpcurl_wait = [tool("grpcurl"), "-plaintext", "-max-time", "90", "-d", request, host_port(server_url)]
    waiting = asyncio.create_task(run(*grpcurl_wait, f"{SERVICE}/WaitJob", limit_s=90))

    async def hub_reading() -> bool:
        return await xread_waiters(redis) > before

    await eventually(hub_reading, what="the wait's events reader")  # the wait has begun
    assert not waiting.done()
    job.result = RESULT
    assert (await store.complete(job)).outcome.name == "OK"
    reply = grpcurl_json(await asyncio.wait_for(waiting, 30))
    assert reply["done"] is True
    assert (reply["job"]["status"], reply["job"]["result"]) == ("JOB_STATUS_COMPLETED", b64(RESULT))


async def test_the_python_clients_wait_for_a_failure_too(
    store: Harness, redis: Redis, redis_url: str, server_url: str
) -> None:
    job_type = new_type()
    queued = await store.enqueue(job_type, b"")
    before = await xread_waiters(redis)
    async with Client(server_url) as client:
        waiting = asyncio.create_task(client.wait(queued.id, timeout_s=60))

        async def hub_reading() -> bool:
            return await xread_waiters(redis) > before

        await eventually(hub_reading, what="the wait's events reader")
        await finish(store, redis_url, job_type, queued.id, JobStatus.FAILED)
        failed = await asyncio.wait_for(waiting, 30)
    assert (failed.status, failed.last_error, failed.result) == (JobStatus.FAILED, "boom", b"")
    with SyncClient(server_url) as sync:
        assert sync.wait(queued.id, timeout_s=0).status is JobStatus.FAILED  # final: no wait at all


async def test_a_wait_that_times_out_returns_the_current_state(store: Harness, server_url: str) -> None:
    pending = await store.enqueue(new_type(), b"")
    by_grpc = grpcurl_json(
        await grpcurl(server_url, f"{SERVICE}/WaitJob", data={"id": pending.id, "timeoutMs": 200})
    )
    by_json = (
        await post_json(server_url, "WaitJob", json.dumps({"id": pending.id, "timeoutMs": 200}))
    ).json()
    for reply in (by_grpc, by_json):
        assert "done" not in reply  # false: the default, not sent
        assert reply["job"]["status"] == "JOB_STATUS_PENDING"
    at_once = (await post_json(server_url, "WaitJob", json.dumps({"id": pending.id}))).json()
    assert at_once["job"]["id"] == pending.id and "done" not in at_once
    with (
        SyncClient(server_url) as client,
        pytest.raises(WaitTimeout, match=r"still PENDING after 0.2 s") as timed_out,
    ):
        client.wait(pending.id, timeout_s=0.2)
    assert timed_out.value.job.status is JobStatus.PENDING
    async with Client(server_url) as client:
        with pytest.raises(WaitTimeout):
            await client.wait(pending.id, timeout_s=0.1)
        with pytest.raises(ValueError, match="timeout_s must be >= 0"):
            await client.wait(pending.id, timeout_s=-1)


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"id": UNKNOWN_ID, "timeoutMs": 1000}, "not_found", UNKNOWN_ID),
        ({"id": "nope", "timeoutMs": 1000}, "invalid_argument", "id:"),
        ({"id": UNKNOWN_ID, "timeoutMs": -1}, "invalid_argument", "timeout_ms: must be from 0"),
        (
            {"id": UNKNOWN_ID, "timeoutMs": 60_001},
            "invalid_argument",
            "timeout_ms: must be from 0 (answer at once) to 60000 ms, got 60001",
        ),
    ],
)
async def test_wait_job_refusals(server_url: str, body: dict[str, object], code: str, names: str) -> None:
    reply = await post_json(server_url, "WaitJob", json.dumps(body))
    assert reply.status == HTTP_STATUS[code], reply
    assert reply.json()["code"] == code and names in reply.json()["message"], reply
    ran = await grpcurl(server_url, f"{SERVICE}/WaitJob", data=body)
    assert ran.code != 0 and names in ran.err, ran


async def test_the_cli_waits_and_prints_the_result(store: Harness, redis_url: str, server_url: str) -> None:
    job_id = await completed_with(store, redis_url, b"forty-two")
    shown = await asyncio.to_thread(jobqueue, "wait", job_id, "--url", server_url)
    assert shown.returncode == ExitCode.OK, shown
    assert view_rows(shown.stdout)["result"] == "forty-two"
    raw = await asyncio.to_thread(jobqueue, "wait", job_id, "--result", "--url", server_url)
    assert (raw.returncode, raw.stdout) == (ExitCode.OK, "forty-two")
    as_json = json.loads(
        (await asyncio.to_thread(jobqueue, "wait", job_id, "--json", "--url", server_url)).stdout
    )
    assert base64.b64decode(as_json["result"]) == b"forty-two"


async def test_the_cli_exits_5_for_a_failed_job_and_4_on_timeout(
    store: Harness, redis_url: str, server_url: str
) -> None:
    job_type = new_type()
    failed = await store.enqueue(job_type, b"")
    await finish(store, redis_url, job_type, failed.id, JobStatus.FAILED)
    shown = await asyncio.to_thread(jobqueue, "wait", failed.id, "--url", server_url)
    assert shown.returncode == ExitCode.NOT_COMPLETED and view_rows(shown.stdout)["status"] == "FAILED"
    raw = await asyncio.to_thread(jobqueue, "wait", failed.id, "--result", "--url", server_url)
    assert one_line_error(raw, ExitCode.NOT_COMPLETED) == f"jobqueue: job {failed.id} ended FAILED: boom"
    pending = await store.enqueue(new_type(), b"")
    late = await asyncio.to_thread(jobqueue, "wait", pending.id, "--timeout", "300ms", "--url", server_url)
    assert one_line_error(late, ExitCode.UNREACHABLE) == (
        f"jobqueue: job {pending.id} is still PENDING after 0.3 s (--timeout sets the wait)"
    )
    missing = await asyncio.to_thread(jobqueue, "wait", UNKNOWN_ID, "--url", server_url)
    assert one_line_error(missing, ExitCode.REFUSED).startswith("jobqueue: not_found: ")


async def test_a_server_shutting_down_answers_its_waits_at_once(
    store: Harness, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """A wait in flight answers the job as it is (done = false) when the server shuts
    down, rather than hold the shutdown up for its grace period."""
    pending = await store.enqueue(new_type(), b"")
    grace_s = 20.0
    log = tmp_path / "server.log"
    with jobqueue_server_process(redis_url, log, JOBQUEUE_SERVER_SHUTDOWN_GRACE_S=str(grace_s)) as (
        url,
        process,
    ):
        before = await xread_waiters(redis)
        with SyncClient(url) as client:
            waiting = asyncio.create_task(asyncio.to_thread(client.wait_once, pending.id, 60_000))

            async def hub_reading() -> bool:
                return await xread_waiters(redis) > before

            await eventually(hub_reading, what="the wait's events reader")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            job, done = await asyncio.wait_for(waiting, grace_s)
            code = await asyncio.to_thread(process.wait, grace_s + 10)
            took_s = time.monotonic() - started
    assert (job.status, done) == (JobStatus.PENDING, False)
    assert code == 0 and took_s < grace_s, took_s
