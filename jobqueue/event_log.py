"""The log lines of what happens to jobs: an observer of events.py.

One line per outcome that a person may need to see (INFO for the expected ones,
WARNING for what hints at trouble), a traceback only where the handler's
exception was unexpected; the routine steps of a job at DEBUG:

    job 3f2a... (send_email) failed (attempt 2/3): ValueError: boom; retrying in 1.7 s
    job 3f2a... (send_email) failed for good after 3 attempts: ValueError: boom (...)
    job 3f2a... (send_email) failed permanently (attempt 1/3): PermanentError: ... (...)

A handler's ordinary exception is a bug of the handler's: its line is a WARNING
with the traceback. PermanentError, RetryAfter and a timeout are expected: INFO,
no traceback (a last attempt's failure is a WARNING all the same). Each line
about a job carries its `job_id` and `job_type` (log_lines.py), and a line about
a queue its `job_type`.
"""

from __future__ import annotations

import logging

from .events import Call, Event, Failure, JobLike, Swept
from .model import Job, JobStatus
from .outage import duration
from .store.outcomes import Result

log = logging.getLogger("jobqueue.jobs")


def _attempt(job: JobLike) -> str:
    if isinstance(job, Job) and job.max_attempts:
        return f"attempt {job.attempt}/{job.max_attempts}"
    return f"attempt {job.attempt}" if isinstance(job, Job) else "its attempt"


class LogObserver:
    """The routine steps (claimed, started, completed) are logged if DEBUG is on for
    `jobqueue.jobs` when the Observers are made (a worker makes its own as it starts
    serving); the rest as they happen."""

    def wants(self, event: Event) -> bool:
        return event not in _ROUTINE or log.isEnabledFor(logging.DEBUG)

    def __call__(self, event: Event, job: JobLike | None, detail: object) -> None:
        if job is None:
            self._about_queue(event, detail)
        elif event in _ROUTINE:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job %s (%s): %s, %s", job.id, job.type, event.value, _attempt(job), extra=_about(job)
                )
        elif isinstance(detail, Failure):
            self._failed(event, job, detail)
        else:
            level, text = _LINES[event]
            text = text.format(_described(detail))
            log.log(level, "job %s (%s): %s", job.id, job.type, text, extra=_about(job))

    @staticmethod
    def _failed(event: Event, job: JobLike, failure: Failure) -> None:
        expected = logging.INFO if failure.exception is None else logging.WARNING
        if event is Event.RETRY_SCHEDULED:
            level, how, then = expected, f"failed ({_attempt(job)})", f"; retrying in {_delay(failure)}"
        elif failure.delay_ms is None:  # a PermanentError
            level, how, then = expected, f"failed permanently ({_attempt(job)})", _DEAD_LETTER
        else:
            attempts = "its last attempt"
            if isinstance(job, Job):
                attempts = f"{job.attempt} attempt{'' if job.attempt == 1 else 's'}"
            level, how, then = logging.WARNING, f"failed for good after {attempts}", _DEAD_LETTER
        log.log(
            level,
            "job %s (%s) %s: %s%s",
            job.id,
            job.type,
            how,
            failure.error,
            then,
            exc_info=failure.exception,
            extra=_about(job),
        )

    @staticmethod
    def _about_queue(event: Event, detail: object) -> None:
        if isinstance(detail, Swept):
            if event is Event.WORKER_LOST:
                log.warning(
                    "worker %s (%s) stopped heartbeating: its jobs were taken back",
                    detail.worker_id,
                    detail.job_type,
                    extra={"job_type": detail.job_type},
                )
            else:
                log.warning(
                    "%d %s job(s) popped but never claimed: back to ready",
                    detail.count,
                    detail.job_type,
                    extra={"job_type": detail.job_type},
                )
        elif isinstance(detail, Call) and event is Event.PROMOTED and detail.moved:
            log.debug(
                "promoted %d %s job(s)", detail.moved, detail.job_type, extra={"job_type": detail.job_type}
            )


_DEAD_LETTER = " (a dead letter: RetryJob runs it again)"


def _about(job: JobLike) -> dict[str, str]:
    """The fields of a line about `job` (log_lines.py: JSON lines carry them)."""
    return {"job_id": job.id, "job_type": job.type}


def _delay(failure: Failure) -> str:
    seconds = (failure.delay_ms or 0) / 1000
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


def _described(detail: object) -> str:
    if isinstance(detail, Result) and detail.status is not None:
        detail = detail.status
    if isinstance(detail, JobStatus):
        return detail.name
    return "gone" if detail is None else str(detail)


_ROUTINE = frozenset({Event.ENQUEUED, Event.CLAIMED, Event.STARTED, Event.RAN, Event.COMPLETED})
_LINES: dict[Event, tuple[int, str]] = {
    Event.SKIPPED: (logging.INFO, "not claimed ({}), skipped"),
    Event.RELEASED: (logging.INFO, "released unfinished at shutdown: it runs again, the attempt not counted"),
    Event.CANCELLED: (logging.INFO, "cancelled while held: its handler was stopped, or its outcome dropped"),
    Event.LEASE_LOST: (logging.WARNING, "lease lost (the job is now {}): its handler was stopped"),
    Event.STALE_RESULT: (logging.WARNING, "result refused: its lease was lost (the job is now {})"),
    Event.NOT_RECORDED: (
        logging.WARNING,
        "could not record that it {} (Redis unavailable): it will run again",
    ),
    Event.RECOVERED: (logging.WARNING, "{}: taken back, next in line"),
    Event.DEAD_LETTERED: (logging.WARNING, "{} during its last attempt: failed for good"),
    Event.EXPIRED: (logging.INFO, "not started by its expiry: ended EXPIRED (by the {})"),
}
