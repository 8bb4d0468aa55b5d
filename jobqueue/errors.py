"""Domain errors. The server maps each to one Connect code (server/errors.py)."""

from __future__ import annotations


class JobQueueError(Exception):
    """Base of the errors jobqueue raises on purpose."""


class InvalidInput(JobQueueError, ValueError):
    """Input that breaks a documented rule; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class PayloadTooLarge(InvalidInput):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            "payload", f"{size} bytes is over the limit of {limit} bytes (JOBQUEUE_MAX_PAYLOAD_BYTES)"
        )


class JobNotFound(JobQueueError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id} not found (it never existed, or it finished and its retention expired)"
        )
        self.job_id = job_id


class JobAlreadyFinished(JobQueueError):
    def __init__(self, job_id: str, status_name: str) -> None:
        super().__init__(f"job {job_id} already finished ({status_name}) and cannot be cancelled")
        self.job_id = job_id


class JobNotRetryable(JobQueueError):
    def __init__(self, job_id: str, status_name: str) -> None:
        super().__init__(
            f"job {job_id} is {status_name}: only FAILED, CANCELLED or EXPIRED jobs can be retried"
        )
        self.job_id = job_id


class QueueFull(JobQueueError):
    """An enqueue over its type's maximum depth (admission); nothing of the call that
    raised it was stored, unless concurrent enqueues filled the type meanwhile."""

    def __init__(self, job_type: str, limit: int, setting: str, *, adding: int = 0, pending: int = 0) -> None:
        detail = f"; it holds {pending}, and the call would add {adding}" if adding else ""
        super().__init__(f"type {job_type!r} is full: its limit is {limit} pending jobs ({setting}){detail}")
        self.job_type = job_type
        self.limit = limit


class TracingUnavailable(JobQueueError, ImportError):
    """Tracing is on (JOBQUEUE_TRACING) but what it needs is not installed."""


class NotReplicated(JobQueueError):
    """An enqueue that Redis stored but fewer replicas than asked confirmed within the
    timeout (JOBQUEUE_REPLICA_ACKS): a failover now could lose it. The client cannot
    tell it stored: a retry with the same idempotency key is the right answer."""

    def __init__(self, acked: int, wanted: int, timeout_s: float) -> None:
        super().__init__(
            f"the job may or may not be stored: {acked} of {wanted} replicas confirmed it within "
            f"{timeout_s:g} s (JOBQUEUE_REPLICA_ACKS); retry with the same idempotency key"
        )
        self.acked, self.wanted = acked, wanted
