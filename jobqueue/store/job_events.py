"""The read side of the events streams: what WatchJob and WatchJobs stream.

Every transition script that changes jobs adds one entry to its partition's
stream `P:{pppp}:events` (docs/design.md, "Counts, indexes and events"):
`type`, `jobs` (space-separated `id:status:attempt`), and `worker` and `error`
when the change has them. A job's event is an entry and its index in `jobs`.

A `Position` is a point in one partition's stream: after a whole entry, or after
one job of it. A `Cursor` is what a client holds: the position of each partition
it watches, as one opaque string (`pppp:<entry id>[.<index>]`, comma-separated);
a partition it does not name is read from its first entry, which is right for a
partition whose types did not exist yet when the cursor was made (any other
partition a watch follows is named in every cursor it hands out).

Nothing here writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..model import JobStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Entries one read asks for at most: a catch-up is a series of bounded reads. An
# entry may hold thousands of jobs (an EnqueueJobs batch): a page is a watcher's
# only memory of its own, so it is small.
READ_COUNT = 50

_ENTRY_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_POSITION = re.compile(r"([0-9a-f]{4}):(\d{1,20})-(\d{1,20})(?:\.(\d{1,9}))?")
MAX_CURSOR_POSITIONS = 65_536  # as many as there are partitions


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """After entry (ms, seq) of a stream: all of it (`index` None), or up to job `index`.
    (0, 0) is the start: before every entry."""

    ms: int
    seq: int
    index: int | None = None

    @property
    def entry_id(self) -> str:
        return f"{self.ms}-{self.seq}"

    @property
    def is_start(self) -> bool:
        return self.ms == 0 and self.seq == 0

    @property
    def entry(self) -> tuple[int, int]:
        return (self.ms, self.seq)

    def text(self, partition: str) -> str:
        suffix = "" if self.index is None else f".{self.index}"
        return f"{partition}:{self.ms}-{self.seq}{suffix}"


START = Position(0, 0)


def entry_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq))


@dataclass(frozen=True, slots=True)
class JobChange:
    """One change of a job: its state after it (what every watch shows of an event)."""

    id: str
    type: str
    status: JobStatus
    attempt: int
    worker_id: str
    error: str
    at: int  # Unix ms: the entry's time (its id's first part, the Redis clock)


@dataclass(frozen=True, slots=True)
class JobEvent(JobChange):
    """A change, and where it is in its partition's stream."""

    position: Position  # the position right after this event


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry, decoded: the jobs one script call changed, as events."""

    key: tuple[int, int]  # (ms, seq) of its id
    type: str
    all_events: tuple[JobEvent, ...]  # in the order of `jobs`

    def first_after(self, position: Position) -> int:
        """The index of its first event after `position`."""
        if position.entry != self.key:
            return 0 if position.entry < self.key else len(self.all_events)
        return len(self.all_events) if position.index is None else position.index + 1

    def events(self, after: Position | None = None) -> tuple[JobEvent, ...]:
        """Its events after `after` (all of them if `after` is before this entry)."""
        return self.all_events if after is None else self.all_events[self.first_after(after) :]


def decode_entry(entry_id: bytes, fields: dict[bytes, bytes] | list[bytes]) -> Entry:
    """An entry as XRANGE or XREAD returns it (fields as a flat list, or a dict)."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    key = entry_key(entry_id)
    ms, seq = key
    job_type = fields.get(b"type", b"").decode()
    worker_id = fields.get(b"worker", b"").decode(errors="replace")
    error = fields.get(b"error", b"").decode(errors="replace")
    jobs = fields.get(b"jobs", b"").split()
    last = len(jobs) - 1
    events = []
    for i, item in enumerate(jobs):
        job_id, status, attempt = item.split(b":")
        events.append(
            JobEvent(
                id=job_id.decode(),
                type=job_type,
                status=JobStatus(int(status)),
                attempt=int(attempt),
                worker_id=worker_id,
                error=error,
                at=ms,
                # The last job's position is the whole entry: the next read starts after it.
                position=Position(ms, seq, None if i == last else i),
            )
        )
    return Entry(key=key, type=job_type, all_events=tuple(events))


def decode_entries(reply: list[Any] | None) -> list[Entry]:
    """XRANGE's reply: [[id, [field, value, ...]], ...]."""
    return [decode_entry(entry_id, fields) for entry_id, fields in reply or ()]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The positions a client resumes from, by partition."""

    positions: dict[str, Position]

    def get(self, partition: str) -> Position:
        return self.positions.get(partition, START)

    def text(self) -> str:
        return ",".join(p.text(part) for part, p in sorted(self.positions.items()))


def parse_cursor(text: str, field: str = "cursor") -> Cursor:
    """A cursor as `Cursor.text` writes it; InvalidInput naming `field` otherwise."""
    positions: dict[str, Position] = {}
    items = text.split(",") if text else []
    if len(items) > MAX_CURSOR_POSITIONS:
        raise InvalidInput(field, f"{len(items)} positions; at most {MAX_CURSOR_POSITIONS}")
    for item in items:
        match = _POSITION.fullmatch(item)
        if match is None:
            shown = item if len(item) <= 40 else item[:40] + "…"
            raise InvalidInput(
                field, f"{shown!r} is not a position (pass back a cursor a watch sent, unchanged)"
            )
        partition, ms, seq, index = match.groups()
        if partition in positions:
            raise InvalidInput(field, f"partition {partition} appears twice")
        positions[partition] = Position(int(ms), int(seq), None if index is None else int(index))
    return Cursor(positions)


@dataclass(frozen=True, slots=True)
class Page:
    """What one read after a position found."""

    entries: list[Entry]
    # Events after the position were lost (trimmed from the stream before this read).
    gap: bool


class JobEvents:
    """Reads of one deployment's events streams (keys from store/keys.py)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def after(self, key: str, position: Position, count: int = READ_COUNT) -> Page:
        """Up to `count` entries from the one `position` points into (inclusive, so
        that its presence tells whether the stream still holds it): a position whose
        entry is gone while later ones are there was trimmed past, a gap. The
        capped stream is trimmed from its start only."""
        start = "-" if position.is_start else position.entry_id
        reply = await self.redis.xrange(key, start, "+", count=count)
        entries = decode_entries(reply)
        gap = bool(entries) and not position.is_start and entries[0].key != position.entry
        if gap and position.index is None and entries[0].key == (position.ms, position.seq + 1):
            # After the whole entry, and the first one left is the very next: entry ids
            # are made by XADD `*` (the last id's sequence + 1 within a millisecond), so
            # nothing came between them. Only the position's own entry, which its
            # reader had seen, was trimmed.
            gap = False
        return Page(entries, gap)

    async def last_entry(self, key: str) -> Position:
        """The position after the stream's last entry (the start if it has none)."""
        reply: list[Any] = await self.redis.xrevrange(key, "+", "-", count=1)  # type: ignore[assignment]
        return Position(*entry_key(reply[0][0])) if reply else START
