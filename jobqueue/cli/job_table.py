"""Jobs as `jobqueue list` prints them: a table for people, or the API's reply as JSON."""

from __future__ import annotations

import json

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..model import Job
from ..selection import JobPage
from ..wire import job_to_proto
from .job_view import UNSET, escaped, local_time

# A longer last error is cut in the table (--json prints it whole).
ERROR_CHARS = 60


def page_json(page: JobPage) -> str:
    """The page as the API's ListJobs reply (protobuf JSON)."""
    reply = pb.ListJobsResponse(
        jobs=[job_to_proto(job) for job in page.jobs], next_page_token=page.next_page_token
    )
    return json.dumps(json.loads(reply.to_json()), indent=2)


def job_table(jobs: list[Job], *, finished: bool) -> str:
    """One row per job under a header, columns aligned, the attempt right-aligned; the time
    column is the one the list is ordered by (finished for a finished status)."""
    header = ("ID", "TYPE", "STATUS", "ATTEMPT", "FINISHED" if finished else "CREATED", "LAST ERROR")
    rows = [header] + [
        (
            job.id,
            escaped(job.type),
            job.status.name,
            str(job.attempt),
            local_time(job.finished_at if finished else job.created_at),
            _error(job.last_error),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column == 3 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _error(text: str) -> str:
    one_line = escaped(" ".join(text.split()))
    if not one_line:
        return UNSET
    return one_line if len(one_line) <= ERROR_CHARS else one_line[: ERROR_CHARS - 1] + "…"
