"""Run a job a few seconds from now.

    python examples/schedule.py

The server is at JOBQUEUE_URL (default http://localhost:8080), and a worker
must serve the `print` type: `jobqueue dev` runs both. Times are Unix
milliseconds; the server's Redis clock decides when a job is due.
"""

import datetime as dt
import os
import sys
import time

from jobqueue.client import SyncClient


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


with SyncClient(os.environ.get("JOBQUEUE_URL", "http://localhost:8080")) as client:
    due_ms = int((time.time() + 3) * 1000)
    job = client.enqueue("print", "hello, three seconds after it was enqueued", execution_time_ms=due_ms)
    print(f"job {job.id} is {job.status.name}, due at {iso(job.execution_time_ms)}")

    deadline = time.monotonic() + 30
    while not job.status.is_final and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.get(job.id)
    if job.started_at:
        print(f"job {job.id}: {job.status.name}, started at {iso(job.started_at)}")
    else:
        print(f"job {job.id}: still {job.status.name} (is a worker serving the print type?)")
    sys.exit(0 if job.status.name == "COMPLETED" else 1)
