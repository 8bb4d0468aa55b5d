"""A handler that steers its retries, and a driver that shows what became of each job.

    jobqueue worker examples/retries.py     # the worker (Redis from REDIS_URL)
    python examples/retries.py              # the driver (the server at JOBQUEUE_URL)

A handler that raises fails the attempt: the job runs again after a backoff
while attempts are left (here 3, the first delay 0.2 s, then doubling), and
ends FAILED after the last. `PermanentError` fails it at once, with no retry;
`RetryAfter(seconds)` retries after the delay it names instead of the backoff.
"""

import os
import sys
import time

from jobqueue import Backoff
from jobqueue.client import SyncClient
from jobqueue.worker import Job, PermanentError, RetryAfter, Worker


async def charge(job: Job) -> None:
    card = job.payload.decode()
    if card == "expired":
        raise PermanentError("the card has expired")  # retrying cannot help
    if card == "rate-limited" and job.attempt == 1:
        raise RetryAfter(0.5, "the bank asks us to wait")  # the delay the bank asked for
    if card == "flaky" and job.attempt < 3:
        raise ConnectionError(f"the bank did not answer (attempt {job.attempt})")  # an ordinary failure
    if card == "down":
        raise ConnectionError("the bank is down")  # fails every attempt: FAILED after the last


worker = Worker("charge", charge, max_attempts=3, backoff=Backoff(base_ms=200, factor=2))
CARDS = ("ok", "expired", "rate-limited", "flaky", "down")

if __name__ == "__main__":
    with SyncClient(os.environ.get("JOBQUEUE_URL", "http://localhost:8080")) as client:
        jobs = {card: client.enqueue("charge", card) for card in CARDS}
        deadline = time.monotonic() + 60
        outcomes = {card: client.get(job.id) for card, job in jobs.items()}
        while not all(job.status.is_final for job in outcomes.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
            outcomes = {card: client.get(job.id) for card, job in jobs.items()}
    for card, job in outcomes.items():
        error = f": {job.last_error}" if job.status.name == "FAILED" else ""
        print(f"{card:>12}: {job.status.name} after {job.attempt} attempt(s){error}")
    sys.exit(0 if all(job.status.is_final for job in outcomes.values()) else 1)
