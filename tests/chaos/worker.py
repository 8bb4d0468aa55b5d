"""The worker of the fault-injection suite (run.py): `jobqueue worker tests/chaos/worker.py`.

Every run appends to a history file of its own process, unbuffered so that a
SIGKILL loses nothing already written: a "start" line when the handler starts
and an "end" line when it returns or raises on purpose. The payload says how
long a run takes and how many first attempts fail. A run's result, and its
progress messages, name its fencing token and process, so the suite can tell
whose result and progress were stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from jobqueue.model import Backoff
from jobqueue.worker import Job, Worker

_history_fd: int | None = None


def record(event: str, job: Job, **extra: object) -> None:
    global _history_fd  # noqa: PLW0603 - one append-only file per process, opened on first use
    if _history_fd is None:
        path = Path(os.environ["CHAOS_HISTORY_DIR"]) / f"worker-{os.getpid()}.jsonl"
        _history_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = {
        "e": event,
        "id": job.id,
        "a": job.attempt,
        "tok": job.lease_token,
        "pid": os.getpid(),
        "t": time.time(),
    }
    os.write(_history_fd, (json.dumps({**line, **extra}) + "\n").encode())


async def run_chaos_job(job: Job) -> str:
    spec = json.loads(job.payload)
    # The expiry and the claim's time (both the Redis clock): run.py checks a first
    # run was claimed before its job's expiry.
    record("start", job, x=job.expires_at_ms, sa=job.started_at)
    job.set_progress(0.0, f"{job.lease_token}:{os.getpid()}")
    if job.attempt <= spec["fails"]:
        record("end", job, ok=False)
        raise RuntimeError(f"planned failure {job.attempt} of {spec['fails']}")
    await asyncio.sleep(spec["ms"] / 1000)
    record("end", job, ok=True)
    # Which run this is: the result (and last progress) stored must be the current lease holder's.
    job.set_progress(1.0, f"{job.lease_token}:{os.getpid()}")
    return f"{job.lease_token}:{os.getpid()}"


worker = Worker(
    "chaos",
    run_chaos_job,
    concurrency=8,
    prefetch=8,  # prefetched jobs go through every fault too
    max_attempts=10,
    backoff=Backoff(base_ms=50, factor=2, cap_ms=1_000),
    lease_s=10.0,
    liveness_s=2.0,
    heartbeat_s=0.3,
    shutdown_grace_s=0.5,
)
