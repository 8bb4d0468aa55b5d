"""The job hash in Redis and back: its field names, decoding, the option fields.

A claim replies the job's values in the fixed order of JOB_FIELDS (claim_popped
takes the names as arguments), so decoding a claimed job needs no field names in
the reply and no dict per job. READ_FIELDS are the hash's other fields: a read
(HGETALL) decodes them, a claim does not return them (a worker has no use for
them, and every field a claim returns costs on the hot path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from ..model import (
    DEFAULT_PRIORITY,
    Backoff,
    Enqueued,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    UniqueMode,
    check_idempotency_key,
    check_max_attempts,
    check_priority,
    check_timeout_ms,
    check_unique,
)

# The job hash's fields, in the order a claim returns their values.
JOB_FIELDS = (
    b"id",
    b"type",
    b"payload",
    b"status",
    b"execution_time_ms",
    b"created_at",
    b"updated_at",
    b"attempt",
    b"last_error",
    b"started_at",
    b"finished_at",
    b"worker_id",
    b"max_attempts",
    b"timeout_ms",
    b"idempotency_key",
    b"backoff_base_ms",
    b"backoff_factor",
    b"backoff_cap_ms",
    b"lease_token",
    b"expires_at_ms",
)
# A run's progress (progress.lua), read by GetJob and ListJobs; progress_token is the
# lease token of the run that wrote it.
PROGRESS_FIELDS = (b"progress", b"progress_message", b"progress_at", b"progress_token")
# `priority` is stored only when it is not the default (enqueue.lua puts the job in line by it).
READ_FIELDS = (b"last_error_attempt", b"result", b"unique_key", b"unique_mode", *PROGRESS_FIELDS, b"priority")
# The W3C trace context of the enqueue (jobqueue.tracing): stored only with tracing
# on, an extra field of enqueue.lua's, returned by a claim after JOB_FIELDS when the
# worker traces.
TRACE_FIELD = "trace_context"
# A stored field's value as read: None or False when the field is not set (False: the
# list's scripts reply in MessagePack, where a Lua list holds a missing value as false).
Stored = bytes | Literal[False] | None


def decode_job(fields: Mapping[bytes, bytes]) -> Job:
    """The job of a stored hash (HGETALL). Raises ValueError for a record that is not one."""
    job = decode_job_values([fields.get(name) for name in JOB_FIELDS])
    set_read_fields(job, fields)
    return job


def set_read_fields(job: Job, fields: Mapping[bytes, bytes | None]) -> None:
    """Sets a decoded job's READ_FIELDS from their stored values (a missing one: unset)."""
    job.last_error_attempt = int(fields.get(b"last_error_attempt") or 0)
    job.result = fields.get(b"result") or b""
    job.priority = int(fields.get(b"priority") or DEFAULT_PRIORITY)
    unique_key = fields.get(b"unique_key")
    if unique_key:
        job.unique_key = unique_key.decode(errors="replace")
        job.unique_mode = UniqueMode(int(fields.get(b"unique_mode") or 0))
    set_progress_fields(job, *(fields.get(name) for name in PROGRESS_FIELDS))


def set_progress_fields(job: Job, progress: Stored, message: Stored, at: Stored, token: Stored) -> None:
    """Sets a read job's progress from its stored fields if its current (or last) run
    wrote them: their token is the job's lease token. A retry or a redrive does not
    clear them (that would cost every claim a write); the claim of the next run, a
    new token, hides them."""
    if not token or int(token) != job.lease_token:
        return
    job.progress = float(progress or 0)
    job.progress_message = message.decode(errors="replace") if message else ""
    job.progress_at = int(at or 0)


_STATUS_OF = {str(status.value).encode(): status for status in JobStatus}

# What a list reads of a job (ListJobs: lua/page.lua, lua/read_jobs.lua): the payload
# and the result only when asked for (LISTED_BODY_FIELDS, first), then LISTED_FIELDS
# (the fields a Job shows but id and type, which its index entry tells, and the lease
# token: a run's progress shows only with its token), then the markers: the fields
# after them (LISTED_DEPENDENT_FIELDS) are stored only with one of them, so they are
# read only then (a backoff's factor and cap, a unique key's mode, a run's progress):
# most jobs have none, and every field read costs the script a conversion each way.
LISTED_BODY_FIELDS = (b"payload", b"result")
LISTED_MARKERS = (b"backoff_base_ms", b"unique_key", b"progress_token")
LISTED_DEPENDENT_FIELDS = (
    b"backoff_factor",
    b"backoff_cap_ms",
    b"unique_mode",
    b"progress",
    b"progress_message",
    b"progress_at",
)
LISTED_FIELDS = tuple(
    name
    for name in (*JOB_FIELDS, *READ_FIELDS)
    if name not in {b"id", b"type", *LISTED_BODY_FIELDS, *LISTED_MARKERS, *LISTED_DEPENDENT_FIELDS}
)
_NO_DEPENDENT_VALUES = (None,) * len(LISTED_DEPENDENT_FIELDS)


def decode_listed(
    job_id: str,
    job_type: str,
    values: Sequence[Stored],
    payload: Stored = None,
    result: Stored = None,
) -> Job:
    """The job of a list's values: those of LISTED_FIELDS and LISTED_MARKERS, then of
    LISTED_DEPENDENT_FIELDS if they were read (a marker is set). The same Job as
    decode_job reads from the whole hash, less the payload and the result unless given.
    Raises ValueError for a record that is not one.

    Runs once per listed job: plain unpacking, no dict, one call to build the Job.
    """
    (
        status,
        execution_time_ms,
        created_at,
        updated_at,
        attempt,
        last_error,
        started_at,
        finished_at,
        worker_id,
        max_attempts,
        timeout_ms,
        idempotency_key,
        lease_token,
        expires_at_ms,
        last_error_attempt,
        priority,
        backoff_base_ms,
        unique_key,
        progress_token,
    ) = values[:_LISTED_READ]
    backoff_factor, backoff_cap_ms, unique_mode, progress, progress_message, progress_at = (
        values[_LISTED_READ:] or _NO_DEPENDENT_VALUES
    )
    backoff = None
    if backoff_base_ms:
        backoff = _stored_backoff(backoff_base_ms, backoff_factor, backoff_cap_ms)
    job = _job_of(
        job_id,
        job_type,
        payload,
        status,
        execution_time_ms,
        created_at,
        updated_at,
        attempt,
        last_error,
        last_error_attempt,
        started_at,
        finished_at,
        worker_id,
        max_attempts,
        timeout_ms,
        idempotency_key,
        backoff,
        lease_token,
        result,
        priority,
        unique_key,
        unique_mode,
        expires_at_ms,
    )
    if progress_token:
        set_progress_fields(job, progress, progress_message, progress_at, progress_token)
    return job


_LISTED_READ = len(LISTED_FIELDS) + len(LISTED_MARKERS)


def decode_job_values(values: Sequence[bytes | None]) -> Job:
    """The job of its hash's values in JOB_FIELDS order (None: field not set).
    Raises ValueError for a record that is not one.

    Runs once per claimed job: plain unpacking, one call to build the Job.
    """
    (
        job_id,
        job_type,
        payload,
        status,
        execution_time_ms,
        created_at,
        updated_at,
        attempt,
        last_error,
        started_at,
        finished_at,
        worker_id,
        max_attempts,
        timeout_ms,
        idempotency_key,
        backoff_base_ms,
        backoff_factor,
        backoff_cap_ms,
        lease_token,
        expires_at_ms,
    ) = values
    if job_id is None or job_type is None:
        raise ValueError("job record without id or type")
    backoff = None
    if backoff_base_ms is not None:
        backoff = _stored_backoff(backoff_base_ms, backoff_factor, backoff_cap_ms)
    return _job_of(
        job_id.decode(errors="replace"),
        job_type.decode(errors="replace"),
        payload,
        status,
        execution_time_ms,
        created_at,
        updated_at,
        attempt,
        last_error,
        None,  # last_error_attempt: a read's (set_read_fields)
        started_at,
        finished_at,
        worker_id,
        max_attempts,
        timeout_ms,
        idempotency_key,
        backoff,
        lease_token,
        None,  # result, priority, unique key and mode: a read's
        None,
        None,
        None,
        expires_at_ms,
    )


def _job_of(  # noqa: PLR0917 - one argument per stored field, by position
    job_id: str,
    job_type: str,
    payload: Stored,
    status: Stored,
    execution_time_ms: Stored,
    created_at: Stored,
    updated_at: Stored,
    attempt: Stored,
    last_error: Stored,
    last_error_attempt: Stored,
    started_at: Stored,
    finished_at: Stored,
    worker_id: Stored,
    max_attempts: Stored,
    timeout_ms: Stored,
    idempotency_key: Stored,
    backoff: Backoff | None,
    lease_token: Stored,
    result: Stored,
    priority: Stored,
    unique_key: Stored,
    unique_mode: Stored,
    expires_at_ms: Stored,
) -> Job:
    """The Job of its stored values (None: unset), in the order of Job's fields.

    By position: keywords cost a dataclass of this many fields several times more,
    and a page decodes hundreds, a worker thousands a second (tests/test_listed_codec.py
    holds the order to the fields' names). No int() of an unset field.
    """
    known_status = _STATUS_OF.get(status or b"")
    return Job(
        job_id,
        job_type,
        payload or b"",
        JobStatus(int(status or 0)) if known_status is None else known_status,
        int(execution_time_ms) if execution_time_ms else 0,
        int(created_at) if created_at else 0,
        int(updated_at) if updated_at else 0,
        int(attempt) if attempt else 0,
        last_error.decode(errors="replace") if last_error else "",
        int(last_error_attempt) if last_error_attempt else 0,
        int(started_at) if started_at else 0,
        int(finished_at) if finished_at else 0,
        worker_id.decode(errors="replace") if worker_id else "",
        int(max_attempts) if max_attempts else 0,
        int(timeout_ms) if timeout_ms else 0,
        idempotency_key.decode(errors="replace") if idempotency_key else "",
        backoff,
        int(lease_token) if lease_token else 0,
        "",  # trace_context: a claim's only, set by the claim
        result or b"",
        int(priority) if priority else DEFAULT_PRIORITY,
        unique_key.decode(errors="replace") if unique_key else "",
        UniqueMode(int(unique_mode) if unique_mode else 0) if unique_key else UniqueMode.NONE,
        Enqueued.CREATED,
        int(expires_at_ms) if expires_at_ms else 0,
    )


def _stored_backoff(base_ms: bytes, factor: Stored, cap_ms: Stored) -> Backoff:
    if not factor or not cap_ms:
        raise ValueError("job record with part of a backoff")
    return Backoff(base_ms=int(base_ms), factor=float(factor), cap_ms=int(cap_ms))


def option_fields(options: JobOptions) -> list[str | int | float]:
    """Hash fields for the options that are set (unset ones are not stored: smaller jobs)."""
    fields: list[str | int | float] = []
    if options.max_attempts is not None:
        fields += ["max_attempts", check_max_attempts(options.max_attempts)]
    if options.timeout_ms is not None:
        fields += ["timeout_ms", check_timeout_ms(options.timeout_ms)]
    if options.backoff is not None:
        b = options.backoff
        fields += ["backoff_base_ms", b.base_ms, "backoff_factor", repr(b.factor), "backoff_cap_ms", b.cap_ms]
    if options.idempotency_key:
        fields += ["idempotency_key", check_idempotency_key(options.idempotency_key)]
    # enqueue.lua stores either as `expires_at_ms`, the relative one from its clock.
    if options.expires_at_ms is not None:
        fields += ["expires_at_ms", options.expires_at_ms]
    if options.expires_in_ms is not None:
        fields += ["expires_in_ms", options.expires_in_ms]
    if options.priority is not None and check_priority(options.priority) != DEFAULT_PRIORITY:
        fields += ["priority", options.priority]
    if options.unique_key or options.unique_mode or options.debounce_ms:
        mode = check_unique(options.unique_key, options.unique_mode, options.debounce_ms)
        fields += ["unique_key", options.unique_key, "unique_mode", int(mode)]
    return fields


def status_of(raw: bytes) -> JobStatus | None:
    """A status as a script replies it; None where the job is gone ('') or the value is not one."""
    return _STATUS_OF.get(raw)


@dataclasses.dataclass(slots=True)
class NewJob:
    """One job on its way into Redis: what enqueue.lua takes for it, and what it stored."""

    request: EnqueueRequest
    at: str  # execution time for the script: '' means now
    fields: list[str | int | float]  # option_fields
    job_id: str = ""
    stale: str = ""  # an id its idempotency key may point at and count as absent (that job expired)
    job: Job | None = None  # the job stored, or the one its idempotency key points at
    full: bool = False  # refused: its type held its maximum depth of pending jobs
    # Refused: its expiry was not after now (the Redis clock, this value) and its execution time.
    expires_early_at: int = 0
    debounced: bool = False  # its unique key's PENDING job was updated instead (mode DEBOUNCE)
