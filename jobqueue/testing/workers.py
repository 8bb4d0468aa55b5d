"""Real workers in the test's own event loop, against a real Redis.

    async with run_worker(Worker("email", send_email), settings=settings) as running:
        await producer.enqueue("email", b"...")
        await running.drain(timeout_s=10)

or, to run what is queued and stop: `await drain(worker, settings=settings)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from ..queues import QueueStats
from ..settings import Settings
from ..store import Store
from ..worker import Worker

# How often `drain` reads the queues' counts (one script call per type).
POLL_S = 0.02


class RunningWorkers:
    """Workers serving in the background of the test's event loop (see `run_worker`)."""

    def __init__(self, workers: Sequence[Worker], settings: Settings) -> None:
        self.workers = tuple(workers)
        self.settings = settings
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Returns once the workers' types hold no PENDING (scheduled ones included)
        and no RUNNING job, their outcomes recorded. Raises TimeoutError, naming
        what is left, after `timeout_s`; re-raises a worker's own failure."""
        job_types = sorted({worker.job_type for worker in self.workers})
        store = Store.open(self.settings, max_connections=4)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                self._raise_if_failed()
                left = [await _unfinished(store, job_type) for job_type in job_types]
                if not any(left):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the queues did not drain within {timeout_s:g} s; left: "
                        + ", ".join(_describe(q) for q in left if q)
                    )
                await asyncio.sleep(POLL_S)
        finally:
            await store.aclose()

    def _start(self) -> None:
        for worker in self.workers:
            serve = worker.serve(self._stop, settings=self.settings)
            self._tasks.append(asyncio.create_task(serve, name=f"worker {worker.job_type}"))

    def _raise_if_failed(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"{task.get_name()} stopped with an error") from task.exception()

    async def _stop_all(self) -> None:
        """Stops them gracefully (each waits for its running handlers up to its
        shutdown_grace_s, then hands their jobs back)."""
        self._stop.set()
        longest = max(worker.shutdown_grace_s + worker.lease_ms / 1000 for worker in self.workers)
        done, pending = await asyncio.wait(self._tasks, timeout=longest + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a worker's failure is the test's
        if pending:
            raise TimeoutError(f"{len(pending)} worker(s) did not stop within {longest + 5:g} s")


@contextlib.asynccontextmanager
async def run_worker(*workers: Worker, settings: Settings) -> AsyncIterator[RunningWorkers]:
    """Serves `workers` with `settings` for the block, then stops them gracefully; a
    worker's failure is raised at the end. A worker built with settings of its own
    serves with those: `drain` reads the queues with `settings`, so they must name
    the same Redis and prefix."""
    if not workers:
        raise ValueError("run_worker: give at least one Worker")
    running = RunningWorkers(workers, settings)
    running._start()
    try:
        yield running
    finally:
        await running._stop_all()


async def drain(*workers: Worker, settings: Settings, timeout_s: float = 30.0) -> None:
    """Runs `workers` until their types hold no unfinished job, then stops them
    (see RunningWorkers.drain)."""
    async with run_worker(*workers, settings=settings) as running:
        await running.drain(timeout_s)


async def _unfinished(store: Store, job_type: str) -> QueueStats | None:
    """The type's counts if it holds unfinished jobs, else None."""
    report = await store.stats.read(job_type)
    queue = report.queues[0]
    return queue if queue.pending or queue.running else None


def _describe(queue: QueueStats) -> str:
    return f"{queue.type}: {queue.pending} pending ({queue.scheduled} scheduled), {queue.running} running"
