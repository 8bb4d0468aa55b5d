"""Job priorities (lua/include/priority.lua): higher first, FIFO within a level, kept
by schedules, retries and every redelivery; through the store, a real worker (its
busy rounds and its idle blocking wait), the API (grpcurl, HTTP + JSON, the Python
client), the CLI and the inline queue."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.model import EnqueueRequest, Job, JobOptions, JobStatus, UniqueMode
from jobqueue.settings import Settings
from jobqueue.store.outcomes import Outcome
from jobqueue.testing import InlineQueue
from jobqueue.worker import Worker

from .conftest import eventually, status_is
from .harness import Harness
from .store_audit import audit, misplaced
from .test_api import grpcurl, grpcurl_json, new_type, post_json
from .test_cli import jobqueue, view_rows
from .test_worker import make_worker, running


def at(priority: int) -> JobOptions:
    return JobOptions(priority=priority)


async def take_everything(store: Harness, job_type: str, batch: int) -> list[list[str]]:
    """What a busy worker's rounds take, `batch` at most each, until nothing is left."""
    batches = []
    for _ in range(100):
        _, _, taken = await store.transitions.round(job_type, "w", take=batch)
        if not taken and not await store.redis.exists(store.keys.queue(job_type).prio):
            return batches
        if taken:
            batches.append(taken)
    raise AssertionError("the queue never emptied")


def flat(batches: list[list[str]]) -> list[str]:
    return [job_id for batch in batches for job_id in batch]


async def mixed(store: Harness, job_type: str = "t") -> dict[str, Job]:
    """Jobs of priorities 9, 7, 5 (default) and 1, enqueued interleaved, some in one call."""
    jobs = {
        "d1": await store.enqueue(job_type, b"d1"),
        "h9a": await store.enqueue(job_type, b"h9a", None, at(9)),
        "l1a": await store.enqueue(job_type, b"l1a", None, at(1)),
    }
    names = ["d2", "h7", "h9b", "l1b", "d3"]
    priorities = [None, 7, 9, 1, 5]
    many = await store.enqueue_many(
        [
            EnqueueRequest(job_type, name.encode(), None, JobOptions(priority=p))
            for name, p in zip(names, priorities, strict=True)
        ]
    )
    jobs.update(zip(names, many, strict=True))
    return jobs


IN_ORDER = ["h9a", "h9b", "h7", "d1", "d2", "d3", "l1a", "l1b"]


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
async def test_rounds_take_higher_priorities_first_fifo_within_each(store: Harness, batch: int) -> None:
    jobs = await mixed(store)
    name_of = {job.id: name for name, job in jobs.items()}
    batches = await take_everything(store, "t", batch)
    assert [name_of[i] for i in flat(batches)] == IN_ORDER
    assert all(len(taken) <= batch for taken in batches)
    assert (await store.get(jobs["h9a"].id)).priority == 9
    assert (await store.get(jobs["d1"].id)).priority == 5


async def test_an_idle_worker_wakes_for_every_priority_and_takes_them_in_order(
    store: Harness, settings: Settings
) -> None:
    order: list[bytes] = []

    async def handler(job: Job) -> None:
        order.append(job.payload)

    async with running(make_worker(settings, handler, concurrency=1)):
        # Idle: blocked on the ready list (BLMOVE), nothing queued.
        await eventually(lambda: _blocked(store.redis), what="the worker's blocking wait")
        alone = await store.enqueue("t", b"low alone", None, at(1))  # wakes it though not in `ready`
        await eventually(status_is(store, alone.id, JobStatus.COMPLETED), what="the low job alone")
        await eventually(lambda: _blocked(store.redis), what="the worker idle again")
        names = ["d1", "h9", "l1", "d2", "h9b"]
        many = await store.enqueue_many(
            [
                EnqueueRequest("t", name.encode(), None, JobOptions(priority=p))
                for name, p in zip(names, [None, 9, 1, None, 9], strict=True)
            ]
        )
        for job in many:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    assert order == [b"low alone", b"h9", b"h9b", b"d1", b"d2", b"l1"]


async def _blocked(redis: Redis) -> bool:
    return int((await redis.info("clients"))["blocked_clients"]) >= 1


async def test_a_busy_worker_runs_in_priority_order(store: Harness, settings: Settings) -> None:
    order: list[bytes] = []

    async def handler(job: Job) -> None:
        order.append(job.payload)

    jobs = await mixed(store)
    async with running(make_worker(settings, handler, concurrency=1)):
        for job in jobs.values():
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    assert [p.decode() for p in order] == IN_ORDER


async def test_redeliveries_keep_the_priority_next_in_its_level(store: Harness, sync: redis.Redis) -> None:
    """give_back, sweep_popped, release, recover and a paused claim put a job back at
    the front of its own level: behind higher levels, before its equals."""
    a = await store.enqueue("t", b"a", None, at(8))
    b = await store.enqueue("t", b"b", None, at(8))
    top = await store.enqueue("t", b"top", None, at(9))
    low = await store.enqueue("t", b"low", None, at(2))
    d = await store.enqueue("t", b"d")
    expected = [top.id, a.id, b.id, d.id, low.id]
    queue = store.keys.queue("t")

    async def take(n: int) -> list[str]:
        _, _, taken = await store.transitions.round("t", "w", take=n)
        return taken

    async def claim(n: int) -> list[Job]:
        taken = await take(n)
        _, claims, _ = await store.transitions.round(
            "t", "w", claim=taken, lease_ms=60_000, default_max_attempts=5
        )
        assert all(isinstance(c, Job) for c in claims), claims
        return [c for c in claims if isinstance(c, Job)]

    async def line_is(wanted: list[str]) -> None:
        assert misplaced(sync, store.keys, "t") == []
        batches = await take_everything(store, "t", 100)
        assert flat(batches) == wanted
        await store.transitions.give_back("t", flat(batches))  # back as they were
        assert await store.redis.llen(queue.popped) == 0

    # give_back: taken, returned.
    assert await take(2) == [top.id, a.id]
    assert await store.transitions.give_back("t", [top.id, a.id]) == 2
    await line_is(expected)
    # sweep_popped: taken, abandoned, swept back (the first sweep notes it, the next moves it).
    assert await take(3) == [top.id, a.id, b.id]
    assert await store.transitions.sweep_popped("t", 0) == 0
    assert await store.transitions.sweep_popped("t", 0) == 3
    await line_is(expected)
    # release: claimed, handed back at shutdown.
    [held_top, held_a] = await claim(2)
    assert (await store.transitions.release(held_a)).ok
    await line_is([a.id, b.id, d.id, low.id])
    # recover: its worker died.
    [held_a] = await claim(1)
    assert (await store.transitions.recover("t", a.id, "w")).outcome is Outcome.RECOVERED
    await line_is([a.id, b.id, d.id, low.id])
    # recover of the low one, while the level above has jobs: it stays behind them.
    [held_a, held_b, held_d, _] = await claim(4)
    for job in (held_d, held_b, held_a):  # each next in its level: the last released first
        assert (await store.transitions.release(job)).ok
    assert (await store.transitions.recover("t", low.id, "w")).outcome is Outcome.RECOVERED
    await line_is([a.id, b.id, d.id, low.id])
    # A paused type's claim puts the id back in its own line.
    taken = await take(1)
    await store.redis.hset(queue.stats, "paused", "1")
    _, claims, _ = await store.transitions.round(
        "t", "w", claim=taken, lease_ms=60_000, default_max_attempts=5
    )
    assert [c.outcome for c in claims if not isinstance(c, Job)] == [Outcome.PAUSED]
    await store.redis.hdel(queue.stats, "paused")
    await line_is([a.id, b.id, d.id, low.id])
    assert held_top.status is JobStatus.RUNNING
    assert audit(sync, store.keys, "t") == []


async def test_scheduled_and_retried_jobs_keep_their_priority(store: Harness, sync: redis.Redis) -> None:
    queue = store.keys.queue("t")
    d = await store.enqueue("t", b"d")
    # Scheduled (due 200 ms from now): promote puts it in its level, ahead of `d`.
    soon = await store.enqueue("t", b"soon", (await _redis_ms(store)) + 200, at(9))
    assert await store.redis.zscore(queue.scheduled, soon.id) == soon.execution_time_ms + 9 / 16

    async def promoted() -> bool:
        moved, _ = await store.transitions.promote("t", 100)
        return moved == 1

    await eventually(promoted, what="the scheduled job due")
    assert flat(await take_everything(store, "t", 10)) == [soon.id, d.id]
    # Retried: the run fails with attempts left; it waits in the schedule, then in its level.
    _, claims, _ = await store.transitions.round(
        "t", "w", claim=[soon.id, d.id], lease_ms=60_000, default_max_attempts=5
    )
    held = {c.id: c for c in claims if isinstance(c, Job)}
    assert (await store.transitions.fail(held[d.id], "again", 0)).outcome is Outcome.RETRYING
    assert (await store.transitions.fail(held[soon.id], "again", 0)).outcome is Outcome.RETRYING
    assert await store.redis.zscore(queue.scheduled, soon.id) % 1 == 9 / 16
    assert misplaced(sync, store.keys, "t") == []
    moved, _ = await store.transitions.promote("t", 100)
    assert moved == 2
    assert flat(await take_everything(store, "t", 10)) == [soon.id, d.id]


async def test_redrive_keeps_the_priority(store: Harness) -> None:
    d = await store.enqueue("t", b"d")
    job = await store.enqueue("t", b"x", None, at(6))
    await store.cancel(job.id)
    await store.retry(job.id)
    assert flat(await take_everything(store, "t", 10)) == [job.id, d.id]


async def test_a_debounce_keeps_the_priority(store: Harness, sync: redis.Redis) -> None:
    """A debounced job moved from its level back into the schedule, then due again."""
    queue = store.keys.queue("t")
    options = JobOptions(unique_key="k", unique_mode=UniqueMode.DEBOUNCE, priority=8)
    d = await store.enqueue("t", b"d")
    first = await store.enqueue("t", b"1", None, options)  # due now: in its level
    later = await store.enqueue("t", b"2", (await _redis_ms(store)) + 60_000, options)
    assert later.id == first.id
    assert await store.redis.zscore(queue.scheduled, first.id) % 1 == 8 / 16
    assert misplaced(sync, store.keys, "t") == []
    again = await store.enqueue("t", b"3", None, options)  # due now again: back in its level
    assert again.id == first.id and await store.redis.zcard(queue.scheduled) == 0
    assert flat(await take_everything(store, "t", 10)) == [first.id, d.id]


async def test_queue_stats_count_every_level(store: Harness) -> None:
    await store.enqueue("t", b"low", None, at(1))
    await store.enqueue("t", b"high", None, at(9))  # none of the default: `ready` holds markers only
    before = await _redis_ms(store)
    await eventually(lambda: _later(store, before + 20), what="time to pass")
    queue = (await store.store.stats.read("t")).queues[0]
    assert (queue.pending, queue.ready) == (2, 2)
    assert queue.oldest_ready_age_ms >= 20


async def _later(store: Harness, ms: int) -> bool:
    return await _redis_ms(store) >= ms


async def _redis_ms(store: Harness) -> int:
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def sync(redis_url: str) -> Iterator[redis.Redis]:
    """A blocking client, for the audit."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- the API, the client, the CLI ----------------------------------------------------------


async def test_grpcurl_enqueues_with_a_priority_and_refuses_one_out_of_range(
    server_url: str, store: Harness
) -> None:
    job_type = new_type()
    method = "mpataki.jobqueue.v1.JobService/EnqueueJob"
    job = grpcurl_json(await grpcurl(server_url, method, data={"type": job_type, "priority": 9}))["job"]
    assert job["priority"] == 9
    got = grpcurl_json(
        await grpcurl(server_url, "mpataki.jobqueue.v1.JobService/GetJob", data={"id": job["id"]})
    )
    assert got["job"]["priority"] == 9
    for bad in (0, 10, -1):
        ran = await grpcurl(server_url, method, data={"type": job_type, "priority": bad})
        assert (
            ran.code != 0 and "InvalidArgument" in ran.err and "priority: must be from 1 to 9" in ran.err
        ), ran
    assert await store.redis.zcard(store.keys.queue(job_type).live) == 1


async def test_http_json_refuses_a_bad_priority_and_stores_nothing(server_url: str, store: Harness) -> None:
    job_type = new_type()
    body = {"jobs": [{"type": job_type, "priority": 3}, {"type": job_type, "priority": 12}]}
    reply = await post_json(server_url, "EnqueueJobs", json.dumps(body))
    assert reply.status == 400, reply
    assert reply.json()["code"] == "invalid_argument"
    assert reply.json()["message"].startswith("jobs[1].priority: must be from 1 to 9"), reply.body
    assert await store.redis.zcard(store.keys.queue(job_type).live) == 0
    assert await store.redis.exists(store.keys.queue(job_type).prio) == 0
    ok = await post_json(server_url, "EnqueueJob", json.dumps({"type": job_type, "priority": 2}))
    assert ok.status == 200 and ok.json()["job"]["priority"] == 2
    for with_payloads in (False, True):
        body = {"filter": {"type": job_type}, "withPayloads": with_payloads}
        listed = await post_json(server_url, "ListJobs", json.dumps(body))
        assert [job["priority"] for job in listed.json()["jobs"]] == [2], listed.body


async def test_python_client_priority(server_url: str) -> None:
    job_type = new_type()
    async with Client(server_url) as client:
        job = await client.enqueue(job_type, b"x", options=at(7))
        assert job.priority == 7 and (await client.get(job.id)).priority == 7
        plain = await client.enqueue(job_type, b"y")
        assert (await client.get(plain.id)).priority == 5
        with pytest.raises(ConnectError) as refused:
            await client.enqueue(job_type, b"z", options=at(0))
        assert refused.value.code is Code.INVALID_ARGUMENT and "priority" in str(refused.value)


async def test_cli_enqueue_priority_and_job_view(server_url: str, store: Harness) -> None:
    shown = jobqueue("enqueue", "print", "hi", "--priority", "8", "--url", server_url)
    assert shown.returncode == 0, shown.stderr
    rows = view_rows(shown.stdout)
    assert rows["priority"] == "8"
    assert (await store.get(rows["id"])).priority == 8
    plain = jobqueue("enqueue", "print", "hi", "-q", "--url", server_url)
    got = view_rows(jobqueue("get", plain.stdout.strip(), "--url", server_url).stdout)
    assert got["priority"] == "5 (the default)"
    bad = jobqueue("enqueue", "print", "hi", "--priority", "0", "--url", server_url)
    assert bad.returncode == 3 and "invalid_argument" in bad.stderr and "priority" in bad.stderr, bad


async def test_inline_queue_runs_by_priority() -> None:
    ran: list[bytes] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload)

    queue = InlineQueue(Worker("t", handler), eager=False)
    await queue.enqueue("t", b"d1")
    await queue.enqueue("t", b"low", options=at(1))
    await queue.enqueue("t", b"high", options=at(9))
    await queue.enqueue("t", b"d2")
    await queue.run_pending()
    assert ran == [b"high", b"d1", b"d2", b"low"]
    assert (await queue.get(queue.enqueued()[2].id)).priority == 9
    with pytest.raises(ConnectError) as refused:
        await queue.enqueue("t", b"x", options=at(10))
    assert refused.value.code is Code.INVALID_ARGUMENT
