"""The protobuf boundary: converts between `model.Job` and the wire `pb.Job`."""

from __future__ import annotations

from ._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .model import NO_OPTIONS, Backoff, EnqueueRequest, Job, JobOptions, JobStatus


def job_to_proto(job: Job, *, with_payload: bool = True) -> pb.Job:
    """Sets only the fields that differ from their zero value: building the
    message costs per keyword, and a batch reply carries thousands of jobs."""
    message = pb.Job(
        id=job.id,
        type=job.type,
        status=_STATUS[job.status],
        execution_time_ms=job.execution_time_ms,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )
    if with_payload and job.payload:
        message.payload = job.payload
    for name in _SET_WHEN_NOT_ZERO:
        value = getattr(job, name)
        if value:
            setattr(message, name, value)
    if job.backoff is not None:
        message.backoff = backoff_to_proto(job.backoff)
    return message


_STATUS = {status: pb.JobStatus(int(status)) for status in JobStatus}
_SET_WHEN_NOT_ZERO = (
    "attempt", "last_error", "started_at", "finished_at",
    "worker_id", "max_attempts", "timeout_ms", "idempotency_key", "last_error_attempt",
)  # fmt: skip


def job_from_proto(job: pb.Job) -> Job:
    return Job(
        id=job.id,
        type=job.type,
        payload=job.payload,
        status=JobStatus(int(job.status)),
        execution_time_ms=job.execution_time_ms,
        created_at=job.created_at,
        updated_at=job.updated_at,
        attempt=job.attempt,
        last_error=job.last_error,
        last_error_attempt=job.last_error_attempt,
        started_at=job.started_at,
        finished_at=job.finished_at,
        worker_id=job.worker_id,
        max_attempts=job.max_attempts,
        timeout_ms=job.timeout_ms,
        idempotency_key=job.idempotency_key,
        backoff=backoff_from_proto(job.backoff),
    )


def backoff_to_proto(backoff: Backoff | None) -> pb.Backoff | None:
    if backoff is None:
        return None
    return pb.Backoff(base_ms=backoff.base_ms, factor=backoff.factor, cap_ms=backoff.cap_ms)


def backoff_from_proto(backoff: pb.Backoff | None) -> Backoff | None:
    if backoff is None:
        return None
    return Backoff(base_ms=backoff.base_ms, factor=backoff.factor, cap_ms=backoff.cap_ms)


def enqueue_request_from_proto(request: pb.EnqueueJobRequest) -> EnqueueRequest:
    """An EnqueueJob request as the store takes it; absent options mean the worker's defaults."""
    max_attempts = request.max_attempts if _MAX_ATTEMPTS in request else None
    timeout_ms = request.timeout_ms if _TIMEOUT_MS in request else None
    backoff = request.backoff  # a message field: None when absent
    options = NO_OPTIONS
    if max_attempts is not None or timeout_ms is not None or backoff is not None or request.idempotency_key:
        options = JobOptions(max_attempts, timeout_ms, backoff_from_proto(backoff), request.idempotency_key)
    # 0 and absent both mean now: no presence check needed.
    return EnqueueRequest(request.type, request.payload, request.execution_time_ms or None, options)


# Options whose explicit 0 is an error while absence means the default:
# `field in message` is has_field without the lookup by name (cheaper; every job
# of a batch checks both).
_REQUEST_FIELDS = {field.name: field for field in pb.EnqueueJobRequest.desc().fields}
_MAX_ATTEMPTS, _TIMEOUT_MS = _REQUEST_FIELDS["max_attempts"], _REQUEST_FIELDS["timeout_ms"]


def enqueue_request(
    job_type: str, payload: bytes, execution_time_ms: int | None, options: JobOptions
) -> pb.EnqueueJobRequest:
    """An EnqueueJob request; options left None stay absent (the worker's defaults)."""
    return pb.EnqueueJobRequest(
        type=job_type,
        payload=payload,
        execution_time_ms=execution_time_ms,
        max_attempts=options.max_attempts,
        timeout_ms=options.timeout_ms,
        backoff=backoff_to_proto(options.backoff),
        idempotency_key=options.idempotency_key,
    )
