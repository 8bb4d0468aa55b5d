"""The worker SDK: run an async handler for every job of a type.

from jobqueue.worker import Job, Worker

async def send_email(job: Job) -> None:
    ...  # raise to fail the job

Worker("send_email", send_email).run()   # until SIGINT/SIGTERM
"""

from ..model import Backoff, Job, JobStatus
from .errors import PermanentError, RetryAfter
from .worker import Handler, Worker, run_workers

__all__ = ["Backoff", "Handler", "Job", "JobStatus", "PermanentError", "RetryAfter", "Worker", "run_workers"]
