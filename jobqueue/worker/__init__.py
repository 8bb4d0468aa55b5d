"""The worker SDK: run an async handler for every job of a type.

from jobqueue.worker import Job, Worker

async def send_email(job: Job) -> None:
    ...  # raise to fail the job

Worker("send_email", send_email).run()   # until SIGINT/SIGTERM
"""

from ..model import Job, JobStatus
from .worker import Handler, Worker, run_workers

__all__ = ["Handler", "Job", "JobStatus", "Worker", "run_workers"]
