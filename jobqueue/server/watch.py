"""WatchJob and WatchJobs: job events streamed from the partitions' events streams.

One `Hub` per stream key reads it with one blocking XREAD at a time, on a
connection of its own, and keeps the entries it read last in a ring shared by
every watcher of that stream: 100 watchers cost one XREAD, not 100. A watcher
keeps only its position in each stream it follows. It reads from the ring
what follows its position; a watcher whose position is older than the ring (it
started from an older cursor, or fell behind) reads from Redis instead (XRANGE
from its position, a bounded page at a time) until it reaches the ring. So a
slow watcher costs Redis reads, never server memory. A hub with no watchers
stops.

A watch for every type follows the registry of types (`P:types`), read again
at most every TYPES_REFRESH_S by one shared read, and starts a partition it
did not follow from its first entry: a partition whose types did not exist when
the watch began has only entries that came after.

What a watch streams, and what its cursors are: docs/design.md ("Reads: job events").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..errors import InvalidInput, JobNotFound
from ..model import JobStatus, check_job_id, check_job_type, partition_of_id
from ..store.job_events import (
    READ_COUNT,
    START,
    Cursor,
    Entry,
    JobEvent,
    JobEvents,
    Position,
    decode_entry,
    entry_key,
    parse_cursor,
)
from ..supervise import raise_if_cancelled, supervise
from ..wire import job_change_to_proto as to_proto

if TYPE_CHECKING:
    from ..store import Store
    from ..store.connection import OwnConnection

log = logging.getLogger("jobqueue.server.watch")

# Entries a hub keeps for its watchers; one older than them reads from Redis. As
# many as the stream keeps (EVENTS_KEPT, include/changes.lua): the bound that
# matters is the next one.
RING_ENTRIES = 10_000
# ... and job events in them at most (an enqueue of a big batch is one entry).
RING_JOBS = 50_000
# Entries one XREAD of a hub takes at most.
HUB_READ_COUNT = 500
# How long one XREAD blocks before it asks again.
BLOCK_MS = 5_000
# How often a watch of every type looks for new types, at most.
TYPES_REFRESH_S = 2.0
# The most events WatchJobs' `max_batch` may put in one message.
MAX_BATCH = 1000


class Hub:
    """The reader of one events stream, shared by the watchers that follow it."""

    def __init__(self, store: Store, key: str) -> None:
        self.key = key
        self._store = store
        self._watchers: set[asyncio.Event] = set()
        self._ring: list[Entry] = []
        self._ring_keys: list[tuple[int, int]] = []
        self._ring_jobs = 0
        self._responses: dict[tuple[int, int], list[pb.WatchJobsResponse]] = {}
        # The ring holds every entry after `_covered` up to `_last` (None until started).
        self._covered: tuple[int, int] | None = None
        self._last: tuple[int, int] = (0, 0)
        self._started = asyncio.Event()
        self._task = asyncio.create_task(
            supervise(f"events reader {key}", self._run, store.outage), name=f"hub {key}"
        )

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def join(self, wake: asyncio.Event) -> None:
        self._watchers.add(wake)

    def leave(self, wake: asyncio.Event) -> None:
        self._watchers.discard(wake)

    def stop(self) -> None:
        self._task.cancel()

    async def started(self) -> None:
        await self._started.wait()

    def after(self, position: Position, limit: int = READ_COUNT) -> list[Entry] | None:
        """The ring's entries that hold events after `position` (at most `limit`), or None
        if the ring does not reach back to it (read those from Redis)."""
        if self._covered is None or position.entry < self._covered:
            return None
        if position.index is None:
            first = bisect.bisect_right(self._ring_keys, position.entry)
        else:
            first = bisect.bisect_left(self._ring_keys, position.entry)
        return self._ring[first : first + limit]

    async def _run(self) -> None:
        connection: OwnConnection = self._store.own_connection()
        try:
            if self._covered is None:
                reply = await connection.execute("XREVRANGE", self.key, "+", "-", "COUNT", 1)
                self._last = entry_key(reply[0][0]) if reply else (0, 0)
                self._covered = self._last
                self._started.set()
            while True:
                raise_if_cancelled()
                last_id = f"{self._last[0]}-{self._last[1]}"
                reply = await connection.execute(
                    "XREAD", "COUNT", HUB_READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", self.key, last_id,
                    blocks_s=BLOCK_MS / 1000,
                )  # fmt: skip
                if reply:
                    self._add([decode_entry(entry_id, fields) for entry_id, fields in reply[0][1]])
        finally:
            await connection.aclose()

    def _add(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._ring.append(entry)
            self._ring_keys.append(entry.key)
            self._ring_jobs += len(entry.all_events)
        self._last = entries[-1].key
        drop, jobs = 0, self._ring_jobs
        while drop < len(self._ring) - 1 and (len(self._ring) - drop > RING_ENTRIES or jobs > RING_JOBS):
            jobs -= len(self._ring[drop].all_events)
            drop += 1
        if drop:
            self._covered = self._ring_keys[drop - 1]
            for key in self._ring_keys[:drop]:
                self._responses.pop(key, None)
            del self._ring[:drop]
            del self._ring_keys[:drop]
        self._ring_jobs = jobs
        for wake in self._watchers:
            wake.set()

    def responses(self, entry: Entry, partition: str) -> list[pb.WatchJobsResponse]:
        """The WatchJobs messages of an entry's events, for a watch of one partition: made
        once for all the watchers of the ring's entries (a message is a few objects, and
        each watcher of a busy type sends every one)."""
        cached = self._responses.get(entry.key)
        if cached is None:
            cached = [pb.WatchJobsResponse(event=_event(e, partition)) for e in entry.all_events]
            if self._covered is not None and entry.key > self._covered:
                self._responses[entry.key] = cached
        return cached


class Hubs:
    """The server's hubs, by stream key, and the shared read of the types registry."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = JobEvents(store.redis)
        self._hubs: dict[str, Hub] = {}
        self._partitions: dict[str, str] = {}  # partition -> events key, of every type
        self._types_read_at = float("-inf")
        self._types_reading: asyncio.Future[None] | None = None

    @property
    def running(self) -> int:
        return len(self._hubs)

    def join(self, key: str, wake: asyncio.Event) -> Hub:
        hub = self._hubs.get(key)
        if hub is None:
            hub = self._hubs[key] = Hub(self.store, key)
        hub.join(wake)
        return hub

    def leave(self, key: str, wake: asyncio.Event) -> None:
        hub = self._hubs.get(key)
        if hub is None:
            return
        hub.leave(wake)
        if not hub.watchers:
            del self._hubs[key]
            hub.stop()

    async def partitions(self) -> dict[str, str]:
        """partition -> events key, for every type in the registry (read again when older
        than TYPES_REFRESH_S; concurrent callers share one read)."""
        if time.monotonic() - self._types_read_at >= TYPES_REFRESH_S:
            if self._types_reading is None:
                self._types_reading = asyncio.ensure_future(self._read_types())
            reading = self._types_reading
            try:
                await asyncio.shield(reading)
            finally:
                if reading.done() and self._types_reading is reading:
                    self._types_reading = None
        return self._partitions

    async def _read_types(self) -> None:
        members: set[bytes] = await self.store.redis.smembers(self.store.keys.types)  # type: ignore[assignment]
        covered = self.store.partitions.covered  # a type's partitions, all of them
        partitions = {p for t in members for p in await covered(t.decode())}
        self._partitions = {p: self.store.keys.events(p) for p in sorted(partitions)}
        self._types_read_at = time.monotonic()


class Watcher:
    """One watch's positions in the streams it follows, and its wake-up."""

    def __init__(self, hubs: Hubs, keys: dict[str, str], cursor: Cursor) -> None:
        self.hubs = hubs
        self.keys: dict[str, str] = {}  # partition -> events key
        self.positions: dict[str, Position] = {}
        self.wake = asyncio.Event()
        self._hubs: dict[str, Hub] = {}
        for partition, key in keys.items():
            self.follow(partition, key, cursor.get(partition))

    def follow(self, partition: str, key: str, position: Position) -> None:
        self.keys[partition] = key
        self.positions[partition] = position
        self._hubs[partition] = self.hubs.join(key, self.wake)

    def close(self) -> None:
        for partition, key in self.keys.items():
            if partition in self._hubs:
                self.hubs.leave(key, self.wake)
        self._hubs.clear()

    def cursor(self) -> Cursor:
        return Cursor(dict(self.positions))

    def hub(self, partition: str) -> Hub:
        return self._hubs[partition]

    async def entries(self, partition: str) -> tuple[list[Entry], bool]:
        """What follows this watcher's position in `partition`: from the hub's ring, or
        from Redis if the ring does not reach back to it; and whether events were lost."""
        hub = self._hubs[partition]
        await hub.started()
        position = self.positions[partition]
        entries = hub.after(position)
        if entries is not None:
            return entries, False
        page = await self.hubs.events.after(self.keys[partition], position)
        return page.entries, page.gap

    async def wait(self, timeout_s: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.wake.wait()


def _event(event: JobEvent, partition: str) -> pb.JobEvent:
    """The message of an event of a one-partition watch: its cursor is its position."""
    return to_proto(event, event.position.text(partition))


async def watch_jobs(hubs: Hubs, request: pb.WatchJobsRequest) -> AsyncIterator[pb.WatchJobsResponse]:
    """WatchJobs: first the position it starts from (an event with only a cursor), then
    every event of the type (or of every type) after it, in each partition's order:
    one a message, or with `max_batch` as many as there are, up to it."""
    job_type = check_job_type(request.type) if request.type else ""
    cursor = parse_cursor(request.cursor)
    if not 0 <= request.max_batch <= MAX_BATCH:
        raise InvalidInput("max_batch", f"{request.max_batch}; from 0 to {MAX_BATCH} (0 or 1: no batches)")
    if job_type:
        # A hub per partition of the type (one, unless it is spread: "Partitions of a type").
        keys = {p: hubs.store.keys.events(p) for p in await hubs.store.partitions.covered(job_type)}
        _only(cursor, keys, f"type {job_type!r}")
    else:
        keys = dict(await hubs.partitions())  # its own: the cursor may add partitions
        keys |= {p: hubs.store.keys.events(p) for p in cursor.positions if p not in keys}
    if not request.cursor:
        starts = await asyncio.gather(*(hubs.events.last_entry(key) for key in keys.values()))
        cursor = Cursor(dict(zip(keys, starts, strict=True)))
    watcher = Watcher(hubs, keys, cursor)
    try:
        yield pb.WatchJobsResponse(event=pb.JobEvent(cursor=watcher.cursor().text()))
        changes = _changes(hubs, watcher, job_type, request.progress)
        if request.results:
            changes = _with_results(hubs, changes)
        if request.max_batch <= 1:
            async for change in changes:
                if change is not _SENT_ALL:
                    yield change
            return
        batch: list[pb.JobEvent] = []
        gap = False
        result_bytes = 0
        async for change in changes:
            if change is _SENT_ALL or (change.gap and batch):  # a gap is only ever its first event's
                if batch:
                    yield pb.WatchJobsResponse(events=batch, gap=gap)
                    batch, result_bytes = [], 0
                if change is _SENT_ALL:
                    continue
            if not batch:
                gap = change.gap
            event = cast(pb.JobEvent, change.event)  # _changes sends events only
            batch.append(event)
            result_bytes += len(event.result)
            if len(batch) == request.max_batch or result_bytes > RESULTS_PER_BATCH:
                yield pb.WatchJobsResponse(events=batch, gap=gap)
                batch, result_bytes = [], 0
    finally:
        watcher.close()


# What `_changes` yields when it has sent every event it has and is about to wait.
_SENT_ALL = pb.WatchJobsResponse()

# A WatchJobs batch that carries results closes once they pass this many bytes: a
# batch of 1,000 results of up to 1 MiB each would be one message of a gigabyte.
RESULTS_PER_BATCH = 4 * 1024 * 1024


async def _with_results(
    hubs: Hubs, changes: AsyncIterator[pb.WatchJobsResponse]
) -> AsyncIterator[pb.WatchJobsResponse]:
    """`changes` with each COMPLETED job's result, read from the job as its event is
    sent (the stream's entries stay small; the hub's messages are shared by its
    watchers, so an event with a result is a copy)."""
    completed = pb.JobStatus.COMPLETED
    async for change in changes:
        event = change.event
        if event is not None and event.status == completed and event.id and not event.result:
            stored = await hubs.store.inspect.result(event.id)
            if stored:
                with_result = copy.copy(event)
                with_result.result = stored
                yield pb.WatchJobsResponse(event=with_result, gap=change.gap)
                continue
        yield change


async def _changes(
    hubs: Hubs, watcher: Watcher, job_type: str, progress: bool
) -> AsyncIterator[pb.WatchJobsResponse]:
    """The watch's events after its positions, one a message, moving them; _SENT_ALL
    whenever it has none left to send, before it waits for more. Progress reports
    only if `progress`: without it, their entries are passed over."""
    gap = False  # events were lost before the next one sent
    while True:
        watcher.wake.clear()
        moved = False
        for partition in list(watcher.keys):
            entries, lost = await watcher.entries(partition)
            gap |= lost
            before = watcher.positions[partition]
            for entry in entries:
                position = watcher.positions[partition]
                if entry.is_progress and not progress:
                    pass  # a report this watch did not ask for: passed over, the position moves on
                elif job_type and entry.type == job_type:
                    first = entry.first_after(position)
                    responses = watcher.hub(partition).responses(entry, partition)
                    for event, response in zip(entry.all_events[first:], responses[first:], strict=True):
                        watcher.positions[partition] = event.position
                        yield pb.WatchJobsResponse(event=response.event, gap=True) if gap else response
                        gap = False
                elif not job_type:
                    for event in entry.events(position):
                        watcher.positions[partition] = event.position
                        yield pb.WatchJobsResponse(event=to_proto(event, watcher.cursor().text()), gap=gap)
                        gap = False
                watcher.positions[partition] = Position(*entry.key)
            moved |= watcher.positions[partition] != before
        if not job_type:
            for partition, key in (await hubs.partitions()).items():
                if partition not in watcher.keys:
                    watcher.follow(partition, key, START)
                    moved = True
        if not moved:
            yield _SENT_ALL
            await watcher.wait(None if job_type else TYPES_REFRESH_S)


def _only(cursor: Cursor, keys: dict[str, str], what: str) -> None:
    """A cursor for one partition's watch must name that partition and no other."""
    if cursor.positions and set(cursor.positions) != set(keys):
        raise InvalidInput("cursor", f"not a cursor of a watch of {what} (pass back one such a watch sent)")


async def watch_job(
    hubs: Hubs, request: pb.WatchJobRequest, *, results: bool = True
) -> AsyncGenerator[pb.WatchJobResponse, None]:
    """WatchJob: the job's current state (without a cursor), then its changes (and its
    progress reports if the request asks for them); the stream ends after a final
    status. An event of a COMPLETED job carries its result, read from the job then,
    unless `results` is False (WaitJob, which reads the whole job once it is final)."""
    job_id = check_job_id(request.id)
    cursor = parse_cursor(request.cursor)
    partition = partition_of_id(job_id)
    key = hubs.store.keys.events(partition)
    _only(cursor, {partition: key}, f"job {job_id}")
    follow = _JobFollow(hubs, job_id, partition, request.progress, results)
    state = await _state(hubs, job_id, key, request.progress)
    if state is None:
        raise JobNotFound(job_id)
    if not request.cursor:
        yield pb.WatchJobResponse(event=await follow.event(state))
        if state.status.is_final:
            return
        position = state.position
    else:
        position = cursor.get(partition)
        if state.status.is_final:
            # It changes no more: what it did after the cursor, up to now.
            async for response in _replay(hubs, follow, key, position, state.position):
                yield response
            return
    watcher = Watcher(hubs, {partition: key}, Cursor({partition: position}))
    try:
        while True:
            watcher.wake.clear()
            entries, gap = await watcher.entries(partition)
            if gap:
                # Its events were lost: its current state instead, and on from there.
                state = await _state(hubs, job_id, key, request.progress)
                if state is None:
                    raise JobNotFound(job_id)
                watcher.positions[partition] = state.position
                yield pb.WatchJobResponse(event=await follow.event(state), gap=True)
                if state.status.is_final:
                    return
                continue
            before = watcher.positions[partition]
            for entry in entries:
                for event in follow.events_of(entry, watcher.positions[partition]):
                    yield pb.WatchJobResponse(event=await follow.event(event))
                    if event.status.is_final:
                        return
                watcher.positions[partition] = Position(*entry.key)
            if watcher.positions[partition] == before:
                await watcher.wait()
    finally:
        watcher.close()


class _JobFollow:
    """What one WatchJob sends of the events it reads: the job's own, progress reports
    only if asked for, and the result with a COMPLETED one."""

    def __init__(self, hubs: Hubs, job_id: str, partition: str, progress: bool, results: bool) -> None:
        self.hubs = hubs
        self.job_id = job_id
        self.partition = partition
        self.progress = progress
        self.results = results

    def events_of(self, entry: Entry, after: Position) -> list[JobEvent]:
        """The job's events of `entry` after `after` that this watch sends."""
        if entry.is_progress and not self.progress:
            return []
        return [event for event in entry.events(after) if event.id == self.job_id]

    async def event(self, event: JobEvent) -> pb.JobEvent:
        """The message of one of its events; a COMPLETED one's with the job's result,
        read now (the stream's entry stays small; a job gone since has none)."""
        if self.results and event.status is JobStatus.COMPLETED and not event.result:
            stored = await self.hubs.store.inspect.result(self.job_id)
            if stored:
                event = dataclasses.replace(event, result=stored)
        return _event(event, self.partition)


async def _replay(
    hubs: Hubs, follow: _JobFollow, key: str, position: Position, until: Position
) -> AsyncIterator[pb.WatchJobResponse]:
    """A finished job's events after `position`, up to `until`, read from Redis."""
    gap = False
    for _ in range(RING_ENTRIES):  # bounded: `until` is at most the stream's length away
        page = await hubs.events.after(key, position)
        gap |= page.gap
        entries = [entry for entry in page.entries if entry.key <= until.entry]
        for entry in entries:
            for event in follow.events_of(entry, position):
                yield pb.WatchJobResponse(event=await follow.event(event), gap=gap)
                gap = False
            position = Position(*entry.key)
        if len(entries) < len(page.entries) or len(page.entries) < READ_COUNT:
            return


async def _state(hubs: Hubs, job_id: str, events_key: str, progress: bool) -> JobEvent | None:
    """The job's current state as an event, read atomically with its stream's last
    entry: the events after that position are the changes after this state. With
    `progress`, a RUNNING job's with its run's last report, if it made one (the
    report's token is the run's lease: store/codec.py, set_progress_fields)."""
    job_key = hubs.store.keys.job(job_id)
    async with hubs.store.redis.pipeline(transaction=True) as pipe:
        pipe.hmget(job_key, ["type", "status", "attempt", "worker_id", "last_error", "last_error_attempt",
                             "updated_at", "progress", "progress_message", "progress_token",
                             "lease_token"])  # fmt: skip
        pipe.xrevrange(events_key, "+", "-", count=1)
        fields, last = await pipe.execute()
    job_type, status, attempt, worker_id, error, error_attempt, updated_at = fields[:7]
    reported, message, report_token, lease_token = fields[7:]
    if status is None:
        return None
    position = Position(*entry_key(last[0][0])) if last else START
    current_error = error is not None and error_attempt is not None and error_attempt == attempt
    status = JobStatus(int(status))
    has_report = progress and status is JobStatus.RUNNING and reported is not None
    has_report = has_report and report_token is not None and report_token == lease_token
    return JobEvent(
        id=job_id,
        type=_text(job_type),
        status=status,
        attempt=int(attempt or 0),
        worker_id=_text(worker_id),
        error=_text(error) if current_error else "",
        at=int(updated_at or 0),
        position=position,
        progress=float(reported) if has_report else None,
        progress_message=_text(message) if has_report else "",
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")
