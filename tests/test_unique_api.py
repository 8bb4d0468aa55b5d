"""Unique keys through the API server: grpcurl, HTTP + JSON (curl) and the Python client.
The store's side of each mode is in test_unique.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from jobqueue.cli.exits import ExitCode
from jobqueue.client import Client
from jobqueue.model import Enqueued, EnqueueRequest, JobOptions, JobStatus, UniqueMode, partition_of_type

from .harness import Harness
from .test_api import assert_clean, b64, finish, grpcurl, grpcurl_json, new_type, post_json
from .test_cli import jobqueue, one_line_error, view_rows

ENQUEUE = "mpataki.jobqueue.v1.JobService/EnqueueJob"


async def test_grpcurl_while_active_returns_the_active_job_until_it_is_final(
    server_url: str, store: Harness, redis_url: str
) -> None:
    job_type = new_type()
    request = {"type": job_type, "uniqueKey": "nightly", "uniqueMode": "UNIQUE_MODE_WHILE_ACTIVE"}
    first = grpcurl_json(await grpcurl(server_url, ENQUEUE, data=request))
    assert "existing" not in first and "debounced" not in first  # false: omitted
    assert (first["job"]["uniqueKey"], first["job"]["uniqueMode"]) == ("nightly", "UNIQUE_MODE_WHILE_ACTIVE")
    again = grpcurl_json(await grpcurl(server_url, ENQUEUE, data=request))
    assert (again["job"]["id"], again.get("existing")) == (first["job"]["id"], True)
    await finish(store, redis_url, job_type, first["job"]["id"], JobStatus.COMPLETED)
    after = grpcurl_json(await grpcurl(server_url, ENQUEUE, data=request))
    assert after["job"]["id"] != first["job"]["id"] and "existing" not in after


async def test_curl_debounce_replaces_the_pending_payload_and_moves_its_time(server_url: str) -> None:
    job_type = new_type()

    def body(payload: bytes) -> str:
        return json.dumps({
            "type": job_type, "payload": b64(payload), "uniqueKey": "user:7",
            "uniqueMode": "UNIQUE_MODE_DEBOUNCE", "debounceMs": "60000",
        })  # fmt: skip

    first = (await post_json(server_url, "EnqueueJob", body(b"v1"))).json()
    second = (await post_json(server_url, "EnqueueJob", body(b"v2"))).json()
    assert second["job"]["id"] == first["job"]["id"]
    assert second["debounced"] is True and "existing" not in second
    assert int(second["job"]["executionTimeMs"]) >= int(first["job"]["executionTimeMs"])
    stored = (await post_json(server_url, "GetJob", json.dumps({"id": first["job"]["id"]}))).json()["job"]
    assert (stored["payload"], stored["uniqueMode"]) == (b64(b"v2"), "UNIQUE_MODE_DEBOUNCE")


@pytest.mark.parametrize("mode", [UniqueMode.WHILE_ACTIVE, UniqueMode.DEBOUNCE])
async def test_racing_clients_and_one_batch_make_one_job(
    server_url: str, redis: Redis, mode: UniqueMode
) -> None:
    job_type = new_type()
    options = JobOptions(unique_key="race", unique_mode=mode)
    async with Client(server_url) as client:
        jobs = await asyncio.gather(*(client.enqueue(job_type, f"p{i}", options=options) for i in range(30)))
        assert len({job.id for job in jobs}) == 1
        assert sum(job.enqueued is Enqueued.CREATED for job in jobs) == 1
        batch = await client.enqueue_many([EnqueueRequest(job_type, b"", options=options) for _ in range(20)])
        assert {job.id for job in batch} == {jobs[0].id}
        stored = await client.get(jobs[0].id)
    assert (stored.unique_key, stored.unique_mode) == ("race", mode)
    live = f"jq:{{{partition_of_type(job_type)}}}:live:{job_type}"
    assert await redis.zcard(live) == 1


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"uniqueKey": "k"}, "unique_mode:"),
        ({"uniqueMode": "UNIQUE_MODE_DEBOUNCE"}, "unique_key:"),
        ({"uniqueKey": "k", "uniqueMode": 7}, "unique_mode:"),
        ({"uniqueKey": "k", "uniqueMode": "UNIQUE_MODE_SOMETIMES"}, "unique_mode"),
        ({"uniqueKey": "k", "uniqueMode": "UNIQUE_MODE_WHILE_ACTIVE", "debounceMs": "5"}, "debounce_ms:"),
    ],
)
async def test_bad_unique_options_are_invalid_argument_and_store_nothing(
    server_url: str, redis: Redis, fields: dict[str, object], names: str
) -> None:
    job_type = new_type()
    reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": job_type, **fields}))
    assert reply.status == 400, reply
    error = reply.json()
    assert error["code"] == "invalid_argument" and names in error["message"], error
    assert_clean(error["message"])
    batch = {"jobs": [{"type": job_type}, {"type": job_type, **fields}]}
    ran = await grpcurl(server_url, "mpataki.jobqueue.v1.JobService/EnqueueJobs", data=batch)
    if fields.get("uniqueMode") == "UNIQUE_MODE_SOMETIMES":  # grpcurl refuses the name itself
        assert ran.code != 0 and "UNIQUE_MODE_SOMETIMES" in ran.err, ran
    else:
        assert ran.code != 0 and "Code: InvalidArgument" in ran.err and f"jobs[1].{names}" in ran.err, ran
    assert await redis.keys(f"jq:{{{partition_of_type(job_type)}}}:*{job_type}*") == []


def test_cli_enqueue_with_a_unique_key_in_each_mode(server_url: str) -> None:
    job_type = new_type()
    debounced = [
        "enqueue",
        job_type,
        "--unique-key",
        "k",
        "--unique",
        "debounce",
        "--in",
        "1h",
        "--url",
        server_url,
    ]
    first = view_rows(jobqueue(*debounced, "v1").stdout)
    assert first["unique key"] == "k (debounce)" and "enqueued" not in first
    second = view_rows(jobqueue(*debounced, "v2").stdout)
    assert (second["id"], second["payload"]) == (first["id"], "v2")
    assert second["enqueued"].startswith("no: this pending job has the same key")
    active = ["enqueue", job_type, "x", "--unique-key", "a", "--unique", "while-active", "--url", server_url]
    created = view_rows(jobqueue(*active).stdout)
    existing = view_rows(jobqueue(*active).stdout)
    assert existing["id"] == created["id"] and existing["enqueued"].startswith(
        "no: this job, enqueued before"
    )
    refused = jobqueue("enqueue", job_type, "--unique-key", "k", "--url", server_url)
    assert one_line_error(refused, ExitCode.REFUSED).startswith("jobqueue: invalid_argument: unique_mode: ")
    usage = jobqueue("enqueue", job_type, "--unique-key", "k", "--unique", "sometimes", "--url", server_url)
    assert usage.returncode == ExitCode.USAGE and "while-active" in usage.stderr
