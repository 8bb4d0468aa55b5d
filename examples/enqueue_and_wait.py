"""Enqueue a job through the API server, then wait for its outcome.

    python examples/enqueue_and_wait.py

The server is at JOBQUEUE_URL (default http://localhost:8080), and a worker
must serve the `print` type: `jobqueue dev` runs both.
"""

import os
import sys
import time

from jobqueue import Job
from jobqueue.client import SyncClient


def wait_for_outcome(client: SyncClient, job_id: str, timeout_s: float = 30.0) -> Job:
    """The job once it is COMPLETED, FAILED or CANCELLED, or as it is when the time is up."""
    deadline = time.monotonic() + timeout_s
    job = client.get(job_id)
    while not job.status.is_final and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.get(job_id)
    return job


with SyncClient(os.environ.get("JOBQUEUE_URL", "http://localhost:8080")) as client:
    job = client.enqueue("print", "hello from enqueue_and_wait.py")  # str payloads are sent as UTF-8
    print(f"enqueued job {job.id} ({job.status.name})")
    job = wait_for_outcome(client, job.id)
    print(f"job {job.id}: {job.status.name} after {job.attempt} attempt(s)")
    if job.last_error:
        print(f"last error: {job.last_error}")
    sys.exit(0 if job.status.name == "COMPLETED" else 1)
