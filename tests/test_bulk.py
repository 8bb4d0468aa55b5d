"""The bulk calls (RetryJobs, CancelJobs, DeleteJobs): bounded per call, resumable,
counting only what they changed; in the store, and through grpcurl, HTTP+JSON and
the Python client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.errors import InvalidInput, JobNotFound
from jobqueue.model import EnqueueRequest, JobOptions, JobStatus
from jobqueue.selection import BulkOutcome, JobFilter
from jobqueue.settings import Settings

from .harness import Harness
from .test_api import SERVICE, assert_clean, finish, grpcurl, grpcurl_json, new_type, post_json
from .test_list_jobs import harness

pytestmark = pytest.mark.redis_targets

Call = Callable[[JobFilter, int, str], Awaitable[BulkOutcome]]


async def until_done(call: Call, job_filter: JobFilter, limit: int) -> list[int]:
    """Calls again with each token until none comes back: the count of each call."""
    counts: list[int] = []
    token = ""
    for _ in range(100):
        outcome = await call(job_filter, limit, token)
        counts.append(outcome.count)
        token = outcome.next_page_token
        if not token:
            return counts
    pytest.fail("no end after 100 calls")


async def failed_jobs(store: Harness, job_type: str, n: int) -> list[str]:
    ids = [job.id for job in await store.enqueue_many([EnqueueRequest(job_type) for _ in range(n)])]
    for job_id in ids:  # the ready list pops oldest first: in this order
        await finish(store, store.settings.redis_url, job_type, job_id, JobStatus.FAILED)
    return ids


async def statuses(store: Harness, ids: list[str]) -> set[JobStatus]:
    return {(await store.get(job_id)).status for job_id in ids}


async def test_retry_jobs_redrives_dead_letters_a_limit_at_a_time(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    ids = await failed_jobs(store, "r", 5)
    dead = JobFilter(type="r", status=JobStatus.FAILED)
    assert await until_done(store.producer.retry_jobs, dead, 2) == [2, 2, 1]
    assert await statuses(store, ids) == {JobStatus.PENDING}
    assert (await store.get(ids[0])).attempt == 0
    assert await until_done(store.producer.retry_jobs, dead, 2) == [0]  # nothing left


async def test_cancel_jobs_counts_only_what_it_cancelled(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    ids = [job.id for job in await store.enqueue_many([EnqueueRequest("c") for _ in range(7)])]
    await store.cancel(ids[3])  # by another call first
    assert await until_done(store.producer.cancel_jobs, JobFilter(type="c"), 3) == [3, 3]
    assert await statuses(store, ids) == {JobStatus.CANCELLED}
    other = await store.enqueue("c-other")
    assert (await store.get(other.id)).status is JobStatus.PENDING  # another type: untouched


async def test_delete_jobs_removes_finished_jobs_and_frees_their_keys(
    redis: Redis, settings: Settings
) -> None:
    store = harness(redis, settings)
    failed = await failed_jobs(store, "d", 2)
    keyed = await store.enqueue("d", b"", None, JobOptions(idempotency_key="once"))
    pending = await store.enqueue("d")
    await store.cancel(keyed.id)
    ids = [keyed.id, *failed]
    assert await until_done(
        store.producer.delete_jobs, JobFilter(type="d", status=JobStatus.CANCELLED), 10
    ) == [1]
    assert await until_done(store.producer.delete_jobs, JobFilter(type="d", status=JobStatus.FAILED), 10) == [
        2
    ]
    for job_id in ids:
        with pytest.raises(JobNotFound):
            await store.get(job_id)
    queue = store.keys.queue("d")
    assert await redis.zcard(queue.cancelled) == 0 and await redis.zcard(queue.failed) == 0
    again = await store.enqueue("d", b"", None, JobOptions(idempotency_key="once"))
    assert again.id != keyed.id  # the key is free at once
    assert (await store.get(pending.id)).status is JobStatus.PENDING


async def test_delete_refuses_a_job_that_is_not_finished(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    job = await store.enqueue("n")
    assert not (await store.transitions.delete(job.id)).ok
    assert (await store.get(job.id)).status is JobStatus.PENDING


@pytest.mark.parametrize(
    ("call", "status"),
    [
        ("retry_jobs", JobStatus.UNSPECIFIED),
        ("retry_jobs", JobStatus.COMPLETED),
        ("cancel_jobs", JobStatus.FAILED),
        ("delete_jobs", JobStatus.UNSPECIFIED),
        ("delete_jobs", JobStatus.PENDING),
    ],
)
async def test_a_status_the_call_cannot_act_on_is_refused(
    redis: Redis, settings: Settings, call: str, status: JobStatus
) -> None:
    store = harness(redis, settings)
    await failed_jobs(store, "x", 1)
    job = await store.enqueue("x")
    before = {k: await redis.type(k) for k in await redis.keys(f"{store.settings.prefix}:*")}
    with pytest.raises(InvalidInput) as refused:
        await getattr(store.producer, call)(JobFilter(type="x", status=status), 10, "")
    assert refused.value.field == "filter.status"
    assert (await store.get(job.id)).status is JobStatus.PENDING
    assert {k: await redis.type(k) for k in await redis.keys(f"{store.settings.prefix}:*")} == before


# -- the API --------------------------------------------------------------------------------


async def test_grpcurl_retry_jobs(server_url: str, store: Harness) -> None:
    job_type = new_type()
    ids = await failed_jobs(store, job_type, 3)
    request = {"filter": {"type": job_type, "status": "JOB_STATUS_FAILED"}, "limit": 2}
    first = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/RetryJobs", data=request))
    assert first["count"] == 2 and first["nextPageToken"]
    request["page_token"] = first["nextPageToken"]
    second = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/RetryJobs", data=request))
    assert second == {"count": 1}
    assert await statuses(store, ids) == {JobStatus.PENDING}


async def test_http_json_cancel_jobs(server_url: str, store: Harness) -> None:
    job_type = new_type()
    ids = [
        job.id
        for job in await store.enqueue_many([EnqueueRequest(job_type, execution_time_ms=4102444800000)] * 3)
    ]
    reply = await post_json(server_url, "CancelJobs", json.dumps({"filter": {"type": job_type}}))
    assert reply.status == 200 and reply.json() == {"count": 3}, reply
    assert await statuses(store, ids) == {JobStatus.CANCELLED}


async def test_python_client_delete_jobs(server_url: str, store: Harness) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        jobs = [await client.enqueue(job_type, payload) for payload in ("a", "b")]
        for job in jobs:
            await client.cancel(job.id)
        done = await client.delete_jobs(JobFilter(type=job_type, status=JobStatus.CANCELLED), limit=1)
        assert done.count == 1 and done.next_page_token
        rest = await client.delete_jobs(
            JobFilter(type=job_type, status=JobStatus.CANCELLED), 1, done.next_page_token
        )
        assert rest.count == 1
    for job in jobs:
        with pytest.raises(JobNotFound):
            await store.get(job.id)


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("RetryJobs", {"filter": {"status": "JOB_STATUS_PENDING"}}, "filter.status"),
        ("CancelJobs", {"filter": {"status": "JOB_STATUS_COMPLETED"}}, "filter.status"),
        ("DeleteJobs", {}, "filter.status"),
        ("DeleteJobs", {"filter": {"status": "JOB_STATUS_FAILED"}, "limit": 1001}, "limit"),
        ("CancelJobs", {"limit": -5}, "limit"),
        ("CancelJobs", {"pageToken": "%%%"}, "page_token"),
        ("RetryJobs", {"filter": {"type": "no such/type", "status": "JOB_STATUS_FAILED"}}, "filter.type"),
    ],
)
async def test_bulk_bad_input_is_invalid_argument(
    server_url: str, method: str, body: dict[str, object], field: str
) -> None:
    reply = await post_json(server_url, method, json.dumps(body))
    assert reply.status == 400, reply
    assert reply.json()["code"] == "invalid_argument"
    assert reply.json()["message"].startswith(f"{field}: "), reply.json()
    assert_clean(reply.json()["message"])
