"""The example worker of go-job-queue: logs the payload of every `print` job.

`jobqueue dev` runs it unless given workers of its own. Anywhere jobqueue is installed:

python -m jobqueue.examples.print_worker              # Redis from REDIS_URL or REDIS_ADDR
jobqueue worker jobqueue.examples.print_worker
"""

import logging

from jobqueue.worker import Job, Worker

log = logging.getLogger("print_worker")


async def print_payload(job: Job) -> None:
    try:
        text = job.payload.decode("utf-8")
    except UnicodeDecodeError:
        log.info("job %s (attempt %d): %d bytes: %r", job.id, job.attempt, len(job.payload), job.payload)
    else:
        log.info("job %s (attempt %d): %s", job.id, job.attempt, text)


worker = Worker("print", print_payload)

if __name__ == "__main__":
    worker.run()
