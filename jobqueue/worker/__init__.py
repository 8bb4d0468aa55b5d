"""The worker SDK: run a handler for every job of a type.

    from jobqueue.worker import Job, Worker

    async def send_email(job: Job) -> None:
        ...  # raise to fail the job; return bytes or str to store them as its result

    Worker("send_email", send_email).run()   # until SIGINT/SIGTERM

    async def send_email(email: Email, job: Job) -> None:   # typed: docs/payloads.md
        ...  # Email (a dataclass, TypedDict, pydantic model...) decoded from JSON

A plain function (`def send_email(job: Job) -> None`) runs in a thread pool of
the worker's own (sync_handlers.py), so that it cannot block the heartbeats.

The worker's moving parts, one module each: fetcher.py (pops, claims, rounds),
slots.py (running and prefetched jobs), completions.py (the completion buffer
and its rounds), heartbeat.py (liveness and leases), sync_handlers.py (plain
functions' runs); worker.py keeps the options, `serve`, the run of one job and
shutdown; typed.py decodes typed payloads.
"""

from ..events import Event
from ..model import Backoff, Job, JobStatus
from .errors import PayloadDecodeError, PermanentError, RetryAfter
from .typed import Handler
from .worker import Worker, run_workers

__all__ = [
    "Backoff",
    "Event",
    "Handler",
    "Job",
    "JobStatus",
    "PayloadDecodeError",
    "PermanentError",
    "RetryAfter",
    "Worker",
    "run_workers",
]
