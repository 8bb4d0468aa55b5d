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
        log.info("%d bytes (attempt %d): %r", len(job.payload), job.attempt, job.payload)
    else:
        # The line ends with the job's id and type: `hello (attempt 1) [job 7c66... print]`.
        log.info("%s (attempt %d)", text, job.attempt)


worker = Worker("print", print_payload)

if __name__ == "__main__":
    worker.run()
