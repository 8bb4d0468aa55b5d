"""How a log line looks: text for people (the default), or one JSON object a line.

    2026-12-02 08:00:00,123 WARNING jobqueue.jobs: job 3f2a... (email) failed (attempt 1/3): ...
    {"time": "2026-12-02T08:00:00.123Z", "level": "WARNING", "logger": "jobqueue.jobs",
     "message": "job 3f2a... (email) failed (attempt 1/3): ...", "job_id": "3f2a...", "job_type": "email"}

A line about a job carries its id and type: event_log.py passes them with each of
its lines, and a line logged while a handler runs (the handler's own lines) gets
those of its job (`RUNNING_JOB`); as text, such a line ends with `[job ID TYPE]`.
With tracing on, a line logged within a span carries `trace_id` and `span_id`
(tracing.correlate_logs): as text, a `[trace ID span ID]` at its end.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

from .model import Job

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The job whose handler runs in this task (worker.py sets it as a run starts: every
# run is a task of its own, so nothing resets it).
RUNNING_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("jobqueue_running_job", default=None)
# The fields a JSON line carries when its record has them, in this order.
CONTEXT_FIELDS = ("job_id", "job_type", "trace_id", "span_id")


class JobFields(logging.Filter):
    """Gives a record logged while a handler runs its job's `job_id` and `job_type`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "job_id" not in record.__dict__:
            job = RUNNING_JOB.get()
            if job is not None:
                record.job_id, record.job_type, record.job_not_in_text = job.id, job.type, True
        return True


class TextLines(logging.Formatter):
    """TEXT_FORMAT, then the job and the span a line's text does not name."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record.__dict__
        if fields.get("job_not_in_text"):
            line += f" [job {fields['job_id']} {fields['job_type']}]"
        if "trace_id" in fields:
            line += f" [trace {fields['trace_id']} span {fields['span_id']}]"
        return line


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the CONTEXT_FIELDS
    the record has, and `exception` (its traceback) if it has one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in CONTEXT_FIELDS:
            if name in fields:
                line[name] = fields[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of a LOG_FORMATS name (process.py checks it)."""
    return JsonLines() if log_format == "json" else TextLines()
