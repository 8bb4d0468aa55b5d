"""ListJobs' reads: pages over the indexes the scripts keep, and the page token.

A selection is one index per type: `live` (unfinished jobs, by created_at) or a
finished status' index (by finished_at), read in the order of (score, id) with
lua/page.lua; no SCAN, and a page costs O(types * (log N + page)), not O(N).
Every type's index is read for up to a page after the cursor and the reads are
merged by (score, id), a total order across types (ids are unique), so one
cursor serves them all. The page's jobs are then read in one pipelined round
trip; an id whose job is gone (expired) or no longer matches is left out.

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
import hashlib
import heapq
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..model import DEFAULT_PRIORITY, Job, JobStatus, partition_of_id
from ..selection import MAX_EXAMINED, JobFilter, TimeField
from . import scripts
from .codec import JOB_FIELDS, PROGRESS_FIELDS, decode_job_values, set_progress_fields

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace

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
# What a list reads of each job: a claim's fields (JOB_FIELDS, decoded by position as
# a claim's are), last_error_attempt, the progress and the priority; the payload and the
# result only when asked for.
_FIELDS = (*JOB_FIELDS, b"last_error_attempt", *PROGRESS_FIELDS, b"priority", b"result")
_PAYLOAD, _LAST_ERROR_ATTEMPT = _FIELDS.index(b"payload"), _FIELDS.index(b"last_error_attempt")
_PROGRESS, _PRIORITY = _FIELDS.index(PROGRESS_FIELDS[0]), _FIELDS.index(b"priority")
_FIELDS_WITHOUT_PAYLOAD = tuple(f for f in _FIELDS if f not in (b"payload", b"result"))
# With a scan filter, how many index entries a read takes at least (fewer round trips).
_SCAN_CHUNK = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a selection's order: after (or, newest first, before) this entry."""

    score: int
    id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Selected:
    """What a read of a selection found: its jobs, and where to go on (None: nothing left)."""

    jobs: list[Job]
    cursor: Cursor | None


class Lister:
    def __init__(self, redis: Redis, keys: Keyspace, *, retention_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_ms = retention_ms
        loaded = scripts.load(redis, "page", "read_jobs")
        self._page, self._read_jobs = loaded["page"], loaded["read_jobs"]

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
        types = [job_filter.type] if job_filter.type else sorted(await self._types())
        jobs: list[Job] = []
        examined = 0
        cursor = after
        while True:
            wanted = count - len(jobs)
            chunk = min(examine - examined, max(wanted, _SCAN_CHUNK) if job_filter.scans else wanted)
            entries, more = await self._entries(types, job_filter, newest_first, chunk, cursor)
            found = await self._jobs(entries, with_payloads)
            for i, ((score, job_id), job) in enumerate(zip(entries, found, strict=True)):
                examined += 1
                cursor = Cursor(score, job_id)
                if job is not None and _matches(job, job_filter):
                    jobs.append(job)
                    if len(jobs) == count:
                        more = more or i < len(entries) - 1
                        break
            if not more:
                return Selected(jobs, None)
            if len(jobs) == count or examined >= examine:
                return Selected(jobs, cursor)

    async def _types(self) -> set[str]:
        members: set[bytes] = await self.redis.smembers(self.keys.types)  # type: ignore[assignment]
        return {t.decode() for t in members}

    async def _entries(
        self,
        types: Sequence[str],
        job_filter: JobFilter,
        newest_first: bool,
        count: int,
        after: Cursor | None,
    ) -> tuple[list[tuple[int, str]], bool]:
        """The next `count` (score, id) entries of the types' indexes, merged; and whether
        any are left after them."""
        index = _INDEX_OF[job_filter.status]
        args = [
            job_filter.from_ms or "",
            job_filter.to_ms or "",
            self.retention_ms if job_filter.status not in (JobStatus.UNSPECIFIED, *_UNFINISHED) else "",
            "" if after is None else after.score,
            "" if after is None else after.id,
            int(newest_first),
            count,
        ]
        replies = await asyncio.gather(
            *(
                self._page.run(self._page.keys(None, more=[getattr(self.keys.queue(t), index)]), args)
                for t in types
            )
        )
        runs: list[list[tuple[int, str]]] = []
        more = False
        for more_flag, *flat in replies:
            more = more or more_flag == 1
            runs.append([(int(float(s)), m.decode()) for m, s in zip(flat[::2], flat[1::2], strict=True)])
        if len(runs) == 1:
            return runs[0], more
        merged = list(heapq.merge(*runs, reverse=newest_first))
        return merged[:count], more or len(merged) > count

    async def _jobs(self, entries: Sequence[tuple[int, str]], with_payloads: bool) -> list[Job | None]:
        """The entries' jobs (None where a job is gone): one read_jobs call per partition
        (one in all for one type), the calls at once."""
        if not entries:
            return []
        by_partition: dict[str, list[str]] = {}
        for _, job_id in entries:
            by_partition.setdefault(partition_of_id(job_id), []).append(job_id)
        fields = _FIELDS if with_payloads else _FIELDS_WITHOUT_PAYLOAD
        replies = await asyncio.gather(
            *(
                self._read_jobs.run(self._read_jobs.keys(None, more=[*map(self.keys.job, ids)]), fields)
                for ids in by_partition.values()
            )
        )
        found: dict[str, Job | None] = {}
        for ids, values in zip(by_partition.values(), replies, strict=True):
            for job_id, job_values in zip(ids, values, strict=True):
                found[job_id] = _decoded(job_id, job_values, with_payloads)
        return [found[job_id] for _, job_id in entries]

    async def _by_idempotency_key(self, job_filter: JobFilter, with_payloads: bool) -> list[Job]:
        """The job the key points at (one lookup), if it matches the rest of the filter."""
        idem_key = self.keys.queue(job_filter.type).idempotency(job_filter.idempotency_key)
        job_id: bytes | None = await self.redis.get(idem_key)  # type: ignore[assignment]
        if job_id is None:
            return []
        [job] = await self._jobs([(0, job_id.decode())], with_payloads)
        if job is None or not _matches(job, job_filter) or not _in_range(job, job_filter):
            return []
        return [job]


def _decoded(job_id: str, values: Sequence[bytes | None], with_payloads: bool) -> Job | None:
    """A job of its values in _FIELDS order (without the payload and the result unless
    `with_payloads`)."""
    if values[0] is None:  # the id field: the job is gone
        return None
    try:
        if with_payloads:
            job = decode_job_values(values[:_LAST_ERROR_ATTEMPT])
            job.result = values[-1] or b""
        else:
            job = decode_job_values([*values[:_PAYLOAD], None, *values[_PAYLOAD : _LAST_ERROR_ATTEMPT - 1]])
        shift = 0 if with_payloads else 1  # the payload's place
        job.last_error_attempt = int(values[_LAST_ERROR_ATTEMPT - shift] or 0)
        set_progress_fields(job, *values[_PROGRESS - shift : _PROGRESS - shift + len(PROGRESS_FIELDS)])
        job.priority = int(values[_PRIORITY - shift] or DEFAULT_PRIORITY)
    except ValueError as exc:
        log.warning("job %s: corrupt record (%s): left out of the list", job_id, exc)
        return None
    return job


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
