"""The protobuf boundary: converts between `model.Job` and the wire `pb.Job`."""

from __future__ import annotations

from ._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .model import NO_OPTIONS, Backoff, EnqueueRequest, Job, JobOptions, JobStatus


def job_to_proto(job: Job, *, with_payload: bool = True) -> pb.Job:
    return pb.Job(
        id=job.id,
        type=job.type,
        payload=job.payload if with_payload else b"",
        status=pb.JobStatus(int(job.status)),
        execution_time_ms=job.execution_time_ms,
        created_at=job.created_at,
        updated_at=job.updated_at,
        attempt=job.attempt,
        last_error=job.last_error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        worker_id=job.worker_id,
        max_attempts=job.max_attempts,
        timeout_ms=job.timeout_ms,
        idempotency_key=job.idempotency_key,
        backoff=backoff_to_proto(job.backoff),
    )


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
    options = NO_OPTIONS
    if request.idempotency_key or any(
        request.has_field(f) for f in ("max_attempts", "timeout_ms", "backoff")
    ):
        options = JobOptions(
            max_attempts=request.max_attempts if request.has_field("max_attempts") else None,
            timeout_ms=request.timeout_ms if request.has_field("timeout_ms") else None,
            backoff=backoff_from_proto(request.backoff if request.has_field("backoff") else None),
            idempotency_key=request.idempotency_key,
        )
    at = request.execution_time_ms if request.has_field("execution_time_ms") else None
    return EnqueueRequest(request.type, request.payload, at, options)


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
