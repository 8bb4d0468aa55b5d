"""WatchJob and WatchJobs: job events from the partitions' events streams, through
grpcurl, the Connect protocol over HTTP (curl), the Python clients and the CLI;
one XREAD per stream however many watch; streams that end (gone clients, SIGTERM).

The events are written by the transition scripts (include/changes.lua); the
decoder's tests write entries of that shape themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.client import Client, SyncClient, WatchEvent
from jobqueue.errors import InvalidInput
from jobqueue.model import EnqueueRequest, JobStatus, new_job_id, partition_of_type
from jobqueue.redis_server import RedisServer
from jobqueue.server import watch as server_watch
from jobqueue.store.job_events import START, JobEvents, Position, decode_entries, parse_cursor
from jobqueue.store.keys import Keyspace

from .conftest import ROOT, Spawn, eventually, jobqueue_server_process, json_documents
from .harness import Harness
from .test_api import SERVICE, grpcurl, host_port, tool
from .test_streams import SERVERS, assert_quiet, envelope, frames

pytestmark = pytest.mark.redis_targets

WATCH_JOB = f"{SERVICE}/WatchJob"
WATCH_JOBS = f"{SERVICE}/WatchJobs"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def events_key(job_type: str, prefix: str = "jq") -> str:
    return Keyspace(prefix).queue(job_type).events


# -- the reader (store/job_events.py) ------------------------------------------------------


async def test_entries_decode_into_job_events_after_a_position(redis: Redis) -> None:
    key = events_key("decode")
    ids = [new_job_id(partition_of_type("decode")) for _ in range(3)]
    first = await redis.xadd(key, {"type": "decode", "jobs": " ".join(f"{i}:1:0" for i in ids)})
    second = await redis.xadd(
        key, {"type": "decode", "jobs": f"{ids[0]}:4:3", "worker": "w1", "error": "boom"}
    )
    entries = decode_entries(await redis.xrange(key))
    assert [e.type for e in entries] == ["decode", "decode"]
    events = entries[0].events()
    assert [(e.id, e.status, e.attempt) for e in events] == [(i, JobStatus.PENDING, 0) for i in ids]
    # The last job's position is the whole entry; the others point into it.
    assert [e.position.index for e in events] == [0, 1, None]
    assert entries[0].events(events[0].position) == events[1:]
    assert entries[0].events(events[2].position) == ()
    assert entries[1].events(events[2].position) == entries[1].all_events
    (failed,) = entries[1].events()
    assert (failed.status, failed.attempt, failed.worker_id, failed.error) == (
        JobStatus.FAILED,
        3,
        "w1",
        "boom",
    )
    assert failed.at == int(second.decode().split("-")[0]) and first < second


async def test_a_position_trimmed_away_is_a_gap(redis: Redis) -> None:
    key = events_key("gaps")
    job = new_job_id(partition_of_type("gaps"))
    ids = [await redis.xadd(key, {"type": "gaps", "jobs": f"{job}:1:0"}) for _ in range(3)]
    reader = JobEvents(redis)
    at_first = Position(*map(int, ids[0].decode().split("-")))
    page = await reader.after(key, at_first)
    assert not page.gap and page.entries[0].key == at_first.entry
    assert not (await reader.after(key, START)).gap  # the start is never a gap
    await redis.xtrim(key, maxlen=1, approximate=False)
    page = await reader.after(key, at_first)
    assert page.gap and len(page.entries) == 1
    assert await reader.last_entry(key) == Position(*map(int, ids[2].decode().split("-")))
    assert await reader.last_entry(events_key("no-such-type")) == START


async def test_a_position_whose_own_entry_alone_was_trimmed_is_no_gap(redis: Redis) -> None:
    """Trimmed exactly up to the position's entry: the entry the reader had seen is gone,
    the next one is there, nothing was lost. (Ids as XADD `*` makes them in one millisecond:
    the sequence counts up.)"""
    key = events_key("trimmed")
    job = new_job_id(partition_of_type("trimmed"))
    for entry_id in ("1000-0", "1000-1", "1000-2", "1001-0"):
        await redis.xadd(key, {"type": "trimmed", "jobs": f"{job}:1:0 {job}:2:1"}, id=entry_id)
    reader = JobEvents(redis)
    await redis.xtrim(key, minid="1000-1", approximate=False)  # only the position's entry goes
    page = await reader.after(key, Position(1000, 0))
    assert not page.gap and page.entries[0].key == (1000, 1)
    # Inside the trimmed entry (its second job not yet seen): that job was lost.
    assert (await reader.after(key, Position(1000, 0, 0))).gap
    await redis.xtrim(key, minid="1000-2", approximate=False)  # the position's entry and the next go
    assert (await reader.after(key, Position(1000, 0))).gap
    page = await reader.after(key, Position(1000, 1))
    assert not page.gap and [e.key for e in page.entries] == [(1000, 2), (1001, 0)]


def test_cursors_read_back_and_refuse_garbage() -> None:
    cursor = parse_cursor("00ab:17-0,ffff:18-2.3")
    assert cursor.get("00ab") == Position(17, 0) and cursor.get("ffff") == Position(18, 2, 3)
    assert cursor.get("1234") == START
    assert parse_cursor(cursor.text()) == cursor
    for bad in ("x", "00ab:17", "00AB:1-0", "00ab:1-0,00ab:2-0", "00ab:1-0.", "00ab:1-0;"):
        with pytest.raises(InvalidInput, match=r"^cursor: "):
            parse_cursor(bad)


# -- the hub, in process: a watcher slower than the ring --------------------------------------


async def test_a_watcher_slower_than_the_ring_catches_up_from_redis_and_misses_nothing(
    private_store: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_watch, "RING_ENTRIES", 3)
    hubs = server_watch.Hubs(private_store.store)
    slow = server_watch.watch_jobs(hubs, pb.WatchJobsRequest(type="ringed"))
    fast = server_watch.watch_jobs(hubs, pb.WatchJobsRequest(type="ringed"))
    try:
        assert not (await anext(slow)).event.id and not (await anext(fast)).event.id  # their start
        jobs = [await private_store.enqueue("ringed") for _ in range(12)]  # 12 entries
        got_fast = [(await anext(fast)).event.id for _ in jobs]
        assert got_fast == [j.id for j in jobs]
        (hub,) = hubs._hubs.values()
        assert len(hub._ring) <= 3  # the ring stayed bounded; the slow watcher is behind it
        got_slow = [(await anext(slow)).event.id for _ in jobs]
        assert got_slow == [j.id for j in jobs]
    finally:
        await slow.aclose()
        await fast.aclose()
    assert hubs.running == 0  # a hub without watchers stops


# -- streaming clients as processes -----------------------------------------------------------


@dataclass
class Streamer:
    kind: str
    process: asyncio.subprocess.Process
    out: Path

    def output(self) -> bytes:
        return self.out.read_bytes()

    def events(self) -> list[dict[str, Any]]:
        """The events received, in order, a message sent again (a keepalive) once."""
        if self.kind == "grpc":
            messages = json_documents(self.output().decode())
        else:
            messages = [json.loads(data) for flags, data in frames(self.output()) if flags == 0]
        events: list[dict[str, Any]] = []
        for message in messages:
            event = message.get("event", {})
            if not events or event.get("cursor") != events[-1].get("cursor"):
                events.append(event | {"gap": message.get("gap", False)})
        return events

    def messages(self) -> list[dict[str, Any]]:
        """The messages received, a message sent again (a keepalive) once."""
        if self.kind == "grpc":
            messages = json_documents(self.output().decode())
        else:
            messages = [json.loads(data) for flags, data in frames(self.output()) if flags == 0]
        return [m for i, m in enumerate(messages) if i == 0 or m != messages[i - 1]]

    def end(self) -> dict[str, Any]:
        """A Connect stream's end-of-stream message."""
        flags, data = frames(self.output())[-1]
        assert flags == 2, self.output()
        result: dict[str, Any] = json.loads(data)
        return result

    async def wait(self, limit_s: float = 30.0) -> int:
        async with asyncio.timeout(limit_s):
            return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)


async def stream(
    kind: str, url: str, method: str, request: dict[str, str], out: Path, *, max_time_s: float = 60
) -> Streamer:
    """grpcurl ("grpc"), or curl speaking Connect's streaming protocol with JSON over
    HTTP/1.1 ("connect-http1") or h2c ("connect-h2c")."""
    if kind == "grpc":
        argv = [tool("grpcurl"), "-plaintext", "-max-time", str(max_time_s), "-d", json.dumps(request),
                host_port(url), method]  # fmt: skip
    else:
        version = "--http1.1" if kind == "connect-http1" else "--http2-prior-knowledge"
        argv = [tool("curl"), "-sS", "-N", "--max-time", str(max_time_s), version, "--data-binary", "@-",
                "-H", "Content-Type: application/connect+json", f"{url}/{method}"]  # fmt: skip
    with out.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL if kind == "grpc" else subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
            start_new_session=True,
        )
    if kind != "grpc":
        assert process.stdin is not None
        process.stdin.write(envelope(request))
        await process.stdin.drain()
        process.stdin.close()
    return Streamer(kind, process, out)


@pytest.fixture
async def streamers() -> AsyncIterator[list[Streamer]]:
    started: list[Streamer] = []
    yield started
    for streamer in started:
        streamer.kill()


async def started(streamer: Streamer, count: int = 1) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        events = streamer.events()
        return events if len(events) >= count else None

    found: list[dict[str, Any]] = await eventually(
        enough, timeout=20, what=f"{streamer.kind}'s {count} event(s): {streamer.output()[-300:]!r}"
    )
    return found


@pytest.fixture
def client(server_url: str) -> Iterator[SyncClient]:
    with SyncClient(server_url) as c:
        yield c


# -- a job's life, in order ------------------------------------------------------------------


async def test_a_jobs_whole_life_in_order_through_grpcurl(
    server_url: str, client: SyncClient, spawn: Spawn, streamers: list[Streamer], tmp_path: Path
) -> None:
    job = client.enqueue("sleepy", "0")
    watch = await stream("grpc", server_url, WATCH_JOB, {"id": job.id}, tmp_path / "grpc.out")
    streamers.append(watch)
    (current,) = await started(watch)
    assert current["status"] == "JOB_STATUS_PENDING" and current["id"] == job.id
    spawn()  # a real worker (tests/worker_apps.py) runs it
    assert await watch.wait() == 0, watch.output()  # the stream ends after the final status
    events = watch.events()
    assert [e["status"] for e in events] == [
        "JOB_STATUS_PENDING",
        "JOB_STATUS_RUNNING",
        "JOB_STATUS_COMPLETED",
    ]
    assert [e.get("attempt", 0) for e in events] == [0, 1, 1]
    assert events[1]["workerId"] and events[2]["workerId"] == events[1]["workerId"]
    assert all(e["type"] == "sleepy" for e in events)
    assert [int(e["at"]) for e in events] == sorted(int(e["at"]) for e in events)
    assert len({e["cursor"] for e in events}) == 3
    # Resumed after its first event, the same changes; after its last, none (it is finished).
    again = [e.status for e in client.watch_job(job.id, cursor=events[0]["cursor"])]
    assert again == [JobStatus.RUNNING, JobStatus.COMPLETED]
    assert list(client.watch_job(job.id, cursor=events[2]["cursor"])) == []


@pytest.mark.parametrize("kind", ["connect-http1", "connect-h2c"])
async def test_watch_job_over_the_connect_protocol_ends_with_the_final_status(
    kind: str, server_url: str, client: SyncClient, streamers: list[Streamer], tmp_path: Path
) -> None:
    job = client.enqueue("connect-watch", "x")
    watch = await stream(kind, server_url, WATCH_JOB, {"id": job.id}, tmp_path / "out")
    streamers.append(watch)
    await started(watch)
    client.cancel(job.id)
    assert await watch.wait() == 0, watch.output()
    assert [e["status"] for e in watch.events()] == ["JOB_STATUS_PENDING", "JOB_STATUS_CANCELLED"]
    assert watch.end() == {}  # OK
    # A finished job: its state, and the end.
    again = await stream(kind, server_url, WATCH_JOB, {"id": job.id}, tmp_path / "again")
    streamers.append(again)
    assert await again.wait() == 0
    assert [e["status"] for e in again.events()] == ["JOB_STATUS_CANCELLED"]


async def test_watch_jobs_of_a_type_through_grpcurl_and_curl(
    server_url: str, client: SyncClient, streamers: list[Streamer], tmp_path: Path
) -> None:
    watches = [
        await stream(kind, server_url, WATCH_JOBS, {"type": "typed"}, tmp_path / kind, max_time_s=30)
        for kind in ("grpc", "connect-http1")
    ]
    streamers.extend(watches)
    for watch in watches:
        (start,) = await started(watch)
        assert set(start) == {"cursor", "gap"}  # where it starts: an event with only a cursor
    other = client.enqueue("not-typed")
    jobs = [client.enqueue("typed", str(i)) for i in range(3)]
    client.cancel(jobs[1].id)
    expected = [(j.id, "JOB_STATUS_PENDING") for j in jobs] + [(jobs[1].id, "JOB_STATUS_CANCELLED")]
    for watch in watches:
        events = (await started(watch, 1 + len(expected)))[1:]
        assert [(e["id"], e["status"]) for e in events] == expected, watch.kind
        assert other.id not in {e["id"] for e in events}


async def test_watch_jobs_sends_batches_of_up_to_max_batch_events(
    server_url: str, client: SyncClient, streamers: list[Streamer], tmp_path: Path
) -> None:
    request = {"type": "batched", "maxBatch": "20"}
    watches = [
        await stream(kind, server_url, WATCH_JOBS, request, tmp_path / kind, max_time_s=30)
        for kind in ("grpc", "connect-http1")
    ]
    streamers.extend(watches)
    for watch in watches:
        await started(watch)
    jobs = client.enqueue_many(_requests("batched", 50))  # one entry of 50 events

    async def sent(watch: Streamer, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            messages = watch.messages()[1:]
            return messages if sum(len(m.get("events", ())) for m in messages) >= count else None

        found: list[dict[str, Any]] = await eventually(enough, timeout=20, what=f"{watch.kind}: {count}")
        return found

    for watch in watches:
        assert [len(m["events"]) for m in await sent(watch, 50)] == [20, 20, 10], watch.kind
    client.cancel(jobs[7].id)
    for watch in watches:
        messages = await sent(watch, 51)
        assert [len(m["events"]) for m in messages] == [20, 20, 10, 1], watch.kind
        assert not any("event" in m for m in messages)
        events = [e for m in messages for e in m["events"]]
        assert [(e["id"], e["status"]) for e in events] == [
            *((j.id, "JOB_STATUS_PENDING") for j in jobs),
            (jobs[7].id, "JOB_STATUS_CANCELLED"),
        ]
        assert len({e["cursor"] for e in events}) == 51
    # Resuming from an event inside a batch starts right after it.
    with client.watch_jobs("batched", cursor=events[30]["cursor"]) as resumed:
        assert [next(resumed).id for _ in range(3)] == [j.id for j in jobs[31:34]]


# -- the Python clients ------------------------------------------------------------------------


async def test_resuming_from_a_cursor_misses_nothing(server_url: str) -> None:
    async with Client(server_url) as client:
        watch = await client.watch_jobs("resume")
        batch = await client.enqueue_many(_requests("resume", 3))  # one entry, three events
        seen = [await anext(watch), await anext(watch)]
        await watch.aclose()
        assert [e.id for e in seen] == [j.id for j in batch[:2]]
        # While nobody watches:
        later = await client.enqueue("resume")
        await client.cancel(batch[0].id)
        resumed = await client.watch_jobs("resume", cursor=seen[-1].cursor)
        async with resumed:
            rest = [await anext(resumed) for _ in range(3)]
        assert [(e.id, e.status) for e in rest] == [
            (batch[2].id, JobStatus.PENDING),
            (later.id, JobStatus.PENDING),
            (batch[0].id, JobStatus.CANCELLED),
        ]
        assert not any(e.gap for e in rest)
        assert resumed.cursor == rest[-1].cursor


def _requests(job_type: str, count: int) -> list[EnqueueRequest]:
    return [EnqueueRequest(job_type, str(i).encode()) for i in range(count)]


def test_the_blocking_client_iterates_a_jobs_changes(client: SyncClient, redis_url: str) -> None:
    job = client.enqueue("sync-watch")
    with client.watch_job(job.id) as events:
        assert next(events).status is JobStatus.PENDING
        client.cancel(job.id)
        rest = list(events)
    assert [e.status for e in rest] == [JobStatus.CANCELLED]
    assert isinstance(rest[0], WatchEvent) and rest[0].type == "sync-watch"


async def test_watch_jobs_of_every_type_follows_new_types(server_url: str) -> None:
    suffix = str(time.monotonic_ns())
    async with Client(server_url) as client, await client.watch_jobs() as watch:
        # Types that did not exist when the watch began (partitions it did not follow).
        jobs = [await client.enqueue(f"{name}-{suffix}") for name in ("alpha", "beta", "gamma")]
        seen: dict[str, WatchEvent] = {}
        async with asyncio.timeout(20):
            while len(seen) < len(jobs):
                event = await anext(watch)
                seen[event.id] = event
        assert set(seen) == {j.id for j in jobs}
        # Its cursor names every partition it follows.
        cursor = parse_cursor(watch.cursor)
        assert {partition_of_type(j.type) for j in jobs} <= set(cursor.positions)


# -- gaps ----------------------------------------------------------------------------------------


async def test_a_cursor_older_than_the_events_kept_reports_a_gap(
    server_url: str, client: SyncClient, redis: Redis, tmp_path: Path
) -> None:
    with client.watch_jobs("gapped") as watch:
        first = client.enqueue("gapped")
        seen = next(watch)
    assert seen.id == first.id
    lost = client.enqueue("gapped")
    kept = client.enqueue("gapped")
    await redis.xtrim(
        events_key("gapped"), maxlen=1, approximate=False
    )  # as the cap would, with more traffic
    with client.watch_jobs("gapped", cursor=seen.cursor) as resumed:
        event = next(resumed)
    assert (event.id, event.gap) == (kept.id, True)
    # WatchJob resumed past a gap sends the job's current state, flagged.
    ran = await grpcurl(server_url, WATCH_JOB, data={"id": lost.id, "cursor": seen.cursor})
    assert ran.code == 64 + 4, ran  # still open at grpcurl's deadline: the job is not finished
    (message,) = [m for m in json_documents(ran.out)]
    assert message["gap"] is True and message["event"]["status"] == "JOB_STATUS_PENDING"


# -- bad input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    request: dict[str, str]
    grpc_code: str
    connect_code: str
    message: str


INVALID = "InvalidArgument"
BAD = [
    Bad(WATCH_JOB, {"id": "nope"}, "InvalidArgument", "invalid_argument", "id: "),
    Bad(WATCH_JOB, {"id": ""}, "InvalidArgument", "invalid_argument", "id: "),
    Bad(WATCH_JOB, {"id": UNKNOWN_ID}, "NotFound", "not_found", f"job {UNKNOWN_ID} not found"),
    Bad(
        WATCH_JOB, {"id": UNKNOWN_ID, "cursor": "garbage"}, "InvalidArgument", "invalid_argument", "cursor: "
    ),
    Bad(
        WATCH_JOB, {"id": UNKNOWN_ID, "cursor": "1234:1-0"}, "InvalidArgument", "invalid_argument", "cursor: "
    ),
    Bad(WATCH_JOBS, {"type": "no spaces"}, "InvalidArgument", "invalid_argument", "type: "),
    Bad(WATCH_JOBS, {"type": "t", "cursor": "0000:1-0.x"}, INVALID, "invalid_argument", "cursor: "),
    Bad(WATCH_JOBS, {"type": "t", "cursor": "ffff:1-0"}, INVALID, "invalid_argument", "cursor: "),
    Bad(WATCH_JOBS, {"type": "t", "maxBatch": "1001"}, INVALID, "invalid_argument", "max_batch: "),
    Bad(WATCH_JOBS, {"maxBatch": "-1"}, INVALID, "invalid_argument", "max_batch: "),
]


@pytest.mark.parametrize("bad", BAD, ids=lambda bad: f"{bad.method.rpartition('/')[2]}-{bad.request}")
async def test_bad_input_is_refused_with_a_precise_code(
    bad: Bad, server_url: str, streamers: list[Streamer], tmp_path: Path
) -> None:
    assert partition_of_type("t") not in ("0000", "ffff")  # the cursors above name other partitions
    ran = await grpcurl(server_url, bad.method, data=bad.request)
    assert ran.code == 64 + {"InvalidArgument": 3, "NotFound": 5}[bad.grpc_code], ran
    assert f"Code: {bad.grpc_code}\n" in ran.err and bad.message in ran.err, ran.err
    assert "Traceback" not in ran.err
    watch = await stream("connect-http1", server_url, bad.method, bad.request, tmp_path / "out")
    streamers.append(watch)
    assert await watch.wait() == 0
    error = watch.end()["error"]
    assert error["code"] == bad.connect_code and bad.message in error["message"], error


async def test_the_python_client_raises_the_servers_refusal(server_url: str) -> None:
    with SyncClient(server_url) as client, pytest.raises(ConnectError) as refused:
        client.watch_job(UNKNOWN_ID)
    assert refused.value.code == Code.NOT_FOUND
    async with Client(server_url) as client:
        with pytest.raises(ConnectError) as refused:
            await client.watch_jobs("t", cursor="bad")
    assert refused.value.code == Code.INVALID_ARGUMENT and "cursor" in refused.value.message


# -- one XREAD per stream ------------------------------------------------------------------------


async def xread_clients(redis: Redis) -> int:
    clients: list[dict[str, Any]] = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread")


async def xread_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


async def test_many_watchers_share_one_xread_and_a_hub_without_watchers_stops(
    server_url: str, redis: Redis
) -> None:
    watchers = 20
    changes = 10
    async with Client(server_url, max_concurrent_calls=4) as client:
        watches = [await client.watch_jobs("shared") for _ in range(watchers)]
        try:
            assert await xread_clients(redis) == 1
            before = await xread_calls(redis)
            jobs = [await client.enqueue("shared") for _ in range(changes)]
            for watch in watches:
                async with asyncio.timeout(20):
                    got = [(await anext(watch)).id for _ in range(changes)]
                assert got == [j.id for j in jobs]
            # One XREAD per change at most (and a few that timed out), not one per watcher.
            assert await xread_calls(redis) - before <= changes + 3
        finally:
            for watch in watches:
                await watch.aclose()

    async def no_reader() -> bool:
        return await xread_clients(redis) == 0

    await eventually(no_reader, timeout=10, what="the hub to stop")


# -- the CLI ---------------------------------------------------------------------------------------


def jobqueue_cli(*args: str, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", *args], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT
        )


async def test_the_cli_prints_a_line_per_event(server_url: str, client: SyncClient, tmp_path: Path) -> None:
    job = client.enqueue("cli-watch")
    one = jobqueue_cli("watch", job.id, "--url", server_url, out=tmp_path / "one")
    every = jobqueue_cli(
        "watch", "--type", "cli-watch", "--json", "--url", server_url, out=tmp_path / "every"
    )
    try:

        async def watching() -> bool:
            return b"PENDING" in (tmp_path / "one").read_bytes()

        await eventually(watching, timeout=20, what="the job's current state")
        # --type prints what happens once it runs: its start is not visible, so send
        # changes until one shows.
        later = []

        async def seen() -> bool:
            later.append(client.enqueue("cli-watch"))
            return bool((tmp_path / "every").read_bytes().strip())

        await eventually(seen, timeout=20, interval=0.2, what="--type's first event")
        client.cancel(job.id)
        assert await asyncio.to_thread(one.wait, 20) == 0
        lines = (tmp_path / "one").read_text().splitlines()
        assert len(lines) == 2, lines
        for line, status in zip(lines, ("PENDING", "CANCELLED"), strict=True):
            fields = line.split()
            assert fields[1:4] == [job.id, "cli-watch", status], line
            assert fields[0][:4].isdigit() and "T" in fields[0]  # ISO 8601
            assert "attempt 0" in line

        async def cancelled_shown() -> bool:
            return b"JOB_STATUS_CANCELLED" in (tmp_path / "every").read_bytes()

        await eventually(cancelled_shown, timeout=20, what="--json's CANCELLED event")
        every.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(every.wait, 20) == 0
        documents = [json.loads(line) for line in (tmp_path / "every").read_text().splitlines()]
        assert documents[-1]["event"]["id"] == job.id and documents[-1]["event"]["cursor"]
        assert {d["event"]["id"] for d in documents[:-1]} <= {j.id for j in later}
    finally:
        for process in (one, every):
            if process.poll() is None:
                process.kill()
            process.wait(10)


async def test_the_cli_resumes_from_a_cursor(server_url: str, client: SyncClient, tmp_path: Path) -> None:
    with client.watch_jobs("cli-resume") as events:
        first = client.enqueue("cli-resume")
        cursor = next(events).cursor
    missed = [client.enqueue("cli-resume") for _ in range(2)]
    resumed = jobqueue_cli(
        "watch",
        "--type",
        "cli-resume",
        "--cursor",
        cursor,
        "--json",
        "--url",
        server_url,
        out=tmp_path / "out",
    )
    try:

        async def both() -> list[str] | None:
            lines = (tmp_path / "out").read_text().splitlines()
            return lines if len(lines) >= 2 else None

        lines = await eventually(both, timeout=20, what="the events after the cursor")
    finally:
        resumed.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(resumed.wait, 20) == 0
    ids = [json.loads(line)["event"]["id"] for line in lines]
    assert ids == [j.id for j in missed] and first.id not in ids


async def test_the_cli_says_what_is_wrong(server_url: str, tmp_path: Path) -> None:
    process = jobqueue_cli("watch", UNKNOWN_ID, "--url", server_url, out=tmp_path / "out")
    assert await asyncio.to_thread(process.wait, 20) == 3
    assert "not_found" in (tmp_path / "out").read_text()


# -- streams that end: gone clients, SIGTERM (jobqueue/server/streams.py) ------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("watch-redis")) as server:
        yield server


@pytest.mark.parametrize("server", SERVERS)
async def test_a_gone_http1_client_stops_its_watch_and_sigterm_ends_the_others(
    server: str, own_redis: RedisServer, tmp_path: Path, streamers: list[Streamer]
) -> None:
    redis = Redis.from_url(own_redis.url)
    log = tmp_path / "server.log"
    grace_s = 3.0
    try:
        with jobqueue_server_process(
            own_redis.url, log, server=server, JOBQUEUE_SERVER_SHUTDOWN_GRACE_S=str(grace_s)
        ) as (url, process):
            gone = await stream("connect-http1", url, WATCH_JOBS, {"type": "quiet"}, tmp_path / "gone")
            streamers.append(gone)
            await started(gone)

            async def reading() -> bool:
                return await xread_clients(redis) == 1

            # The stream's first message may go out before its hub's first XREAD.
            await eventually(reading, timeout=10, what="the watch's hub to read its stream")
            gone.kill()

            async def stopped() -> bool:
                return await xread_clients(redis) == 0

            # h2corn over HTTP/1.1 notices at the keepalive's second write at the latest.
            await eventually(stopped, timeout=15, what="the watch of a gone client to stop")
            with SyncClient(url) as client:
                job = client.enqueue("quiet")
            kinds = ("grpc", "connect-http1", "connect-h2c")
            open_ = [await stream(k, url, WATCH_JOB, {"id": job.id}, tmp_path / k) for k in kinds]
            streamers.extend(open_)
            for watch in open_:
                await started(watch)
            begun = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, grace_s + 10) == 0
            assert time.monotonic() - begun < grace_s + 1
            codes = [await watch.wait() for watch in open_]
            assert codes == [64 + 14, 0, 0], [w.output()[-300:] for w in open_]
            for watch in open_[1:]:
                assert watch.end()["error"]["code"] == "unavailable"
    finally:
        await redis.aclose()
    assert_quiet(log)
