"""A worker of tests/test_log_format.py (`jobqueue worker tests/json_log_worker.py`): its
handler logs a line of its own, and its job's first attempt fails."""

from __future__ import annotations

import logging

from jobqueue.model import Backoff
from jobqueue.worker import Job, Worker

log = logging.getLogger("tests.handler")


async def flaky(job: Job) -> None:
    log.info("handling %d bytes", len(job.payload))
    if job.attempt == 1:
        raise ValueError("the first attempt fails")


worker = Worker(
    "json-logged",
    flaky,
    max_attempts=2,
    backoff=Backoff(base_ms=100, factor=1.0, cap_ms=100),
    heartbeat_s=0.2,
    block_timeout_s=0.5,
)
