"""The worker SDK: run a handler for every job of a type.

    from jobqueue.worker import Job, Worker

    async def send_email(job: Job) -> None:
        ...  # raise to fail the job

    Worker("send_email", send_email).run()   # until SIGINT/SIGTERM

A plain function (`def send_email(job: Job) -> None`) runs in a thread pool of
the worker's own (sync_handlers.py), so that it cannot block the heartbeats.

The worker's moving parts, one module each: fetcher.py (pops, claims, rounds),
slots.py (running and prefetched jobs), completions.py (the completion buffer
and its rounds), heartbeat.py (liveness and leases), sync_handlers.py (plain
functions' runs); worker.py keeps the options, `serve`, the run of one job and
shutdown.
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
