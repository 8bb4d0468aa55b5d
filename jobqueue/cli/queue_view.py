"""Queues as the `stats` and `workers` commands print them: tables for people (counts
right-aligned, times in ISO 8601), or the API's reply as JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..queues import QueueStats, StatsReport, WorkerInfo
from ..wire import stats_to_proto, worker_to_proto
from .job_view import UNSET, local_time

STATS_COLUMNS = (
    "TYPE", "STATE", "PENDING", "SCHEDULED", "READY", "RUNNING", "COMPLETED", "FAILED", "CANCELLED",
    "EXPIRED", "OLDEST READY", "DONE 1H", "FAILED 1H", "WORKERS", "MAX DEPTH",
)  # fmt: skip
WORKER_COLUMNS = ("ID", "HOST", "PID", "TYPES", "CONCURRENCY", "HELD", "STARTED", "LAST HEARTBEAT")


def stats_table(report: StatsReport) -> str:
    """A row per type and a total row, under the time the counts were read."""
    rows = [_stats_row(queue.type, queue) for queue in report.queues]
    rows.append(_stats_row("(total)", report.total, total=True))
    counts = table(STATS_COLUMNS, rows, numeric=range(2, len(STATS_COLUMNS)))
    return f"read at {local_time(report.read_at)}\n{counts}"


def _stats_row(name: str, queue: QueueStats, *, total: bool = False) -> list[str]:
    return [
        name,
        UNSET if total else ("paused" if queue.paused else "active"),
        *(str(n) for n in (queue.pending, queue.scheduled, queue.ready, queue.running)),
        *(str(n) for n in (queue.completed, queue.failed, queue.cancelled, queue.expired)),
        age(queue.oldest_ready_age_ms),
        str(sum(queue.completed_per_minute)),
        str(sum(queue.failed_per_minute)),
        str(queue.workers),
        str(queue.max_depth) if queue.max_depth else UNSET,
    ]


def workers_table(workers: Sequence[WorkerInfo]) -> str:
    rows = [_worker_row(worker) for worker in workers]
    return table(WORKER_COLUMNS, rows, numeric=(2, 4, 5))


def _worker_row(w: WorkerInfo) -> list[str]:
    return [
        w.id, w.host, str(w.pid), ",".join(w.types), str(w.concurrency), str(w.jobs_held),
        local_time(w.started_at), local_time(w.last_heartbeat_at),
    ]  # fmt: skip


def stats_json(report: StatsReport) -> str:
    return _json(stats_to_proto(report).to_json())


def workers_json(workers: Sequence[WorkerInfo]) -> str:
    return _json(pb.ListWorkersResponse(workers=[worker_to_proto(w) for w in workers]).to_json())


def _json(text: str) -> str:
    """As job_view.job_json prints a job: indented protobuf JSON."""
    return json.dumps(json.loads(text), indent=2)


def age(ms: int) -> str:
    """A wait for people: 850 ms, 4.2 s, 3 m 12 s, 5 h 3 m; UNSET for none."""
    if not ms:
        return UNSET
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes} m {ms // 1000 % 60} s"
    return f"{minutes // 60} h {minutes % 60} m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    """Columns two spaces apart; the `numeric` ones (by index) aligned right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        aligned = (
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])
