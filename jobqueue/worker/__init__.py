"""The worker SDK: run an async handler for every job of a type.

    from jobqueue.worker import Job, Worker

    async def send_email(job: Job) -> None:
        ...  # raise to fail the job; return bytes or str to store them as its result

    Worker("send_email", send_email).run()   # until SIGINT/SIGTERM

The worker's moving parts, one module each: fetcher.py (pops, claims, rounds),
slots.py (running and prefetched jobs), completions.py (the completion buffer
and its rounds), heartbeat.py (liveness and leases); worker.py keeps the
options, `serve`, the run of one job and shutdown.
"""

from ..events import Event
from ..model import Backoff, Job, JobStatus
from .errors import PermanentError, RetryAfter
from .worker import Handler, Worker, run_workers

__all__ = [
    "Backoff",
    "Event",
    "Handler",
    "Job",
    "JobStatus",
    "PermanentError",
    "RetryAfter",
    "Worker",
    "run_workers",
]
