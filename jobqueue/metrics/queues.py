"""The queues' metrics: each type's jobs by state, whether it is paused, and the
age of its oldest ready job, from GetQueueStats' read of the counters the
transition scripts keep (store/stats.py: a round trip per scrape, whatever the
number of jobs).

The read is async and made before a scrape is answered (`refresh`); the
collector shows what it read. A read younger than `max_age_s` is shown again,
and scrapes that come while one is on its way wait for it: a storm of scrapes
costs Redis one read per `max_age_s`. With Redis unavailable the scrape leaves
these metrics out (the jobs' and RPCs' are answered all the same).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from ..queues import StatsReport
from ..store.stats import StatsReader
from ..supervise import REDIS_DOWN

log = logging.getLogger("jobqueue.metrics")

MAX_AGE_S = 1.0
STATES = ("ready", "scheduled", "running", "completed", "failed", "cancelled")


class QueueMetrics:
    """A prometheus_client collector of the queues' counts; `await refresh()` first."""

    def __init__(self, stats: StatsReader, max_age_s: float = MAX_AGE_S) -> None:
        self.stats = stats
        self.max_age_s = max_age_s
        self.report: StatsReport | None = None
        self._read_at = -float("inf")  # time.monotonic() of the last read
        self._reading: asyncio.Task[StatsReport] | None = None

    async def refresh(self) -> None:
        """Reads the counts unless the last read is recent enough."""
        if time.monotonic() - self._read_at < self.max_age_s:
            return
        if self._reading is None:
            self._reading = asyncio.create_task(self.stats.read())
            self._reading.add_done_callback(self._read)
        try:
            # Shielded: a scrape that goes away does not cancel the others' read.
            await asyncio.shield(self._reading)
        except REDIS_DOWN as exc:
            log.debug("queue counts left out of the metrics: Redis unavailable: %s", exc)

    def _read(self, reading: asyncio.Task[StatsReport]) -> None:
        self._reading = None
        if reading.cancelled() or reading.exception() is not None:
            self.report = None
        else:
            self.report = reading.result()
        self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        jobs = GaugeMetricFamily(
            "jobqueue_queue_jobs",
            "Jobs of each type by state: ready (due, waiting for a worker), scheduled (due later), "
            "running, and the finished ones still retained (completed, failed, cancelled).",
            labels=["type", "state"],
        )
        paused = GaugeMetricFamily(
            "jobqueue_queue_paused",
            "1 if workers may not claim the type's jobs (PauseQueue).",
            labels=["type"],
        )
        oldest = GaugeMetricFamily(
            "jobqueue_queue_oldest_ready_age_seconds",
            "How long the next ready job has waited since it was due; 0: none.",
            labels=["type"],
        )
        for queue in report.queues:
            for state in STATES:
                jobs.add_metric([queue.type, state], getattr(queue, state))
            paused.add_metric([queue.type], 1 if queue.paused else 0)
            oldest.add_metric([queue.type], queue.oldest_ready_age_ms / 1000)
        yield jobs
        yield paused
        yield oldest
