"""ListJobs: pages over the indexes, in the store and through grpcurl, HTTP+JSON and the
Python client; its filters, orders, tokens, expiry, and its bad input."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.errors import InvalidInput
from jobqueue.model import Backoff, EnqueueRequest, Job, JobOptions, JobStatus, UniqueMode
from jobqueue.selection import JobFilter, ListOrder, TimeField
from jobqueue.settings import Settings
from jobqueue.store import listing
from jobqueue.store.outcomes import OK

from .conftest import eventually
from .harness import Harness
from .test_api import SERVICE, assert_clean, b64, claim, finish, grpcurl, grpcurl_json, new_type, post_json

pytestmark = pytest.mark.redis_targets

NEWEST, OLDEST = ListOrder.NEWEST_FIRST, ListOrder.OLDEST_FIRST


def harness(redis: Redis, settings: Settings, **changes: Any) -> Harness:
    """A keyspace of the test's own (its `types` set holds only the test's types)."""
    return Harness(redis, dataclasses.replace(settings, prefix=f"list-{uuid.uuid4().hex[:8]}", **changes))


async def everything(
    store: Harness, job_filter: JobFilter, order: ListOrder, page_size: int, pages: int = 10_000
) -> tuple[list[Job], int]:
    """Every job the filter selects, page by page: (jobs, pages read)."""
    jobs: list[Job] = []
    token = ""
    for read in range(1, pages + 1):
        page = await store.producer.list_jobs(job_filter, order, page_size, token)
        jobs += page.jobs
        token = page.next_page_token
        if not token:
            return jobs, read
    pytest.fail(f"more than {pages} pages")


def in_order(jobs: list[Job], newest_first: bool, finished: bool = False) -> list[str]:
    at = (lambda j: j.finished_at) if finished else (lambda j: j.created_at)
    return [j.id for j in sorted(jobs, key=lambda j: (at(j), j.id), reverse=newest_first)]


# -- the store ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [NEWEST, OLDEST])
async def test_pages_of_a_10000_job_batch_are_exact_despite_ties(
    redis: Redis, settings: Settings, order: ListOrder
) -> None:
    store = harness(redis, settings)
    created = await store.enqueue_many([EnqueueRequest("batch", b"x") for _ in range(10_000)])
    assert len({job.created_at for job in created}) < 100  # thousands share each millisecond
    jobs, pages = await everything(store, JobFilter(type="batch"), order, 333)
    assert pages == 31  # 30 full pages and one of 10: no empty last page
    assert [j.id for j in jobs] == in_order(created, order is NEWEST)
    assert all(job.payload == b"" for job in jobs)  # no payloads unless asked


@pytest.mark.parametrize("order", [NEWEST, OLDEST])
async def test_pages_are_exact_when_each_cursors_job_leaves_among_ties(
    redis: Redis, settings: Settings, order: ListOrder
) -> None:
    """The cursor's own job cancelled after each page: the next page finds its place
    among the thousands of jobs of its millisecond by bisection."""
    store = harness(redis, settings)
    created = await store.enqueue_many([EnqueueRequest("batch") for _ in range(10_000)])
    listed: list[str] = []
    token = ""
    for _ in range(40):
        page = await store.producer.list_jobs(JobFilter(type="batch"), order, 333, token)
        listed += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
        await store.cancel(page.jobs[-1].id)
    assert listed == in_order(created, order is NEWEST)


async def test_a_cursor_holds_when_its_job_leaves_the_index(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    created = await store.enqueue_many([EnqueueRequest("t") for _ in range(12)])
    expected = in_order(created, newest_first=False)
    first = await store.producer.list_jobs(JobFilter(type="t"), OLDEST, 5)
    assert [j.id for j in first.jobs] == expected[:5]
    await store.cancel(expected[4])  # the cursor's own job leaves `live`
    await store.cancel(expected[6])  # and one further on
    second = await store.producer.list_jobs(JobFilter(type="t"), OLDEST, 5, first.next_page_token)
    assert [j.id for j in second.jobs] == [expected[5], *expected[7:11]]
    third = await store.producer.list_jobs(JobFilter(type="t"), OLDEST, 5, second.next_page_token)
    assert [j.id for j in third.jobs] == expected[11:] and third.next_page_token == ""


# Every type's read: each index's jobs read with it (page.lua) up to about what it
# gave the last page, then the others after the merge (read_jobs.lua); all with the
# index; all after.
BOTH_READS = pytest.mark.parametrize(
    "read_first", [None, True, False], ids=["a-share-each", "with-the-index", "after-the-merge"]
)


def reading_first(monkeypatch: pytest.MonkeyPatch, read_first: bool | None) -> None:
    if read_first is not None:
        monkeypatch.setattr(listing, "_jobs_read_first", lambda count, _, __: count if read_first else 0)


@BOTH_READS
async def test_every_type_merges_into_one_order(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, read_first: bool | None
) -> None:
    reading_first(monkeypatch, read_first)
    store = harness(redis, settings)
    created: list[Job] = []
    for round_ in range(3):
        for job_type in ("a", "b", "c"):
            created += await store.enqueue_many([EnqueueRequest(job_type, str(round_)) for _ in range(7)])
    for order in (NEWEST, OLDEST):
        jobs, _ = await everything(store, JobFilter(), order, 10)
        assert [j.id for j in jobs] == in_order(created, order is NEWEST)


async def test_every_type_lists_a_type_new_since_its_last_call(redis: Redis, settings: Settings) -> None:
    """Every type's read reads the types it saw last, and the set of types with them:
    a type first enqueued to since is read at once, by the next call."""
    store = harness(redis, settings)
    first = await store.enqueue("first")
    assert [j.id for j in (await store.producer.list_jobs(JobFilter(), NEWEST, 10)).jobs] == [first.id]
    later = await store.enqueue_many([EnqueueRequest(t) for t in ("second", "third", "second")])
    jobs, _ = await everything(store, JobFilter(), NEWEST, 2)
    assert [j.id for j in jobs] == in_order([first, *later], newest_first=True)
    await store.cancel(first.id)  # no longer pending: left out, the others in their order
    page = await store.producer.list_jobs(JobFilter(), OLDEST, 10)
    assert [j.id for j in page.jobs] == in_order(later, newest_first=False)


async def test_status_and_time_filters(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    jobs = [await store.enqueue("f", str(i)) for i in range(6)]
    await finish(store, settings.redis_url, "f", jobs[0].id, JobStatus.COMPLETED)
    await finish(store, settings.redis_url, "f", jobs[1].id, JobStatus.FAILED)
    await store.cancel(jobs[2].id)
    await store.cancel(jobs[3].id)
    by_id = {job.id: job for job in [await store.get(j.id) for j in jobs]}

    async def ids(**fields: Any) -> set[str]:
        page = await store.producer.list_jobs(JobFilter(type="f", **fields), NEWEST, 100)
        return {j.id for j in page.jobs}

    assert await ids() == {jobs[4].id, jobs[5].id}  # the unfinished ones
    assert await ids(status=JobStatus.PENDING) == {jobs[4].id, jobs[5].id}
    assert await ids(status=JobStatus.RUNNING) == set()
    assert await ids(status=JobStatus.COMPLETED) == {jobs[0].id}
    assert await ids(status=JobStatus.FAILED) == {jobs[1].id}
    assert await ids(status=JobStatus.CANCELLED) == {jobs[2].id, jobs[3].id}
    assert await ids(status=JobStatus.FAILED, error_contains="boo") == {jobs[1].id}
    assert await ids(status=JobStatus.FAILED, error_contains="Boo") == set()  # case-sensitive
    third = by_id[jobs[3].id].finished_at
    cancelled = (jobs[2].id, jobs[3].id)
    assert await ids(status=JobStatus.CANCELLED, from_ms=third) == {
        j for j in cancelled if by_id[j].finished_at >= third
    }
    assert await ids(status=JobStatus.CANCELLED, to_ms=third) == {
        j for j in cancelled if by_id[j].finished_at < third
    }
    created_5 = by_id[jobs[5].id].created_at
    assert await ids(time_field=TimeField.CREATED, from_ms=created_5) == {
        j for j in (jobs[4].id, jobs[5].id) if by_id[j].created_at >= created_5
    }
    assert await ids(from_ms=1, to_ms=2) == set()


async def test_the_idempotency_key_is_one_lookup(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    job = await store.enqueue("k", b"", None, JobOptions(idempotency_key="order-17"))
    await store.enqueue("k", b"", None, JobOptions(idempotency_key="order-18"))
    page = await store.producer.list_jobs(JobFilter(type="k", idempotency_key="order-17"))
    assert [j.id for j in page.jobs] == [job.id] and page.next_page_token == ""
    done = JobFilter(type="k", idempotency_key="order-17", status=JobStatus.COMPLETED)
    assert (await store.producer.list_jobs(done)).jobs == []
    assert (await store.producer.list_jobs(JobFilter(type="k", idempotency_key="nope"))).jobs == []


async def test_a_scan_filter_examines_at_most_1000_jobs_a_call(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    await store.enqueue_many([EnqueueRequest("s") for _ in range(2500)])
    pages = [await store.producer.list_jobs(JobFilter(type="s", error_contains="x"), OLDEST, 10)]
    while pages[-1].next_page_token:
        token = pages[-1].next_page_token
        pages.append(
            await store.producer.list_jobs(JobFilter(type="s", error_contains="x"), OLDEST, 10, token)
        )
    assert [len(p.jobs) for p in pages] == [0, 0, 0]  # 1000, 1000 and 501 examined


async def test_finished_indexes_are_trimmed_as_their_jobs_expire(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings, retention_s=0.5)
    old = await store.enqueue("e")
    await finish(store, settings.redis_url, "e", old.id, JobStatus.COMPLETED)
    completed = JobFilter(type="e", status=JobStatus.COMPLETED)
    assert [j.id for j in (await store.producer.list_jobs(completed)).jobs] == [old.id]

    async def expired() -> bool:
        return not await redis.exists(store.keys.job(old.id))

    await eventually(expired, what="the completed job to expire")
    index = store.keys.queue("e").completed
    assert await redis.zcard(index) == 1  # its entry lingers until the next trim...
    assert (await store.producer.list_jobs(completed)).jobs == []  # ...but is not read
    # The scripts trim a finished index at the first finish of a minute: make it one,
    # as test_counts does, by making every minute slot an hour old.
    await redis.hset(store.keys.queue("e").stats, mapping={f"m{slot}": 0 for slot in range(60)})
    new = await store.enqueue("e")
    await finish(store, settings.redis_url, "e", new.id, JobStatus.COMPLETED)
    assert [m.decode() for m in await redis.zrange(index, 0, -1)] == [new.id]  # the old entry trimmed
    assert [j.id for j in (await store.producer.list_jobs(completed)).jobs] == [new.id]


@BOTH_READS
async def test_a_listed_job_is_the_job_a_get_reads(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, read_first: bool | None
) -> None:
    """A list reads fewer fields than a get (the backoff's, unique key's and progress'
    only with their first field): every kind of job, read either way, is the same
    job, by one type's page (page.lua) and by every type's (page.lua, or read_jobs.lua
    after the merge)."""
    reading_first(monkeypatch, read_first)
    store = harness(redis, settings)
    options = JobOptions(
        max_attempts=3,
        timeout_ms=5_000,
        backoff=Backoff(base_ms=100, factor=1.5, cap_ms=2_000),
        idempotency_key="key-1",
        priority=8,
        expires_in_ms=3_600_000,
    )
    failed = await store.enqueue("l", b"to fail")
    await finish(store, settings.redis_url, "l", failed.id, JobStatus.FAILED)
    progressed = await store.enqueue("l", b"to complete", options=JobOptions(backoff=options.backoff))
    running = await claim(store, settings.redis_url, "l", progressed.id)
    assert await store.transitions.progress(running, 0.25, "a quarter") == OK
    running.result = b"the result"
    assert await store.complete(running) == OK
    pending = [
        await store.enqueue("l", b"plain"),
        await store.enqueue("l", b"options", options=options),
        await store.enqueue(
            "l", b"unique", options=JobOptions(unique_key="u-1", unique_mode=UniqueMode.DEBOUNCE)
        ),
    ]
    await store.enqueue("l-other", b"a second type: every type's page merges two")
    selections = {
        JobStatus.PENDING: [job.id for job in pending],
        JobStatus.FAILED: [failed.id],
        JobStatus.COMPLETED: [progressed.id],
    }
    for status, ids in selections.items():
        stored = sorted([await store.get(job_id) for job_id in ids], key=lambda j: (j.created_at, j.id))
        assert {j.status for j in stored} == {status}
        for job_type in ("l", ""):
            for with_payloads in (False, True):
                page = await store.producer.list_jobs(
                    JobFilter(type=job_type, status=status), OLDEST, 10, with_payloads=with_payloads
                )
                expected = (
                    stored
                    if with_payloads
                    else [dataclasses.replace(j, payload=b"", result=b"") for j in stored]
                )
                listed = [job for job in page.jobs if job.type == "l"]
                assert listed == expected, (status, job_type, with_payloads)
    [read] = stored
    assert (read.progress, read.progress_message, read.result) == (0.25, "a quarter", b"the result")
    assert read.backoff == options.backoff


async def test_a_token_is_bound_to_its_filter_and_order(redis: Redis, settings: Settings) -> None:
    store = harness(redis, settings)
    await store.enqueue_many([EnqueueRequest("b") for _ in range(3)])
    token = (await store.producer.list_jobs(JobFilter(type="b"), NEWEST, 1)).next_page_token
    assert token
    for job_filter, order in [(JobFilter(type="c"), NEWEST), (JobFilter(type="b"), OLDEST)]:
        with pytest.raises(InvalidInput) as refused:
            await store.producer.list_jobs(job_filter, order, 1, token)
        assert refused.value.field == "page_token"
    # The same filter spelled with its defaults is the same filter.
    same = JobFilter(type="b", time_field=TimeField.CREATED)
    assert len((await store.producer.list_jobs(same, ListOrder.UNSPECIFIED, 1, token)).jobs) == 1


# -- the API --------------------------------------------------------------------------------


async def test_grpcurl_pages_through_a_type(server_url: str) -> None:
    job_type = new_type()
    jobs = [{"type": job_type, "payload": b64(f"p{i}".encode())} for i in range(3)]
    grpcurl_json(await grpcurl(server_url, f"{SERVICE}/EnqueueJobs", data={"jobs": jobs}))
    first = grpcurl_json(
        await grpcurl(server_url, f"{SERVICE}/ListJobs", data={"filter": {"type": job_type}, "page_size": 2})
    )
    assert len(first["jobs"]) == 2 and "payload" not in first["jobs"][0]
    assert all(j["status"] == "JOB_STATUS_PENDING" for j in first["jobs"])
    second = grpcurl_json(
        await grpcurl(
            server_url,
            f"{SERVICE}/ListJobs",
            data={
                "filter": {"type": job_type},
                "page_size": 2,
                "page_token": first["nextPageToken"],
                "with_payloads": True,
            },
        )
    )
    assert len(second["jobs"]) == 1 and "nextPageToken" not in second
    assert second["jobs"][0]["payload"] in {b64(f"p{i}".encode()) for i in range(3)}
    ids = {j["id"] for j in first["jobs"] + second["jobs"]}
    assert len(ids) == 3


async def test_http_json_lists_oldest_first(server_url: str) -> None:
    job_type = new_type()
    body = json.dumps({"jobs": [{"type": job_type} for _ in range(4)]})
    created = (await post_json(server_url, "EnqueueJobs", body)).json()["jobs"]
    request = {"filter": {"type": job_type}, "order": "LIST_ORDER_OLDEST_FIRST", "pageSize": 10}
    reply = await post_json(server_url, "ListJobs", json.dumps(request))
    assert reply.status == 200, reply
    listed = [j["id"] for j in reply.json()["jobs"]]
    assert listed == sorted((j["id"] for j in created), key=lambda i: (created_at(created, i), i))
    assert "nextPageToken" not in reply.json()


def created_at(jobs: list[dict[str, Any]], job_id: str) -> int:
    return int(next(j["createdAt"] for j in jobs if j["id"] == job_id))


@pytest.mark.parametrize("json_codec", [False, True], ids=["proto", "json"])
async def test_python_client_lists_with_filters(server_url: str, store: Harness, json_codec: bool) -> None:
    job_type = new_type()
    async with Client(server_url, json=json_codec) as client:
        jobs = [await client.enqueue(job_type, f"{i}") for i in range(3)]
        await client.cancel(jobs[1].id)
        page = await client.list_jobs(
            JobFilter(type=job_type, status=JobStatus.CANCELLED), with_payloads=True
        )
        assert [(j.id, j.status, j.payload) for j in page.jobs] == [(jobs[1].id, JobStatus.CANCELLED, b"1")]
        unfinished = await client.list_jobs(JobFilter(type=job_type), ListOrder.OLDEST_FIRST, page_size=1)
        assert [j.id for j in unfinished.jobs] == [in_order([jobs[0], jobs[2]], newest_first=False)[0]]
        rest = await client.list_jobs(
            JobFilter(type=job_type), ListOrder.OLDEST_FIRST, 1, unfinished.next_page_token
        )
        assert len(rest.jobs) == 1 and rest.next_page_token == ""


async def test_a_10000_job_enqueue_jobs_batch_pages_exactly_through_the_api(server_url: str) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        created = await client.enqueue_many([EnqueueRequest(job_type) for _ in range(10_000)])
        listed: list[Job] = []
        token = ""
        for _ in range(20):
            page = await client.list_jobs(JobFilter(type=job_type), OLDEST, 1000, token)
            listed += page.jobs
            token = page.next_page_token
            if not token:
                break
    assert [j.id for j in listed] == in_order(listed, newest_first=False)
    assert sorted(j.id for j in listed) == sorted(j.id for j in created)


# -- bad input ------------------------------------------------------------------------------

OTHER_TOKEN = "eyJ2IjoxLCJmIjoiMDAwMDAwMDAwMDAwMDAwMCIsInMiOjEsImkiOiJ4In0"  # another filter's

BAD_REQUESTS = [
    pytest.param(
        {"filter": {"timeField": "JOB_TIME_FIELD_FINISHED"}}, "filter.time_field", id="finished-live"
    ),
    pytest.param(
        {"filter": {"status": "JOB_STATUS_FAILED", "timeField": "JOB_TIME_FIELD_CREATED"}},
        "filter.time_field",
        id="created-finished",
    ),
    pytest.param({"filter": {"type": "a b"}}, "filter.type", id="type"),
    pytest.param({"filter": {"fromMs": "-1"}}, "filter.from_ms", id="from"),
    pytest.param({"filter": {"fromMs": "20", "toMs": "10"}}, "filter.to_ms", id="to-before-from"),
    pytest.param({"filter": {"idempotencyKey": "k"}}, "filter.idempotency_key", id="key-without-type"),
    pytest.param({"filter": {"errorContains": "x" * 1025}}, "filter.error_contains", id="error-text"),
    pytest.param({"pageSize": 1001}, "page_size", id="page-size-big"),
    pytest.param({"pageSize": -1}, "page_size", id="page-size-negative"),
    pytest.param({"pageToken": "not a token"}, "page_token", id="token-garbage"),
    pytest.param({"pageToken": b64(b"[1, 2]")}, "page_token", id="token-not-an-object"),
    pytest.param({"pageToken": OTHER_TOKEN}, "page_token", id="token-of-another-filter"),
    # Enum values the proto does not define: the JSON decoder (unknown fields ignored)
    # would read them as UNSPECIFIED (every unfinished job) if the server did not look.
    pytest.param({"filter": {"status": 99}}, "filter.status", id="status-undefined-number"),
    pytest.param({"filter": {"status": "JOB_STATUS_DONE"}}, "filter.status", id="status-undefined-name"),
    pytest.param({"filter": {"time_field": 7}}, "filter.time_field", id="time-field-undefined"),
    pytest.param({"order": 7, "futureField": 1}, "order", id="order-undefined-with-unknown-field"),
]


@pytest.mark.parametrize(("request_body", "field"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_naming_the_field(
    server_url: str, request_body: dict[str, Any], field: str
) -> None:
    reply = await post_json(server_url, "ListJobs", json.dumps(request_body))
    assert reply.status == 400, reply
    error = reply.json()
    assert error["code"] == "invalid_argument"
    assert error["message"].startswith(f"{field}: "), error
    assert_clean(error["message"])


async def test_json_fields_the_server_does_not_know_are_still_ignored(server_url: str) -> None:
    """The enum check does not make Connect JSON strict: a newer client's field passes."""
    request = {"filter": {"status": "JOB_STATUS_FAILED", "futureField": 1}, "futureField": [1]}
    reply = await post_json(server_url, "ListJobs", json.dumps(request))
    assert reply.status == 200, reply
    # CancelJobs with UNSPECIFIED cancels every unfinished job: 99 must not read as that.
    bodies = [
        {"filter": {"status": 99, "type": new_type()}},
        {"filter": {"status": "JOB_STATUS_DONE", "type": new_type()}, "limit": 5},
    ]
    for body in bodies:
        refused = await post_json(server_url, "CancelJobs", json.dumps(body))
        assert refused.status == 400, refused
        assert refused.json()["message"].startswith("filter.status: "), refused


# Enum numbers the proto does not define, in binary protobuf (grpcurl): kept by the
# decoder (proto3 enums are open), refused by the handler.
@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"page_size": 5000}, "page_size: must be 1 to 1000"),
        ({"filter": {"status": 9}}, "filter.status: 9 is not a JobStatus value"),
        ({"filter": {"time_field": 7}}, "filter.time_field: 7 is not a TimeField value"),
        ({"order": 7}, "order: 7 is not a ListOrder value"),
    ],
)
async def test_grpcurl_bad_input_is_invalid_argument(
    server_url: str, request_body: dict[str, Any], message: str
) -> None:
    ran = await grpcurl(server_url, f"{SERVICE}/ListJobs", data=request_body)
    assert ran.code != 0
    assert "Code: InvalidArgument" in ran.err and message in ran.err, ran
