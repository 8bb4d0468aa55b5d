"""Progress reports and results on the watch streams: progress.lua's entry in the
events stream, sent only to the watches that ask for it (WatchJob/WatchJobs
`progress`), and WatchJob's COMPLETED event with the job's result; through
grpcurl, Connect JSON over HTTP (curl) and the Python clients."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from jobqueue.client import Client, SyncClient, WatchEvent
from jobqueue.model import Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.store.connection import OwnConnection
from jobqueue.store.job_events import JobEvents
from jobqueue.store.outcomes import OK, Outcome, Result

from .conftest import eventually, status_is
from .harness import Harness
from .test_cli import jobqueue
from .test_store import start
from .test_watch import WATCH_JOB, WATCH_JOBS, Streamer, started, stream, streamers  # noqa: F401
from .test_worker import make_worker, running, take_over

pytestmark = pytest.mark.redis_targets

RUNNING, COMPLETED = "JOB_STATUS_RUNNING", "JOB_STATUS_COMPLETED"


# -- the store: progress.lua's entry ------------------------------------------------------


async def test_a_report_is_an_entry_of_the_events_stream_and_a_stale_one_is_none(
    store: Harness, blocking: OwnConnection
) -> None:
    key = store.keys.queue("t").events
    events = JobEvents(store.redis)
    await store.enqueue("t", b"")
    run = await start(store, blocking)
    claimed = await events.last_entry(key)
    assert await store.transitions.progress(run, 0.25, "a quarter") == OK
    _, report = (await events.after(key, claimed)).entries  # from the claim's entry, inclusive
    assert report.is_progress
    (event,) = report.all_events
    assert (event.id, event.status, event.attempt) == (run.id, JobStatus.RUNNING, 1)
    assert (event.worker_id, event.progress, event.progress_message) == (run.worker_id, 0.25, "a quarter")
    # A change of status is no report; a stale holder writes no entry.
    await take_over(store, run)
    taken_back = await events.last_entry(key)
    (back,) = (await events.after(key, taken_back)).entries
    assert not back.is_progress and back.all_events[0].progress is None
    assert await store.transitions.progress(run, 0.5, "stale") == Result(Outcome.STALE, JobStatus.PENDING)
    assert await events.last_entry(key) == taken_back


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """`condition` as a check for `eventually`."""

    async def check() -> bool:
        return condition()

    return check


# -- a worker, and every client ---------------------------------------------------------


async def test_progress_reaches_the_watches_that_ask_and_the_result_ends_watch_job(
    store: Harness,
    settings: Settings,
    server_url: str,
    streamers: list[Streamer],  # noqa: F811
    tmp_path: Path,
) -> None:
    steps = [asyncio.Event(), asyncio.Event()]
    reported = [asyncio.Event(), asyncio.Event()]

    async def handler(job: Job) -> bytes:
        for i, (step, done) in enumerate(zip(steps, reported, strict=True)):
            job.set_progress((i + 1) / 4, f"step {i + 1}")
            done.set()
            await asyncio.wait_for(step.wait(), 30)
        return b"the result"

    job = await store.enqueue("t", b"")
    grpc = await stream("grpc", server_url, WATCH_JOB, {"id": job.id, "progress": True}, tmp_path / "g")
    by_type = await stream(
        "connect-http1", server_url, WATCH_JOBS, {"type": "t", "progress": True}, tmp_path / "c"
    )
    plain = await stream("connect-http1", server_url, WATCH_JOB, {"id": job.id}, tmp_path / "p")
    streamers.extend([grpc, by_type, plain])
    for watch in (grpc, by_type, plain):
        await started(watch)
    async with Client(server_url) as client:
        seen: list[WatchEvent] = []
        quiet_type = await client.watch_jobs("t")  # without progress: as before

        async def follow() -> None:
            async for event in await client.watch_job(job.id, progress=True):
                seen.append(event)

        following = asyncio.create_task(follow())
        async with running(make_worker(settings, handler, progress_interval_s=0.05)):
            for i, report in enumerate(reported):
                await asyncio.wait_for(report.wait(), 10)
                fraction = (i + 1) / 4
                for watch in (grpc, by_type):  # each report is an event, as it comes
                    await eventually(
                        holds(lambda w=watch, f=fraction: f in [e.get("progress") for e in w.events()]),
                        what=f"{watch.kind} sees progress {fraction}",
                    )
                await eventually(holds(lambda f=fraction: f in [e.progress for e in seen]), what="the client")
                steps[i].set()
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
        await asyncio.wait_for(following, 20)
        status_only = []
        async with quiet_type:
            async for event in quiet_type:
                status_only.append(event)
                if event.status is JobStatus.COMPLETED:
                    break
    for watch in (grpc, plain):
        assert await watch.wait() == 0, watch.output()
    expected = [
        ("JOB_STATUS_PENDING", None, None),
        (RUNNING, None, None),
        (RUNNING, 0.25, "step 1"),
        (RUNNING, 0.5, "step 2"),
        (COMPLETED, None, None),
    ]
    as_sent = [(e["status"], e.get("progress"), e.get("progressMessage")) for e in grpc.events()]
    assert as_sent == expected
    typed = [(e["status"], e.get("progress"), e.get("progressMessage")) for e in by_type.events()[1:]]
    assert typed == expected[1:]  # it started after the enqueue
    as_read = [(f"JOB_STATUS_{e.status.name}", e.progress, e.progress_message or None) for e in seen]
    assert as_read == expected
    # Without `progress`: the statuses only, as a watch written before it sees them.
    assert [e["status"] for e in plain.events()] == ["JOB_STATUS_PENDING", RUNNING, COMPLETED]
    assert [(e.status, e.progress) for e in status_only] == [
        (JobStatus.RUNNING, None),
        (JobStatus.COMPLETED, None),
    ]
    # WatchJob's last event carries the result; WatchJobs' does not.
    result = base64.b64encode(b"the result").decode()
    assert grpc.events()[-1]["result"] == plain.events()[-1]["result"] == result
    assert seen[-1].result == b"the result"
    assert "result" not in by_type.events()[-1] and status_only[-1].result == b""
    assert [e.result for e in seen[:-1]] == [b""] * 4
    # Resumed after its first event once it is finished: the rest, read back from Redis.
    with SyncClient(server_url) as sync:
        replayed = list(sync.watch_job(job.id, cursor=grpc.events()[0]["cursor"], progress=True))
        assert [(e.status, e.progress) for e in replayed] == [
            (JobStatus.RUNNING, None),
            (JobStatus.RUNNING, 0.25),
            (JobStatus.RUNNING, 0.5),
            (JobStatus.COMPLETED, None),
        ]
        assert replayed[-1].result == b"the result"
        without = list(sync.watch_job(job.id, cursor=grpc.events()[0]["cursor"]))
        assert [e.status for e in without] == [JobStatus.RUNNING, JobStatus.COMPLETED]
    # The CLI: `jobqueue watch ID --progress` prints the reports as RUNNING lines.
    args = ("watch", job.id, "--cursor", grpc.events()[0]["cursor"], "--url", server_url)
    printed = await asyncio.to_thread(jobqueue, *args, "--progress")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert [line.split("  ")[3].strip() for line in lines] == ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"]
    assert lines[1].endswith('progress 25%  "step 1"') and lines[2].endswith('progress 50%  "step 2"')
    plain_lines = (await asyncio.to_thread(jobqueue, *args)).stdout.splitlines()
    assert len(plain_lines) == 2 and "progress" not in plain_lines[0]


async def test_a_watch_of_a_finished_job_and_a_resumed_one_carry_the_result(
    store: Harness,
    settings: Settings,
    server_url: str,
    streamers: list[Streamer],  # noqa: F811
    tmp_path: Path,
) -> None:
    async def handler(job: Job) -> bytes:
        job.set_progress(0.5, "half")
        return b"\x00\xffdone"

    job = await store.enqueue("t", b"")
    async with running(make_worker(settings, handler)):
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    encoded = base64.b64encode(b"\x00\xffdone").decode()
    for kind in ("grpc", "connect-h2c"):
        watch = await stream(kind, server_url, WATCH_JOB, {"id": job.id}, tmp_path / kind)
        streamers.append(watch)
        assert await watch.wait() == 0, watch.output()
        (state,) = watch.events()  # its current state, and the end
        assert (state["status"], state["result"]) == (COMPLETED, encoded)
    with SyncClient(server_url) as client:
        (state,) = list(client.watch_job(job.id))
        assert state.result == b"\x00\xffdone" and state.progress is None
        (state,) = list(client.watch_job(job.id, progress=True))  # a final job's report is in the job
        assert state.progress is None
        failed = await store.enqueue("other", b"")
        await store.cancel(failed.id)
        (cancelled,) = list(client.watch_job(failed.id))
        assert cancelled.status is JobStatus.CANCELLED and cancelled.result == b""


async def test_watch_jobs_carries_results_when_asked(
    store: Harness,
    settings: Settings,
    server_url: str,
    streamers: list[Streamer],  # noqa: F811
    tmp_path: Path,
) -> None:
    async def handler(job: Job) -> bytes:
        return b"r:" + job.payload

    async with Client(server_url) as client:
        asked = await client.watch_jobs("t", results=True)
        plain = await client.watch_jobs("t")
        request = {"type": "t", "results": True}  # type: ignore[dict-item]
        curl = await stream("connect-h2c", server_url, WATCH_JOBS, request, tmp_path / "curl")
        streamers.append(curl)
        await started(curl)
        jobs = [await store.enqueue("t", bytes([65 + i])) for i in range(3)]
        async with running(make_worker(settings, handler)):
            for job in jobs:
                await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
        results: dict[str, bytes] = {}
        async with asked:
            async for event in asked:
                if event.status is JobStatus.COMPLETED:
                    results[event.id] = event.result
                if len(results) == len(jobs):
                    break
        assert results == {job.id: b"r:" + job.payload for job in jobs}
        async with plain:
            async for event in plain:
                assert event.result == b""  # not asked for
                if event.status is JobStatus.COMPLETED:
                    break

    def completed() -> dict[str, str]:
        return {e["id"]: e.get("result", "") for e in curl.events() if e.get("status") == COMPLETED}

    await eventually(holds(lambda: len(completed()) == len(jobs)), what="the results through curl")
    assert completed() == {job.id: base64.b64encode(b"r:" + job.payload).decode() for job in jobs}
