"""The per-job decoders of a list page, against the readers they stand in for.

`codec.decode_listed` (the server's read of a listed job's values),
`codec.decode_job_values` (a claim's and GetJob's) and `wire.job_from_proto` (the
client's Job of a reply's message) build a Job by position, the fastest way to fill
a dataclass of this many fields: a field passed in the wrong place would still make
a Job. These properties hold them to each other (`codec.decode_job`, the whole hash
as GetJob reads it) and to the job itself, over generated jobs: every status, optional fields
present and absent, unicode text, int64 times, progress doubles, a stale
progress (another run's token) hidden.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from jobqueue.model import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Backoff, Job, JobStatus, UniqueMode
from jobqueue.store.codec import (
    LISTED_BODY_FIELDS,
    LISTED_DEPENDENT_FIELDS,
    LISTED_FIELDS,
    LISTED_MARKERS,
    decode_job,
    decode_listed,
)
from jobqueue.wire import job_from_proto, job_to_proto

INT32 = st.integers(0, 2**31 - 1)
INT64 = st.integers(0, 2**63 - 1)
TEXT = st.text(max_size=20)
SOME_TEXT = st.text(min_size=1, max_size=20)


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    """A job as a read shows it (no trace context: a claim's only)."""
    unique_key = draw(st.one_of(st.just(""), SOME_TEXT))
    progressed = draw(st.booleans())
    return Job(
        id=draw(SOME_TEXT),
        type=draw(SOME_TEXT),
        payload=draw(st.binary(max_size=20)),
        status=draw(st.sampled_from(JobStatus)),
        execution_time_ms=draw(INT64),
        created_at=draw(INT64),
        updated_at=draw(INT64),
        attempt=draw(INT32),
        last_error=draw(TEXT),
        last_error_attempt=draw(INT32),
        started_at=draw(INT64),
        finished_at=draw(INT64),
        worker_id=draw(TEXT),
        max_attempts=draw(INT32),
        timeout_ms=draw(INT64),
        idempotency_key=draw(TEXT),
        backoff=draw(
            st.one_of(
                st.none(),
                st.builds(
                    Backoff,
                    base_ms=INT64,
                    factor=st.floats(min_value=1.0, max_value=100.0, allow_nan=False),
                    cap_ms=INT64,
                ),
            )
        ),
        lease_token=draw(INT64),
        result=draw(st.binary(max_size=20)),
        priority=draw(st.integers(MIN_PRIORITY, MAX_PRIORITY)),
        unique_key=unique_key,
        unique_mode=draw(st.sampled_from(UniqueMode)) if unique_key else UniqueMode.NONE,
        expires_at_ms=draw(INT64),
        progress=draw(st.floats(allow_nan=False, allow_infinity=False)) if progressed else 0.0,
        progress_message=draw(TEXT) if progressed else "",
        progress_at=draw(INT64) if progressed else 0,
    )


def stored(job: Job, *, progress_token: int) -> dict[bytes, bytes]:
    """The job's hash as the scripts store it: a field only when it is set."""
    values: dict[str, object] = {
        "id": job.id,
        "type": job.type,
        "payload": job.payload,
        "status": int(job.status),
        "execution_time_ms": job.execution_time_ms,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "attempt": job.attempt,
        "last_error": job.last_error,
        "last_error_attempt": job.last_error_attempt,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "worker_id": job.worker_id,
        "max_attempts": job.max_attempts,
        "timeout_ms": job.timeout_ms,
        "idempotency_key": job.idempotency_key,
        "lease_token": job.lease_token,
        "result": job.result,
        "expires_at_ms": job.expires_at_ms,
    }
    if job.priority != DEFAULT_PRIORITY:
        values["priority"] = job.priority
    if job.backoff is not None:
        b = job.backoff
        values |= {"backoff_base_ms": b.base_ms, "backoff_factor": repr(b.factor), "backoff_cap_ms": b.cap_ms}
    if job.unique_key:
        values |= {"unique_key": job.unique_key, "unique_mode": int(job.unique_mode)}
    if job.progress_at or job.progress or job.progress_message:
        values |= {
            "progress": repr(job.progress),
            "progress_message": job.progress_message,
            "progress_at": job.progress_at,
            "progress_token": progress_token,
        }
    # Stored whatever their value: a job's own, and those of an option or a report it has.
    always = {"id", "type", "status", "execution_time_ms", "created_at", "updated_at", "priority"}
    always |= {"backoff_base_ms", "backoff_factor", "backoff_cap_ms", "unique_key", "unique_mode"}
    always |= {"progress", "progress_message", "progress_at", "progress_token"}
    return {
        name.encode(): value if isinstance(value, bytes) else str(value).encode()
        for name, value in values.items()
        if value or name in always
    }


def listed_values(fields: dict[bytes, bytes]) -> list[bytes | None]:
    """What page.lua replies for the job: every listed field, the others only with a marker."""
    values = [fields.get(name) for name in (*LISTED_FIELDS, *LISTED_MARKERS)]
    if any(fields.get(marker) is not None for marker in LISTED_MARKERS):
        values += [fields.get(name) for name in LISTED_DEPENDENT_FIELDS]
    return values


def without_progress(job: Job) -> Job:
    return dataclasses.replace(job, progress=0.0, progress_message="", progress_at=0)


@given(jobs(), st.booleans())
def test_a_listed_job_is_the_job_its_hash_reads(job: Job, stale_progress: bool) -> None:
    token = job.lease_token + 1 if stale_progress else job.lease_token
    fields = stored(job, progress_token=token)
    listed = decode_listed(
        job.id, job.type, listed_values(fields), *(fields.get(n) for n in LISTED_BODY_FIELDS)
    )
    expected = without_progress(job) if stale_progress else job
    assert listed == decode_job(fields)
    assert listed == expected
    # Without the payload and the result, as a page without payloads reads it.
    bare = decode_listed(job.id, job.type, listed_values(fields))
    assert bare == dataclasses.replace(expected, payload=b"", result=b"")
    # As the list scripts reply (MessagePack: false for a field that is not set).
    packed = [False if value is None else value for value in listed_values(fields)]
    assert decode_listed(job.id, job.type, packed) == bare


@given(jobs(), st.booleans())
def test_the_client_reads_back_the_job_the_server_sent(job: Job, with_payload: bool) -> None:
    sent = dataclasses.replace(job, lease_token=0)  # not on the wire
    received = job_from_proto(job_to_proto(sent, with_payload=with_payload))
    assert received == (sent if with_payload else dataclasses.replace(sent, payload=b"", result=b""))
    assert received.trace_context == ""
