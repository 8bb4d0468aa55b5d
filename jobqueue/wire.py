"""The protobuf boundary: converts between `model.Job` and the wire `pb.Job`, and
between the reads of queues (queues.py) and their messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from ._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .model import (
    DEFAULT_PRIORITY,
    NO_OPTIONS,
    Backoff,
    Enqueued,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    UniqueMode,
    payload_bytes,
)
from .queues import MINUTES, QueueStats, StatsReport, WorkerInfo, field_names
from .selection import JobFilter, ListOrder, TimeField, enum_member
from .store.job_events import JobChange


def job_to_proto(job: Job, *, with_payload: bool = True) -> pb.Job:
    """Sets only the fields that differ from their zero value, one attribute at a
    time: the generated constructor walks every field of the message and costs
    per keyword, while a list or batch reply carries hundreds of jobs."""
    message = pb.Job()
    message.id = job.id
    message.type = job.type
    message.status = _STATUS[job.status]
    message.execution_time_ms = job.execution_time_ms
    message.created_at = job.created_at
    message.updated_at = job.updated_at
    message.priority = job.priority
    if with_payload:
        if job.payload:
            message.payload = job.payload
        if job.result:
            message.result = job.result
    # Spelt out rather than a loop over names: a getattr per name costs more than the test.
    if job.attempt:
        message.attempt = job.attempt
    if job.last_error:
        message.last_error = job.last_error
    if job.last_error_attempt:
        message.last_error_attempt = job.last_error_attempt
    if job.started_at:
        message.started_at = job.started_at
    if job.finished_at:
        message.finished_at = job.finished_at
    if job.worker_id:
        message.worker_id = job.worker_id
    if job.max_attempts:
        message.max_attempts = job.max_attempts
    if job.timeout_ms:
        message.timeout_ms = job.timeout_ms
    if job.idempotency_key:
        message.idempotency_key = job.idempotency_key
    if job.expires_at_ms:
        message.expires_at_ms = job.expires_at_ms
    if job.progress:
        message.progress = job.progress
    if job.progress_message:
        message.progress_message = job.progress_message
    if job.progress_at:
        message.progress_at = job.progress_at
    if job.backoff is not None:
        message.backoff = backoff_to_proto(job.backoff)
    if job.unique_key:
        message.unique_key = job.unique_key
        message.unique_mode = pb.UniqueMode(int(job.unique_mode))
    return message


_STATUS = {status: pb.JobStatus(int(status)) for status in JobStatus}


def job_from_proto(job: pb.Job) -> Job:
    """Runs once per job of a list or batch reply: the enums by a dict lookup, not
    by calling their class; the fields by position, in the order of Job's (keywords
    cost a dataclass of this many fields several times more; tests/test_listed_codec.py
    holds the order to the fields' names)."""
    status = _STATUS_OF_NUMBER.get(job.status)
    backoff = job.backoff
    return Job(
        job.id,
        job.type,
        job.payload,
        JobStatus(int(job.status)) if status is None else status,
        job.execution_time_ms,
        job.created_at,
        job.updated_at,
        job.attempt,
        job.last_error,
        job.last_error_attempt,
        job.started_at,
        job.finished_at,
        job.worker_id,
        job.max_attempts,
        job.timeout_ms,
        job.idempotency_key,
        None if backoff is None else backoff_from_proto(backoff),
        0,  # lease_token: not on the wire
        "",  # trace_context: a claim's only
        job.result,
        job.priority or DEFAULT_PRIORITY,
        job.unique_key,
        _UNIQUE_MODE_OF_NUMBER.get(job.unique_mode, UniqueMode.NONE),
        Enqueued.CREATED,
        job.expires_at_ms,
        job.progress,
        job.progress_message,
        job.progress_at,
    )


# A job's status and mode by their numbers (a wire enum is an int); a mode this client
# does not know reads as NONE.
_STATUS_OF_NUMBER: dict[int, JobStatus] = {int(status): status for status in JobStatus}
_UNIQUE_MODE_OF_NUMBER: dict[int, UniqueMode] = {int(mode): mode for mode in UniqueMode}


def enqueued_of(reply: pb.EnqueueJobResponse) -> Enqueued:
    """What an EnqueueJob call did, from its reply's flags."""
    if reply.debounced:
        return Enqueued.DEBOUNCED
    return Enqueued.EXISTING if reply.existing else Enqueued.CREATED


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
    expires_at_ms = request.expires_at_ms if _EXPIRES_AT_MS in request else None
    expires_in_ms = request.expires_in_ms if _EXPIRES_IN_MS in request else None
    priority = request.priority if _PRIORITY in request else None
    options = NO_OPTIONS
    if (
        max_attempts is not None
        or timeout_ms is not None
        or backoff is not None
        or request.idempotency_key
        or priority is not None
    ):
        options = JobOptions(
            max_attempts, timeout_ms, backoff_from_proto(backoff), request.idempotency_key, priority
        )
    if request.unique_key or request.unique_mode or request.debounce_ms:
        # The number as sent (an unknown one is refused by the store's check, naming the field).
        mode: Any = int(request.unique_mode)
        options = dataclasses.replace(
            options, unique_key=request.unique_key, unique_mode=mode, debounce_ms=request.debounce_ms
        )
    if expires_at_ms is not None or expires_in_ms is not None:
        options = dataclasses.replace(options, expires_at_ms=expires_at_ms, expires_in_ms=expires_in_ms)
    # 0 and absent both mean now: no presence check needed.
    return EnqueueRequest(request.type, request.payload, request.execution_time_ms or None, options)


# Options whose explicit 0 is an error while absence means the default:
# `field in message` is has_field without the lookup by name (cheaper; every job
# of a batch checks both).
_REQUEST_FIELDS = {field.name: field for field in pb.EnqueueJobRequest.desc().fields}
_MAX_ATTEMPTS, _TIMEOUT_MS = _REQUEST_FIELDS["max_attempts"], _REQUEST_FIELDS["timeout_ms"]
_EXPIRES_AT_MS, _EXPIRES_IN_MS = _REQUEST_FIELDS["expires_at_ms"], _REQUEST_FIELDS["expires_in_ms"]
_PRIORITY = _REQUEST_FIELDS["priority"]


def enqueue_request(
    job_type: str, payload: bytes | str, execution_time_ms: int | None, options: JobOptions, where: str = ""
) -> pb.EnqueueJobRequest:
    """An EnqueueJob request; options left None stay absent (the worker's defaults).

    A client's arguments are checked here, before any call: one that cannot be
    sent (a wrong type, an int out of its field's range) is a TypeError or a
    ValueError naming it (after `where`, e.g. "requests[2]."), not an error of
    the connection. Values the wire can carry are the server's to judge.
    """
    if not isinstance(options, JobOptions):
        raise TypeError(f"{where}options must be a JobOptions, not {type(options).__name__}")
    return pb.EnqueueJobRequest(
        type=_text(job_type, f"{where}job_type"),
        payload=payload_bytes(payload, f"{where}payload"),
        execution_time_ms=_integer(execution_time_ms, f"{where}execution_time_ms", _INT64),
        max_attempts=_integer(options.max_attempts, f"{where}options.max_attempts", _INT32),
        timeout_ms=_integer(options.timeout_ms, f"{where}options.timeout_ms", _INT64),
        backoff=backoff_to_proto(_backoff(options.backoff, f"{where}options.backoff")),
        idempotency_key=_text(options.idempotency_key, f"{where}options.idempotency_key"),
        expires_at_ms=_integer(options.expires_at_ms, f"{where}options.expires_at_ms", _INT64),
        expires_in_ms=_integer(options.expires_in_ms, f"{where}options.expires_in_ms", _INT64),
        priority=_integer(options.priority, f"{where}options.priority", _INT32),
        unique_key=_text(options.unique_key, f"{where}options.unique_key"),
        unique_mode=pb.UniqueMode(_integer(options.unique_mode, f"{where}options.unique_mode", _INT32) or 0),
        debounce_ms=_integer(options.debounce_ms, f"{where}options.debounce_ms", _INT64) or 0,
    )


def enqueue_jobs_request(requests: Sequence[EnqueueRequest]) -> pb.EnqueueJobsRequest:
    """An EnqueueJobs request, each job checked as `enqueue_request` checks one."""
    jobs = []
    for i, request in enumerate(requests):
        if not isinstance(request, EnqueueRequest):
            raise TypeError(f"requests[{i}] must be an EnqueueRequest, not {type(request).__name__}")
        r = request
        jobs.append(enqueue_request(r.job_type, r.payload, r.execution_time_ms, r.options, f"requests[{i}]."))
    return pb.EnqueueJobsRequest(jobs=jobs)


def job_filter_from_proto(message: pb.JobFilter | None) -> JobFilter:
    """A request's filter (absent: every unfinished job); an enum number the proto does
    not define is InvalidInput naming its field."""
    if message is None:
        return JobFilter()
    return JobFilter(
        type=message.type,
        status=enum_member(JobStatus, int(message.status), "filter.status"),
        time_field=enum_member(TimeField, int(message.time_field), "filter.time_field"),
        from_ms=message.from_ms,
        to_ms=message.to_ms,
        error_contains=message.error_contains,
        idempotency_key=message.idempotency_key,
    )


def list_order_from_proto(order: pb.ListOrder) -> ListOrder:
    return enum_member(ListOrder, int(order), "order")


def job_filter_to_proto(job_filter: JobFilter) -> pb.JobFilter:
    """A client's filter, checked as `enqueue_request` checks its arguments."""
    if not isinstance(job_filter, JobFilter):
        raise TypeError(f"job_filter must be a JobFilter, not {type(job_filter).__name__}")
    f = job_filter
    return pb.JobFilter(
        type=_text(f.type, "job_filter.type"),
        status=pb.JobStatus(int(f.status)),
        time_field=pb.JobTimeField(int(f.time_field)),
        from_ms=_integer(f.from_ms, "job_filter.from_ms", _INT64) or 0,
        to_ms=_integer(f.to_ms, "job_filter.to_ms", _INT64) or 0,
        error_contains=_text(f.error_contains, "job_filter.error_contains"),
        idempotency_key=_text(f.idempotency_key, "job_filter.idempotency_key"),
    )


def list_jobs_request(
    job_filter: JobFilter, order: ListOrder, page_size: int, page_token: str, with_payloads: bool
) -> pb.ListJobsRequest:
    """A ListJobs request, its arguments checked as `enqueue_request` checks its own."""
    return pb.ListJobsRequest(
        filter=job_filter_to_proto(job_filter),
        order=pb.ListOrder(int(order)),
        page_size=_integer(page_size, "page_size", _INT32) or 0,
        page_token=_text(page_token, "page_token"),
        with_payloads=bool(with_payloads),
    )


BulkRequest = TypeVar("BulkRequest", pb.RetryJobsRequest, pb.CancelJobsRequest, pb.DeleteJobsRequest)


def bulk_request(kind: type[BulkRequest], job_filter: JobFilter, limit: int, page_token: str) -> BulkRequest:
    """A RetryJobs, CancelJobs or DeleteJobs request (the same fields), checked."""
    return kind(
        filter=job_filter_to_proto(job_filter),
        limit=_integer(limit, "limit", _INT32) or 0,
        page_token=_text(page_token, "page_token"),
    )


def job_id_text(job_id: str) -> str:
    """A job id argument, checked as `enqueue_request` checks its own."""
    return _text(job_id, "job_id")


_INT32 = 2**31
_INT64 = 2**63


def _text(value: str, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    return value


def _integer(value: int | None, name: str, bound: int) -> int | None:
    # bool is an int to Python but never what a caller meant by a time or a count.
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be int or None, not {type(value).__name__}")
    if not -bound <= value < bound:
        raise ValueError(f"{name} is out of range for its field ({bound.bit_length()}-bit signed): {value}")
    return value


def _backoff(backoff: Backoff | None, name: str) -> Backoff | None:
    if backoff is None:
        return None
    if not isinstance(backoff, Backoff):
        raise TypeError(f"{name} must be a Backoff or None, not {type(backoff).__name__}")
    _integer(backoff.base_ms, f"{name}.base_ms", _INT64)
    _integer(backoff.cap_ms, f"{name}.cap_ms", _INT64)
    if not isinstance(backoff.factor, int | float) or isinstance(backoff.factor, bool):
        raise TypeError(f"{name}.factor must be a number, not {type(backoff.factor).__name__}")
    return backoff


def stats_to_proto(report: StatsReport) -> pb.GetQueueStatsResponse:
    return pb.GetQueueStatsResponse(
        queues=[_queue_to_proto(queue) for queue in report.queues],
        total=_queue_to_proto(report.total),
        read_at=report.read_at,
    )


def stats_from_proto(reply: pb.GetQueueStatsResponse) -> StatsReport:
    return StatsReport(
        [_queue_from_proto(queue) for queue in reply.queues],
        _queue_from_proto(reply.total or pb.QueueStats()),
        reply.read_at,
    )


def _queue_to_proto(queue: QueueStats) -> pb.QueueStats:
    return pb.QueueStats(**{name: getattr(queue, name) for name in _QUEUE_FIELDS})


def _queue_from_proto(queue: pb.QueueStats) -> QueueStats:
    values = {name: getattr(queue, name) for name in _QUEUE_FIELDS}
    # The per-minute counts are always MINUTES long: a reply without them counts 0 in each.
    for name in ("completed_per_minute", "failed_per_minute"):
        values[name] = (list(values[name]) + [0] * MINUTES)[:MINUTES]
    return QueueStats(**values)


_QUEUE_FIELDS = field_names(QueueStats)


def worker_to_proto(worker: WorkerInfo) -> pb.Worker:
    values = {name: getattr(worker, name) for name in _WORKER_FIELDS}
    return pb.Worker(**{**values, "types": list(worker.types)})


def worker_from_proto(worker: pb.Worker) -> WorkerInfo:
    values = {name: getattr(worker, name) for name in _WORKER_FIELDS}
    return WorkerInfo(**{**values, "types": tuple(worker.types)})


_WORKER_FIELDS = field_names(WorkerInfo)


def type_text(job_type: str) -> str:
    """A job type argument of a queue's read or control (checked by the server)."""
    return _text(job_type, "job_type")


def job_change_to_proto(change: JobChange, cursor: str) -> pb.JobEvent:
    """A watch's event (only the fields that are set: a watcher of a busy type sends many)."""
    event = pb.JobEvent(
        id=change.id, type=change.type, status=_STATUS[change.status], at=change.at, cursor=cursor
    )
    if change.attempt:
        event.attempt = change.attempt
    if change.worker_id:
        event.worker_id = change.worker_id
    if change.error:
        event.error = change.error
    if change.progress is not None:
        event.progress = change.progress
        event.progress_message = change.progress_message
    if change.result:
        event.result = change.result
    return event


_EVENT_PROGRESS = next(field for field in pb.JobEvent.desc().fields if field.name == "progress")


def job_change_from_proto(event: pb.JobEvent) -> dict[str, Any]:
    """The JobChange fields of a watch's event, for the client's event class."""
    return {
        "id": event.id,
        "type": event.type,
        "status": JobStatus(int(event.status)),
        "attempt": event.attempt,
        "worker_id": event.worker_id,
        "error": event.error,
        "at": event.at,
        "progress": event.progress if _EVENT_PROGRESS in event else None,
        "progress_message": event.progress_message,
        "result": event.result,
    }
