"""The jobs' metrics: an observer of events.py that counts, per job type, what this
process's producer (the server's enqueues), workers and reapers report, and the
collector that shows the counts at scrape time.

The observer is on a worker's hot path: per event, one dict lookup (a type's
counts, made once per type) and an addition, or an observation of a histogram
(histogram.py). No label dict is built per event, and nothing takes a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from ..events import Event, Failure, JobLike
from ..model import Job
from ..reaper import LEASE_EXPIRED
from .histogram import DURATION_BUCKETS_S, WAIT_BUCKETS_S, Histogram

# Counter name (without _total), help, and the TypeCounts attribute it shows.
_COUNTERS = (
    ("jobqueue_jobs_enqueued", "Jobs stored as new by this process (not idempotent repeats).", "enqueued"),
    ("jobqueue_jobs_started", "Handler runs started.", "started"),
    ("jobqueue_jobs_completed", "Jobs whose completion was recorded.", "completed"),
    ("jobqueue_jobs_failed", "Handler runs that failed (raised or timed out), recorded.", "failed"),
    ("jobqueue_jobs_retried", "Failed runs after which a retry was scheduled.", "retried"),
    (
        "jobqueue_jobs_dead_lettered",
        "Jobs that failed for good (last attempt, PermanentError, or taken back from a last run).",
        "dead_lettered",
    ),
    (
        "jobqueue_stale_results",
        "Outcomes refused because the job's lease had been lost (not to a cancel).",
        "stale_results",
    ),
    (
        "jobqueue_jobs_expired",
        "Jobs this process's claims or reaper ended EXPIRED: not started by their expiry.",
        "expired",
    ),
)
WORKER_DEATH, LEASE_EXPIRY = "worker_death", "lease_expiry"


class TypeCounts:
    """One job type's counts."""

    __slots__ = (
        "completed",
        "dead_lettered",
        "enqueued",
        "expired",
        "failed",
        "handler_s",
        "recovered_lease_expiry",
        "recovered_worker_death",
        "retried",
        "stale_results",
        "started",
        "wait_s",
    )

    def __init__(self) -> None:
        self.enqueued = self.started = self.completed = self.failed = self.retried = 0
        self.dead_lettered = self.stale_results = self.expired = 0
        self.recovered_worker_death = self.recovered_lease_expiry = 0
        self.handler_s = Histogram(DURATION_BUCKETS_S)
        self.wait_s = Histogram(WAIT_BUCKETS_S)


class JobMetrics:
    """An observer (give it to `Observers`, or `Worker(observers=...)`) and a
    prometheus_client collector (register it in a `CollectorRegistry`)."""

    def __init__(self) -> None:
        self.by_type: dict[str, TypeCounts] = {}
        self._count: dict[Event, Callable[[TypeCounts, JobLike, object], None]] = {
            Event.ENQUEUED: _enqueued,
            Event.STARTED: _started,
            Event.RAN: _ran,
            Event.COMPLETED: _completed,
            Event.RETRY_SCHEDULED: _retried,
            Event.DEAD_LETTERED: _dead_lettered,
            Event.RECOVERED: _recovered,
            Event.STALE_RESULT: _stale_result,
            Event.EXPIRED: _expired,
        }

    def wants(self, event: Event) -> bool:
        return event in self._count

    def __call__(self, event: Event, job: JobLike | None, detail: object) -> None:
        if job is None:  # none of the events counted comes without its job
            return
        counts = self.by_type.get(job.type)
        if counts is None:
            counts = self.by_type[job.type] = TypeCounts()
        self._count[event](counts, job, detail)

    def collect(self) -> Iterator[Metric]:
        by_type = sorted(self.by_type.items())  # a copy: a new type may come in meanwhile
        for name, documentation, attribute in _COUNTERS:
            counter = CounterMetricFamily(name, documentation, labels=["type"])
            for job_type, counts in by_type:
                counter.add_metric([job_type], getattr(counts, attribute))
            yield counter
        recovered = CounterMetricFamily(
            "jobqueue_jobs_recovered",
            "Jobs a reaper took back from their holder, next in line: its worker stopped "
            "heartbeating (worker_death) or its lease expired (lease_expiry).",
            labels=["type", "reason"],
        )
        for job_type, counts in by_type:
            recovered.add_metric([job_type, WORKER_DEATH], counts.recovered_worker_death)
            recovered.add_metric([job_type, LEASE_EXPIRY], counts.recovered_lease_expiry)
        yield recovered
        handler = HistogramMetricFamily(
            "jobqueue_job_handler_duration_seconds",
            "How long handlers ran, until they returned or raised.",
            labels=["type"],
        )
        wait = HistogramMetricFamily(
            "jobqueue_job_wait_seconds",
            "From when a job was due (enqueued, or its scheduled or retry time) to its handler's start.",
            labels=["type"],
        )
        for job_type, counts in by_type:
            counts.handler_s.add_to(handler, [job_type])
            counts.wait_s.add_to(wait, [job_type])
        yield handler
        yield wait


def _enqueued(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.enqueued += 1


def _started(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.started += 1
    if isinstance(job, Job):
        # The worker's clock against Redis' (the due time): apart by their skew at most.
        counts.wait_s.observe(max(0.0, time.time() - job.execution_time_ms / 1000))


def _ran(counts: TypeCounts, job: JobLike, detail: object) -> None:
    if isinstance(detail, float):
        counts.handler_s.observe(detail)


def _completed(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.completed += 1


def _retried(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.failed += 1
    counts.retried += 1


def _dead_lettered(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.dead_lettered += 1
    if isinstance(detail, Failure):  # a worker's failed run (else the reaper's: a run that never ended)
        counts.failed += 1


def _recovered(counts: TypeCounts, job: JobLike, detail: object) -> None:
    if detail == LEASE_EXPIRED:
        counts.recovered_lease_expiry += 1
    else:
        counts.recovered_worker_death += 1


def _stale_result(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.stale_results += 1


def _expired(counts: TypeCounts, job: JobLike, detail: object) -> None:
    counts.expired += 1
