"""Results: a handler's return value stored with its job (round.lua, worker/results.py),
by the current lease holder only, within its size limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import pytest

from jobqueue.codecs import get_codec
from jobqueue.model import Job, JobStatus
from jobqueue.selection import JobFilter, ListOrder
from jobqueue.settings import Settings
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import OK, Outcome, Result
from jobqueue.testing import InlineQueue
from jobqueue.worker import Worker
from jobqueue.worker.results import result_bytes

from .conftest import eventually, status_is
from .harness import Harness
from .test_store import start
from .test_worker import make_worker, running, take_over


async def test_a_completion_stores_the_result_and_a_read_returns_it(
    store: Harness, blocking: OwnConnection
) -> None:
    queued = await store.enqueue("t", b"in")
    job = await start(store, blocking)
    job.result = b"out \x00\xff"
    assert await store.complete(job) == OK
    done = await store.get(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, b"out \x00\xff")
    # A replay of the record (its reply lost) changes nothing, whatever it carries.
    job.result = b"other"
    assert await store.complete(job) == OK
    assert (await store.get(queued.id)).result == b"out \x00\xff"


async def test_no_result_stores_no_field(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    job = await start(store, blocking)
    assert await store.complete(job) == OK
    assert not await store.redis.hexists(store.keys.job(job.id), "result")
    assert (await store.get(job.id)).result == b""


async def test_a_stale_holder_never_writes_its_result(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"")
    old = await start(store, blocking)
    await take_over(store, old)
    new = await start(store, blocking)
    old.result = b"from the stale holder"
    assert await store.complete(old) == Result(Outcome.STALE, JobStatus.RUNNING)
    assert not await store.redis.hexists(store.keys.job(old.id), "result")
    new.result = b"from the holder"
    assert await store.complete(new) == OK
    # Nor after the job completed under the new lease.
    assert await store.complete(old) == Result(Outcome.STALE, JobStatus.COMPLETED)
    assert (await store.get(new.id)).result == b"from the holder"


async def test_a_list_returns_results_with_payloads_only(store: Harness, blocking: OwnConnection) -> None:
    await store.enqueue("t", b"payload")
    job = await start(store, blocking)
    job.result = b"result"
    assert await store.complete(job) == OK
    only_completed = JobFilter(type="t", status=JobStatus.COMPLETED)
    [bare] = (await store.producer.list_jobs(only_completed, ListOrder.OLDEST_FIRST, 10)).jobs
    [full] = (
        await store.producer.list_jobs(only_completed, ListOrder.OLDEST_FIRST, 10, with_payloads=True)
    ).jobs
    assert (bare.payload, bare.result, bare.status) == (b"", b"", JobStatus.COMPLETED)
    assert (full.payload, full.result, full.last_error_attempt) == (b"payload", b"result", 0)


def test_a_return_value_becomes_bytes_within_the_limit() -> None:
    raw, json = get_codec("bytes"), get_codec("json")
    assert result_bytes(None, 4, raw) == b""
    assert result_bytes(b"abcd", 4, raw) == result_bytes(b"abcd", 4, json) == b"abcd"
    assert result_bytes("é", 4, raw) == "é".encode()
    assert result_bytes(bytearray(b"ab"), 4, raw) == b"ab"
    assert result_bytes({"a": 1}, 8, json) == b'{"a":1}'
    with pytest.raises(Exception, match=r"result of 5 bytes is over the limit of 4 bytes \(max_result_bytes"):
        result_bytes(b"abcde", 4, raw)
    with pytest.raises(Exception, match="returned dict, which codec 'bytes' cannot encode as its result"):
        result_bytes({"a": 1}, 4, raw)


async def test_a_workers_handler_returns_the_jobs_result(store: Harness, settings: Settings) -> None:
    async def handler(job: Job) -> str | bytes | None:
        return {b"text": "texte", b"bytes": b"\x00\x01", b"none": None}[job.payload]

    async with running(make_worker(settings, handler)):
        jobs = {payload: await store.enqueue("t", payload) for payload in (b"text", b"bytes", b"none")}
        for job in jobs.values():
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    results = {payload: (await store.get(job.id)).result for payload, job in jobs.items()}
    assert results == {b"text": b"texte", b"bytes": b"\x00\x01", b"none": b""}


@dataclasses.dataclass
class Greeting:
    name: str


async def test_a_typed_handlers_result_is_encoded_by_its_codec(store: Harness, settings: Settings) -> None:
    async def greet(greeting: Greeting) -> dict[str, str]:
        return {"hello": greeting.name}

    async with running(make_worker(settings, greet)):
        job = await store.enqueue("t", b'{"name": "Ada"}')
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    assert (await store.get(job.id)).result == b'{"hello":"Ada"}'


async def test_a_result_over_the_limit_fails_the_run_for_good(store: Harness, settings: Settings) -> None:
    async def handler(job: Job) -> object:
        return b"x" * int(job.payload) if job.payload != b"dict" else {"not": "bytes"}

    limited = dataclasses.replace(settings, max_result_bytes=8)
    async with running(make_worker(limited, handler, max_attempts=3)):
        at_limit, over, unsupported = [await store.enqueue("t", p) for p in (b"8", b"9", b"dict")]
        await eventually(status_is(store, over.id, JobStatus.FAILED), what="failure")
        await eventually(status_is(store, unsupported.id, JobStatus.FAILED), what="failure")
        await eventually(status_is(store, at_limit.id, JobStatus.COMPLETED), what="completion")
    failed = await store.get(over.id)
    assert failed.attempt == 1  # not retried: the same run would return the same
    assert failed.last_error == (
        "jobqueue.worker.results.ResultTooLarge: result of 9 bytes is over the limit of 8 bytes "
        "(max_result_bytes, JOBQUEUE_MAX_RESULT_BYTES)"
    )
    assert not await store.redis.hexists(store.keys.job(over.id), "result")
    assert "returned dict, which codec 'bytes' cannot encode" in (await store.get(unsupported.id)).last_error
    assert (await store.get(at_limit.id)).result == b"x" * 8


async def test_a_worker_that_lost_its_lease_leaves_the_new_holders_result(
    store: Harness, settings: Settings
) -> None:
    started, taken_over = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> bytes:
        if job.attempt > 1:
            return b"second run"
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await taken_over.wait()
        return b"first run, stale"

    async with running(make_worker(settings, handler, run_reaper=False, concurrency=1)):
        job = await store.enqueue("t", b"")
        await asyncio.wait_for(started.wait(), 10)
        await take_over(store, job)
        taken_over.set()
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="second attempt")
    done = await store.get(job.id)
    assert (done.attempt, done.result) == (2, b"second run")


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="JOBQUEUE_MAX_RESULT_BYTES"):
        Settings(max_result_bytes=-1)
    assert Settings.from_env({"JOBQUEUE_MAX_RESULT_BYTES": "10"}).max_result_bytes == 10


async def test_the_inline_queue_stores_results_as_a_worker_does() -> None:
    async def greet(greeting: Greeting) -> dict[str, str]:
        return {"hello": greeting.name}

    async def too_much(job: Job) -> bytes:
        return b"x" * 17

    queue = InlineQueue(
        Worker("greet", greet), Worker("big", too_much), settings=Settings(max_result_bytes=16)
    )
    job = await queue.enqueue("greet", {"name": "Ada"}, codec="json")
    assert (job.status, (await queue.get(job.id)).result) == (JobStatus.COMPLETED, b'{"hello":"Ada"}')
    big = await queue.enqueue("big")
    assert (big.status, big.attempt, big.result) == (JobStatus.FAILED, 1, b"")
    assert "result of 17 bytes is over the limit of 16 bytes" in big.last_error
