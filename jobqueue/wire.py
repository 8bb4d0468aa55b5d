"""The protobuf boundary: converts between `model.Job` and the wire `pb.Job`."""

from __future__ import annotations

from ._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .model import Job, JobStatus


def job_to_proto(job: Job) -> pb.Job:
    return pb.Job(
        id=job.id,
        type=job.type,
        payload=job.payload,
        status=pb.JobStatus(int(job.status)),
        execution_time_ms=job.execution_time_ms,
        created_at=job.created_at,
        updated_at=job.updated_at,
        attempt=job.attempt,
        last_error=job.last_error,
        started_at=job.started_at,
        finished_at=job.finished_at,
        worker_id=job.worker_id,
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
    )
