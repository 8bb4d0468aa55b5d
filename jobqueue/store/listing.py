"""ListJobs' reads: pages over the indexes the scripts keep, and the page token.

A selection is one index per type: `live` (unfinished jobs, by created_at) or a
finished status' index (by finished_at), read in the order of (score, id) with
lua/page.lua; no SCAN, and a page costs O(types * (log N + page)), not O(N).
Every type's index is read for up to a page after the cursor and the reads are
merged by (score, id), a total order across types (ids are unique), so one
cursor serves them all. One type's page is one call of page.lua, which reads
the entries' jobs too; every type's is one pipelined round trip of such calls,
one per index, each reading the jobs of about the index's share of the last
merged page, with the set of types (read again only when the types have
changed since the last call); the jobs of the entries the merge keeps beyond those
are read in a second.
An id whose job is gone (expired) or no longer matches is left out.

The page token is opaque to clients: urlsafe base64 of a small JSON object with
the cursor (score, id) and a fingerprint of the filter and order, so that a
token from another filter is refused rather than read as a position in the
wrong index. Nothing here writes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import hashlib
import heapq
import json
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import InvalidInput
from ..model import Job, JobStatus, partition_of_id, partition_of_key
from ..selection import MAX_EXAMINED, JobFilter, TimeField
from . import scripts
from .codec import (
    LISTED_BODY_FIELDS,
    LISTED_DEPENDENT_FIELDS,
    LISTED_FIELDS,
    LISTED_MARKERS,
    Stored,
    decode_listed,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.typing import EncodableT

    from .keys import Keyspace
    from .partitions import Partitions

log = logging.getLogger("jobqueue.store")

_TOKEN_VERSION = 1
_INDEX_OF = {
    JobStatus.UNSPECIFIED: "live",
    JobStatus.PENDING: "live",
    JobStatus.RUNNING: "live",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.EXPIRED: "expired",
}
_UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)


@dataclasses.dataclass(frozen=True, slots=True)
class _Reading:
    """What a list reads of each job (codec.LISTED_FIELDS and after), with or without
    the payload and the result (then the first two values); `args`, the scripts' last
    arguments (include/listed.lua): how many fields are read of every job, how many of
    those are markers, the field names (the others', read only with a marker, last)."""

    args: tuple[EncodableT, ...]
    with_payloads: bool

    @classmethod
    def of(cls, with_payloads: bool) -> _Reading:
        body = LISTED_BODY_FIELDS if with_payloads else ()
        always = (*body, *LISTED_FIELDS, *LISTED_MARKERS)
        args = (len(always), len(LISTED_MARKERS), *always, *LISTED_DEPENDENT_FIELDS)
        return cls(args=args, with_payloads=with_payloads)


_READING = {with_payloads: _Reading.of(with_payloads) for with_payloads in (False, True)}
# With a scan filter, how many index entries a read takes at least (fewer round trips).
_SCAN_CHUNK = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a selection's order: after (or, newest first, before) this entry."""

    score: int
    id: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Ask:
    """One read of a selection's indexes: how many entries after which, in which order."""

    job_filter: JobFilter
    newest_first: bool
    count: int
    after: Cursor | None
    with_payloads: bool


# An index entry read with its job: (score, id, the job; None: gone or unreadable).
Entry = tuple[int, str, Job | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Selected:
    """What a read of a selection found: its jobs, and where to go on (None: nothing left)."""

    jobs: list[Job]
    cursor: Cursor | None


class Lister:
    def __init__(self, redis: Redis, keys: Keyspace, partitions: Partitions, *, retention_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.partitions = partitions
        self.retention_ms = retention_ms
        loaded = scripts.load(redis, "page", "read_jobs")
        self._page, self._read_jobs = loaded["page"], loaded["read_jobs"]
        self._types_seen: frozenset[str] = frozenset()  # by the last read of every type
        # The share of the last merged page (that kept any) each index (type, partition) gave.
        self._given: dict[tuple[str, str], float] = {}

    async def select(
        self,
        job_filter: JobFilter,
        *,
        newest_first: bool,
        count: int,
        after: Cursor | None = None,
        with_payloads: bool = False,
        examine: int = MAX_EXAMINED,
    ) -> Selected:
        """Up to `count` jobs of a checked filter's selection after `after`, examining at
        most `examine` index entries (a scan filter may so return fewer with a cursor)."""
        if job_filter.idempotency_key:
            return Selected(await self._by_idempotency_key(job_filter, with_payloads), None)
        # Every type's read takes the types it saw last and reads the set of types in the
        # same round trip: read again only when the types have changed since.
        check_types = not job_filter.type
        queues = await self._queues([job_filter.type] if job_filter.type else sorted(self._types_seen))
        jobs: list[Job] = []
        examined = 0
        cursor = after
        while True:
            wanted = count - len(jobs)
            chunk = min(examine - examined, max(wanted, _SCAN_CHUNK) if job_filter.scans else wanted)
            ask = _Ask(job_filter, newest_first, chunk, cursor, with_payloads)
            if check_types:
                check_types = False
                entries, more, types = await self._read_merged(queues, ask, read_types=True)
                if types != self._types_seen:
                    self._types_seen = types
                    queues = await self._queues(sorted(types))
                    continue
            elif len(queues) == 1:
                entries, more = await self._read_one(*queues[0], ask)
            else:
                entries, more, _ = await self._read_merged(queues, ask)
            looked = 0
            for _, _, job in entries:
                looked += 1
                if job is not None and _matches(job, job_filter):
                    jobs.append(job)
                    if len(jobs) == count:
                        more = more or looked < len(entries)
                        break
            if looked:
                examined += looked
                score, job_id, _ = entries[looked - 1]
                cursor = Cursor(score, job_id)
            if not more:
                return Selected(jobs, None)
            if len(jobs) == count or examined >= examine:
                return Selected(jobs, cursor)

    async def _queues(self, types: Sequence[str]) -> list[tuple[str, str]]:
        """The (type, partition) of each index of the types: a type spread over
        partitions is an index per partition, merged like types."""
        return [(t, p) for t in types for p in await self.partitions.covered(t)]

    def _page_args(self, ask: _Ask) -> list[EncodableT]:
        """page.lua's arguments up to its count (the index read alone)."""
        status, after = ask.job_filter.status, ask.after
        return [
            ask.job_filter.from_ms or "",
            ask.job_filter.to_ms or "",
            self.retention_ms if status not in (JobStatus.UNSPECIFIED, *_UNFINISHED) else "",
            "" if after is None else after.score,
            "" if after is None else after.id,
            int(ask.newest_first),
            ask.count,
        ]

    async def _read_one(self, job_type: str, partition: str, ask: _Ask) -> tuple[list[Entry], bool]:
        """The next entries of one type's index (in one partition) with their jobs, in
        one call of page.lua (it reads the jobs too); and whether any are left after them."""
        reading = _READING[ask.with_payloads]
        more, rows = _rows(await self._page.run(*self._page_call(job_type, partition, ask, ask.count)))
        entries = [
            (score, job_id, _decoded(job_id, job_type, values, reading)) for score, job_id, values in rows
        ]
        return entries, more

    def _page_call(
        self, job_type: str, partition: str, ask: _Ask, jobs: int
    ) -> tuple[list[str], list[EncodableT]]:
        """page.lua's keys and arguments for one queue's index, reading the jobs of its
        first `jobs` entries too."""
        index = getattr(self.keys.queue(job_type, partition), _INDEX_OF[ask.job_filter.status])
        prefix = self.keys.job_key_prefix(partition)
        args = [*self._page_args(ask), prefix, jobs, *_READING[ask.with_payloads].args]
        return self._page.keys(None, more=[index]), args

    async def _read_merged(
        self, queues: Sequence[tuple[str, str]], ask: _Ask, *, read_types: bool = False
    ) -> tuple[list[Entry], bool, frozenset[str]]:
        """The next entries of the queues' (type, partition) indexes, merged, with their
        jobs, whether any entries are left after them, and (`read_types`) the set of
        types read in the same round trip (else empty). One pipelined round trip of
        page.lua, one call per index, each reading the jobs of its first entries, about
        its share of the last merged page (a page of jobs in all, give or take, whatever
        the types' mix); then, only if the merge kept more of an index's entries than
        that, the jobs of those in a second."""
        reading = _READING[ask.with_payloads]
        calls = [
            self._page_call(t, p, ask, _jobs_read_first(ask.count, len(queues), self._given.get((t, p))))
            for t, p in queues
        ]
        first = [("SMEMBERS", self.keys.types)] if read_types else []
        replies = await self._page.run_each(calls, first)
        types = frozenset(t.decode() for t in replies.pop(0)) if read_types else frozenset()
        runs: list[list[tuple[int, str, Any, int]]] = []
        more = False
        for queue, reply in enumerate(replies):
            more_of_queue, rows = _rows(reply)
            more = more or more_of_queue
            runs.append([(score, job_id, values, queue) for score, job_id, values in rows])
        # (score, id) is unique: neither the values nor the queue are ever compared.
        merged = list(heapq.merge(*runs, reverse=ask.newest_first))
        kept = merged[: ask.count]
        more = more or len(merged) > ask.count
        if kept:
            given = [0] * len(queues)
            for _, _, _, queue in kept:
                given[queue] += 1
            self._given = {q: n / len(kept) for q, n in zip(queues, given, strict=True)}
        unread = [(job_id, queues[queue][0]) for _, job_id, values, queue in kept if values is False]
        found = dict(
            zip((job_id for job_id, _ in unread), await self._jobs(unread, ask.with_payloads), strict=True)
        )
        entries = [
            (
                score,
                job_id,
                found[job_id] if values is False else _decoded(job_id, queues[queue][0], values, reading),
            )
            for score, job_id, values, queue in kept
        ]
        return entries, more, types

    async def _jobs(self, ids: Sequence[tuple[str, str]], with_payloads: bool) -> list[Job | None]:
        """The jobs of these (id, type) (None where a job is gone): one read_jobs call per
        partition, the calls at once."""
        if not ids:
            return []
        by_partition: dict[str, list[tuple[str, str]]] = {}
        for job_id, job_type in ids:
            by_partition.setdefault(partition_of_id(job_id), []).append((job_id, job_type))
        reading = _READING[with_payloads]
        replies = await asyncio.gather(
            *(
                self._read_jobs.run(
                    self._read_jobs.keys(None, more=[self.keys.job(job_id) for job_id, _ in of_partition]),
                    reading.args,
                )
                for of_partition in by_partition.values()
            )
        )
        found: dict[str, Job | None] = {}
        for of_partition, reply in zip(by_partition.values(), replies, strict=True):
            values = msgpack.unpackb(reply, raw=True, use_list=False)
            for (job_id, job_type), job_values in zip(of_partition, values, strict=True):
                found[job_id] = _decoded(job_id, job_type, job_values, reading)
        return [found[job_id] for job_id, _ in ids]

    async def _by_idempotency_key(self, job_filter: JobFilter, with_payloads: bool) -> list[Job]:
        """The job the key points at (one lookup), if it matches the rest of the filter."""
        # Where an enqueue with the key went (enqueuer.py): while the type's count is unchanged.
        tags = await self.partitions.tags(job_filter.type)
        partition = tags[partition_of_key(job_filter.idempotency_key, len(tags))]
        idem_key = self.keys.queue(job_filter.type, partition).idempotency(job_filter.idempotency_key)
        job_id: bytes | None = await self.redis.get(idem_key)  # type: ignore[assignment]
        if job_id is None:
            return []
        [job] = await self._jobs([(job_id.decode(), job_filter.type)], with_payloads)
        if job is None or not _matches(job, job_filter) or not _in_range(job, job_filter):
            return []
        return [job]


def _rows(reply: bytes) -> tuple[bool, list[tuple[int, str, Any]]]:
    """page.lua's reply: whether entries are left after these, and the entries (score,
    id, and the values of the job, or False where it was not read)."""
    more, *flat = msgpack.unpackb(reply, raw=True, use_list=False)
    triples = zip(flat[::3], flat[1::3], flat[2::3], strict=True)
    return more == 1, [(int(score), member.decode(), values) for member, score, values in triples]


def _jobs_read_first(count: int, queues: int, given: float | None) -> int:
    """Of one of `queues` indexes merged into a page of `count`, how many entries' jobs
    page.lua reads with the index: its share of the last merged page (`given`) and a
    tenth of a page more (consecutive pages mix the types alike), or, not merged yet,
    an even share."""
    if given is None:
        return -(-count // max(queues, 1))
    return min(count, math.ceil(given * count) + -(-count // 10))


def _decoded(job_id: str, job_type: str, values: Sequence[Stored], reading: _Reading) -> Job | None:
    """A job of its id, its type and the values `reading` read (None: it is gone)."""
    payload = result = None
    if reading.with_payloads:
        payload, result, values = values[0], values[1], values[2:]
    if not values[0]:  # every job has a status: the job is gone
        return None
    try:
        return decode_listed(job_id, job_type, values, payload, result)
    except ValueError as exc:
        log.warning("job %s: corrupt record (%s): left out of the list", job_id, exc)
        return None


def _matches(job: Job, job_filter: JobFilter) -> bool:
    """What the index alone does not tell: the job's status now, and its error text."""
    if job_filter.status is JobStatus.UNSPECIFIED:
        if job.status not in _UNFINISHED:
            return False
    elif job.status is not job_filter.status:
        return False
    return job_filter.error_contains in job.last_error


def _in_range(job: Job, job_filter: JobFilter) -> bool:
    at = job.finished_at if job_filter.time_field is TimeField.FINISHED else job.created_at
    return at >= job_filter.from_ms and (not job_filter.to_ms or at < job_filter.to_ms)


# -- the page token ---------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # a page call checks a token and makes one: the same filter
def fingerprint(job_filter: JobFilter, newest_first: bool) -> str:
    """What a token is bound to: a checked filter and the order."""
    fields: list[Any] = [*dataclasses.astuple(job_filter), newest_first]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def encode_token(cursor: Cursor | None, job_filter: JobFilter, newest_first: bool) -> str:
    """The opaque token of a position ('' when there is nothing more)."""
    if cursor is None:
        return ""
    body = {
        "v": _TOKEN_VERSION,
        "f": fingerprint(job_filter, newest_first),
        "s": cursor.score,
        "i": cursor.id,
    }
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, job_filter: JobFilter, newest_first: bool) -> Cursor | None:
    """The position a token holds (None for ''); InvalidInput for one that is not a token,
    or is one of another filter or order."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, mark, score, job_id = body["v"], body["f"], body["s"], body["i"]
        valid = version == _TOKEN_VERSION and isinstance(score, int) and isinstance(job_id, str)
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidInput("page_token", "is not a page token (pass a next_page_token as it came)")
    if mark != fingerprint(job_filter, newest_first):
        raise InvalidInput(
            "page_token",
            "comes from another filter or order: pass the same filter and order as the call that returned it",
        )
    return Cursor(score, job_id)
