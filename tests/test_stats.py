"""GetQueueStats: the counts the transition scripts keep, read in one round trip, against
the jobs as stored; through the store, the Python client, grpcurl and Connect JSON."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobqueue.client import Client
from jobqueue.model import Job, JobStatus
from jobqueue.queues import MINUTES, QueueStats
from jobqueue.settings import Settings
from jobqueue.worker import PermanentError, RetryAfter, Worker

from .conftest import ROOT, eventually, status_is
from .harness import Harness
from .test_api import SERVICE, finish, grpcurl, grpcurl_json, new_type, post_json
from .test_worker import running

pytestmark = pytest.mark.redis_targets

HOUR_MS = 3_600_000
COUNTS = ("pending", "scheduled", "ready", "running", "completed", "failed", "cancelled")


async def counted_from_jobs(store: Harness, ids: list[str]) -> dict[str, int]:
    """The counts GetQueueStats should show, from the stored jobs themselves."""
    now_ms = int(time.time() * 1000)
    jobs = [await store.get(job_id) for job_id in ids]
    statuses = collections.Counter(job.status for job in jobs)
    scheduled = sum(1 for job in jobs if job.status is JobStatus.PENDING and job.execution_time_ms > now_ms)
    return {
        "pending": statuses[JobStatus.PENDING],
        "scheduled": scheduled,
        "ready": statuses[JobStatus.PENDING] - scheduled,
        "running": statuses[JobStatus.RUNNING],
        "completed": statuses[JobStatus.COMPLETED],
        "failed": statuses[JobStatus.FAILED],
        "cancelled": statuses[JobStatus.CANCELLED],
    }


def counts(queue: QueueStats) -> dict[str, int]:
    return {name: getattr(queue, name) for name in COUNTS}


async def test_counts_match_the_stored_jobs_through_a_real_worker(
    store: Harness, settings: Settings, server_url: str
) -> None:
    job_type = new_type()
    hold = asyncio.Event()

    async def handler(job: Job) -> None:
        kind = job.payload.decode()
        if kind == "fail":
            raise PermanentError("no")
        if kind == "flaky" and job.attempt == 1:
            raise RetryAfter(0)
        if kind == "hold":
            await hold.wait()

    worker = Worker(job_type, handler, settings=settings, heartbeat_s=0.1, lease_s=5.0, concurrency=4)
    later = int(time.time() * 1000) + HOUR_MS
    async with running(worker), Client(server_url) as client:
        ids = {kind: [(await store.enqueue(job_type, kind)).id for _ in range(n)]
               for kind, n in (("ok", 3), ("fail", 2), ("flaky", 1), ("hold", 1))}  # fmt: skip
        waiting = (await store.enqueue(job_type, "ok", later)).id
        cancelled = (await store.enqueue(job_type, "ok", later)).id
        await store.cancel(cancelled)
        for job_id in ids["ok"] + ids["flaky"]:
            await eventually(status_is(store, job_id, JobStatus.COMPLETED), what="completions")
        for job_id in ids["fail"]:
            await eventually(status_is(store, job_id, JobStatus.FAILED), what="failures")
        await eventually(status_is(store, ids["hold"][0], JobStatus.RUNNING), what="the held job running")
        every = [job_id for group in ids.values() for job_id in group] + [waiting, cancelled]

        expected = await counted_from_jobs(store, every)
        assert expected == {
            "pending": 1, "scheduled": 1, "ready": 0, "running": 1,
            "completed": 4, "failed": 2, "cancelled": 1,
        }  # fmt: skip
        for report in (await store.store.stats.read(job_type), await client.stats(job_type)):
            [queue] = report.queues
            assert queue.type == job_type
            assert counts(queue) == expected
            assert counts(report.total) == expected
            # Every finish happened within the last hour: each is in one minute's bucket.
            assert sum(queue.completed_per_minute) == 4
            assert sum(queue.failed_per_minute) == 2
            assert len(queue.completed_per_minute) == len(queue.failed_per_minute) == MINUTES
            assert queue.workers == report.total.workers == 1
            assert not queue.paused and queue.max_depth == 0
            assert queue.oldest_ready_age_ms == 0  # nothing ready
            assert abs(report.read_at - time.time() * 1000) < 60_000

        # A redrive (RetryJob) of the cancelled job: it runs and completes.
        await client.retry(cancelled)
        await eventually(status_is(store, cancelled, JobStatus.COMPLETED), what="the redriven job")
        hold.set()
        await eventually(status_is(store, ids["hold"][0], JobStatus.COMPLETED), what="the held job")
        expected = await counted_from_jobs(store, every)
        assert expected["completed"] == 6 and expected["cancelled"] == 0 and expected["running"] == 0
        queue = (await client.stats(job_type)).queues[0]
        assert counts(queue) == expected
        assert sum(queue.completed_per_minute) == 6

    # The worker left: no live worker any more.
    assert (await client_stats(server_url, job_type)).workers == 0


async def client_stats(server_url: str, job_type: str) -> QueueStats:
    async with Client(server_url) as client:
        [queue] = (await client.stats(job_type)).queues
        return queue


async def test_oldest_ready_age_is_the_wait_of_the_next_job_skipping_stale_ids(store: Harness) -> None:
    job_type = new_type()
    assert (await store.store.stats.read(job_type)).queues[0].oldest_ready_age_ms == 0
    now = int(time.time() * 1000)
    first = await store.enqueue(job_type, "", now - 120_000)
    await store.enqueue(job_type, "", now - 60_000)
    queue = (await store.store.stats.read(job_type)).queues[0]
    assert 120_000 <= queue.oldest_ready_age_ms < 180_000
    assert queue.ready == 2
    # Cancelled, the first job's id stays in `ready` (cancel is O(1)): it is skipped.
    await store.cancel(first.id)
    queue = (await store.store.stats.read(job_type)).queues[0]
    assert 60_000 <= queue.oldest_ready_age_ms < 120_000
    assert (queue.ready, queue.cancelled) == (1, 1)


async def test_the_minute_buckets_count_only_their_own_minute(store: Harness, redis_url: str) -> None:
    """A slot written in an older hour counts 0; the others land at their minute's place."""
    job_type = new_type()
    done = await store.enqueue(job_type, "")
    await finish(store, redis_url, job_type, done.id, JobStatus.COMPLETED)
    stats_key = store.keys.queue(job_type).stats
    for _ in range(3):  # the minute may turn between the writes and the read: then again
        seconds, _micros = await store.redis.time()
        minute = seconds // 60
        old, two_ago = (minute - 1) % 60, (minute - 2) % 60
        await store.redis.hset(stats_key, mapping={f"m{old}": minute - 61, f"c{old}": 7, f"f{old}": 7})
        await store.redis.hset(
            stats_key, mapping={f"m{two_ago}": minute - 2, f"c{two_ago}": 3, f"f{two_ago}": 1}
        )
        report = await store.store.stats.read(job_type)
        if report.read_at // 60_000 == minute:
            break
    else:
        pytest.fail("the minute turned at every try")
    queue = report.queues[0]
    assert queue.completed_per_minute[-1] == 1  # the run above, this minute
    assert queue.completed_per_minute[-2] == 0 and queue.failed_per_minute[-2] == 0  # an hour old
    assert queue.completed_per_minute[-3] == 3 and queue.failed_per_minute[-3] == 1
    assert sum(queue.completed_per_minute) == 4 and sum(queue.failed_per_minute) == 1


async def test_every_type_and_the_total(store: Harness) -> None:
    first, second = sorted([new_type(), new_type()])
    await store.enqueue_many([])  # nothing: no type
    for job_type, n in ((first, 2), (second, 3)):
        for _ in range(n):
            await store.enqueue(job_type, "")
    report = await store.store.stats.read()
    assert [q.type for q in report.queues] == [first, second]  # by name (the test's Redis is fresh)
    assert [q.pending for q in report.queues] == [2, 3]
    assert report.total.pending == report.total.ready == 5 and report.total.type == ""


async def test_no_types_yet(store: Harness) -> None:
    report = await store.store.stats.read()
    assert report.queues == [] and report.total.pending == 0
    assert abs(report.read_at - time.time() * 1000) < 60_000


# -- through grpcurl and Connect JSON ------------------------------------------------------


async def test_stats_through_grpcurl_and_connect_json(store: Harness, server_url: str) -> None:
    job_type = new_type()
    await store.enqueue(job_type, "now")
    await store.enqueue(job_type, "later", int(time.time() * 1000) + HOUR_MS)
    by_grpcurl = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetQueueStats", data={"type": job_type}))
    reply = await post_json(server_url, "GetQueueStats", f'{{"type": "{job_type}"}}')
    assert reply.status == 200, reply
    for body in (by_grpcurl, reply.json()):
        [queue] = body["queues"]
        assert queue["type"] == job_type
        assert (queue["pending"], queue["scheduled"], queue["ready"]) == ("2", "1", "1")  # int64: strings
        assert len(queue["completedPerMinute"]) == MINUTES
        assert body["total"]["pending"] == "2"
        assert int(body["readAt"]) > 0
    everything = (await post_json(server_url, "GetQueueStats", "{}")).json()
    assert job_type in [queue["type"] for queue in everything["queues"]]


BAD_TYPE_CALLS = ["GetQueueStats", "ListWorkers", "PauseQueue", "ResumeQueue"]


@pytest.mark.parametrize("method", BAD_TYPE_CALLS)
@pytest.mark.parametrize("bad", ["a b", "x" * 200, "é"])
async def test_a_malformed_type_is_invalid_argument_naming_type(
    store: Harness, server_url: str, method: str, bad: str
) -> None:
    keys_before = await store.redis.dbsize()
    ran = await grpcurl(server_url, f"{SERVICE}/{method}", data={"type": bad})
    assert ran.code != 0 and "InvalidArgument" in ran.err and "type:" in ran.err, ran
    reply = await post_json(server_url, method, _json_type(bad))
    assert reply.status == 400, reply
    body: dict[str, Any] = reply.json()
    assert body["code"] == "invalid_argument" and body["message"].startswith("type: "), body
    # Nothing stored by a refused call (no paused key, no registered type).
    assert await store.redis.dbsize() == keys_before
    assert not await store.redis.exists(store.keys.queue(bad).stats)


@pytest.mark.parametrize("method", ["PauseQueue", "ResumeQueue"])
async def test_a_control_without_a_type_is_invalid_argument(
    store: Harness, server_url: str, method: str
) -> None:
    reply = await post_json(server_url, method, "{}")
    assert reply.status == 400 and reply.json()["code"] == "invalid_argument", reply
    assert reply.json()["message"].startswith("type: must not be empty"), reply


def _json_type(job_type: str) -> str:
    return json.dumps({"type": job_type})


@pytest.mark.timeout(120)
def test_the_benchmark_runs(single_redis_url: str, tmp_path: Path) -> None:
    """bench/queue_stats.py at tiny sizes (docs/performance.md has its figures); numbers unchecked.
    On a single Redis only: the benchmark's own clients are single-node ones."""
    redis_url = single_redis_url
    out = tmp_path / "stats.json"
    ran = subprocess.run(
        [sys.executable, "bench/queue_stats.py", "--redis-url", redis_url, "--big-jobs", "300",
         "--types", "3", "--calls", "20", "--runs", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    figures = json.loads(out.read_text())
    for measure in ("server_one_type", "server_every_type", "server_get_job", "store_one_type"):
        assert figures[measure]["p99_ms_median"] > 0, figures
