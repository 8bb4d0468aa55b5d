"""The fault-tolerance fields and RPC over real clients: job options, idempotency keys, RetryJob."""

from __future__ import annotations

import asyncio
import json

from jobqueue.client import Client
from jobqueue.model import EnqueueRequest, JobOptions, JobStatus

from .harness import Harness
from .test_api import SERVICE, finish, grpcurl, grpcurl_json, new_type, post_json


async def test_options_round_trip_over_grpcurl(server_url: str) -> None:
    job_type = new_type()
    request = {
        "type": job_type,
        "max_attempts": 4,
        "timeout_ms": 2500,
        "backoff": {"base_ms": 10, "factor": 3, "cap_ms": 900},
        "idempotency_key": "order-1",
    }
    job = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/EnqueueJob", data=request))["job"]
    assert (job["maxAttempts"], job["timeoutMs"], job["idempotencyKey"]) == (4, "2500", "order-1")
    assert job["backoff"] == {"baseMs": "10", "factor": 3, "capMs": "900"}
    got = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetJob", data={"id": job["id"]}))["job"]
    assert got["backoff"] == job["backoff"] and got["maxAttempts"] == 4


async def test_concurrent_duplicate_enqueues_over_http_create_one_job(
    server_url: str, store: Harness
) -> None:
    job_type = new_type()
    body = json.dumps({"type": job_type, "idempotencyKey": "pay-7"})
    replies = await asyncio.gather(*(post_json(server_url, "EnqueueJob", body) for _ in range(12)))
    assert {r.status for r in replies} == {200}
    assert len({r.json()["job"]["id"] for r in replies}) == 1
    assert await store.redis.llen(store.keys.queue(job_type).ready) == 1


async def test_bad_options_name_their_field(server_url: str) -> None:
    for field, value in (("maxAttempts", 0), ("timeoutMs", "-5"), ("idempotencyKey", "k" * 300)):
        reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": "t", field: value}))
        assert reply.status == 400, reply
        error = reply.json()
        assert error["code"] == "invalid_argument"
        snake = {
            "maxAttempts": "max_attempts",
            "timeoutMs": "timeout_ms",
            "idempotencyKey": "idempotency_key",
        }
        assert error["message"].startswith(snake[field] + ":"), error
    reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": "t", "backoff": {"factor": 0.5}}))
    assert reply.status == 400 and reply.json()["message"].startswith("backoff:"), reply


async def test_retry_job_redrives_a_failed_job(server_url: str, store: Harness, redis_url: str) -> None:
    job_type = new_type()
    created = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/EnqueueJob", data={"type": job_type}))
    job_id = created["job"]["id"]
    refused = await grpcurl(server_url, f"{SERVICE}/RetryJob", data={"id": job_id})
    assert refused.code != 0 and "FailedPrecondition" in refused.err and "PENDING" in refused.err
    await finish(store, redis_url, job_type, job_id, JobStatus.FAILED)
    retried = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/RetryJob", data={"id": job_id}))["job"]
    assert retried["status"] == "JOB_STATUS_PENDING" and retried["lastError"] == "boom"
    assert "attempt" not in retried  # zero: omitted in JSON
    missing = await post_json(
        server_url, "RetryJob", json.dumps({"id": "00000000-0000-4000-8000-000000000000"})
    )
    assert missing.status == 404 and missing.json()["code"] == "not_found"


async def test_enqueue_jobs_over_http_and_the_sdk_client(server_url: str, store: Harness) -> None:
    job_type = new_type()
    body = {"jobs": [{"type": job_type, "payload": "aGk="}, {"type": job_type, "idempotencyKey": "x"}]}
    reply = await post_json(server_url, "EnqueueJobs", json.dumps(body))
    assert reply.status == 200, reply
    jobs = reply.json()["jobs"]
    assert [j["type"] for j in jobs] == [job_type, job_type] and "payload" not in jobs[0]
    assert (await store.get(jobs[0]["id"])).payload == b"hi"
    async with Client(server_url) as client:
        again = await client.enqueue_many(
            [
                EnqueueRequest(job_type, b"x", options=JobOptions(idempotency_key="x")),
                EnqueueRequest(job_type),
            ]
        )
    assert again[0].id == jobs[1]["id"] and again[1].id not in {j["id"] for j in jobs}
    assert await store.redis.llen(store.keys.queue(job_type).ready) == 3


async def test_enqueue_jobs_errors_name_the_job(server_url: str, store: Harness) -> None:
    job_type = new_type()
    body = {"jobs": [{"type": job_type}, {"type": "bad type"}]}
    reply = await post_json(server_url, "EnqueueJobs", json.dumps(body))
    assert reply.status == 400 and reply.json()["message"].startswith("jobs[1].type: "), reply
    assert await store.redis.llen(store.keys.queue(job_type).ready) == 0  # none stored
    too_many = json.dumps({"jobs": [{"type": job_type}] * 10_001})
    reply = await post_json(server_url, "EnqueueJobs", too_many)
    assert reply.status == 400 and "at most 10000" in reply.json()["message"], reply
