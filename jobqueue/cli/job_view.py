"""A job as the client commands print it: a view for people, or the wire message as JSON."""

from __future__ import annotations

import base64
import datetime as dt
import json

from ..model import DEFAULT_PRIORITY, Enqueued, Job
from ..wire import job_to_proto

UNSET = "—"
# A longer payload is cut in the view (--json prints it whole).
PAYLOAD_VIEW_CHARS = 500
_LABEL_WIDTH = len("idempotency key") + 2


def job_json(job: Job) -> str:
    """The job as the API's JSON has it (protobuf JSON: base64 payload, int64 times as strings)."""
    return json.dumps(json.loads(job_to_proto(job).to_json()), indent=2)


def job_view(job: Job) -> str:
    """Label and value lines, the id first; times in local time, the payload as text when it is text."""
    rows = [
        ("id", job.id),
        ("type", job.type),
        ("status", job.status.name),
        ("payload", payload_view(job.payload)),
        *([("result", payload_view(job.result))] if job.result else []),
        *([("progress", _progress(job))] if job.progress_at else []),
        ("attempts", _attempts(job)),
        ("run at", local_time(job.execution_time_ms)),
        ("created", local_time(job.created_at)),
        ("started", local_time(job.started_at)),
        ("finished", local_time(job.finished_at)),
        ("updated", local_time(job.updated_at)),
        ("worker", escaped(job.worker_id) or UNSET),
        ("last error", _last_error(job)),
        ("timeout", _duration(job.timeout_ms) if job.timeout_ms else "the worker's default"),
    ]
    if job.backoff is not None:
        base, cap = _duration(job.backoff.base_ms), _duration(job.backoff.cap_ms)
        rows.append(("backoff", f"{base}, x{job.backoff.factor:g} each time, at most {cap}"))
    if job.idempotency_key:
        rows.append(("idempotency key", escaped(job.idempotency_key)))
    if job.expires_at_ms:
        rows.append(("expires", f"{local_time(job.expires_at_ms)} (unless started by then)"))
    default = " (the default)" if job.priority == DEFAULT_PRIORITY else ""
    rows.append(("priority", f"{job.priority}{default}"))
    if job.unique_key:
        mode = job.unique_mode.name.lower().replace("_", "-")
        rows.append(("unique key", f"{escaped(job.unique_key)} ({mode})"))
    if job.enqueued is not Enqueued.CREATED:
        rows.append(("enqueued", _ENQUEUED[job.enqueued]))
    return "\n".join(_row(label, value) for label, value in rows)


_ENQUEUED = {
    Enqueued.EXISTING: "no: this job, enqueued before, has the same key",
    Enqueued.DEBOUNCED: "no: this pending job has the same key and took the new payload and time",
}


def local_time(ms: int) -> str:
    """ISO 8601 in the local time zone, with its offset; UNSET for 0 (never happened)."""
    if not ms:
        return UNSET
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).astimezone().isoformat(timespec="milliseconds")


def payload_view(payload: bytes) -> str:
    """The payload as text when it is printable UTF-8, else as base64 (and says so)."""
    if not payload:
        return f"{UNSET} (empty)"
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\n\t" for c in text):
        return _cut(text, len(payload))
    kind = "not UTF-8" if text is None else "UTF-8 with control characters"
    encoded = base64.b64encode(payload).decode()
    return f"(base64 of {len(payload)} bytes, {kind}) {_cut(encoded, len(payload))}"


def _cut(text: str, size: int) -> str:
    if len(text) <= PAYLOAD_VIEW_CHARS:
        return text
    return f"{text[:PAYLOAD_VIEW_CHARS]}… ({size} bytes in all: --json prints it whole)"


def _attempts(job: Job) -> str:
    if job.max_attempts:
        return f"{job.attempt} of {job.max_attempts}"
    return f"{job.attempt} (at most: the worker's default)"


def _last_error(job: Job) -> str:
    """The error with the attempt it belongs to: a COMPLETED job may show one of an earlier attempt."""
    if not job.last_error:
        return UNSET
    if job.last_error_attempt:
        return f"(attempt {job.last_error_attempt}) {escaped(job.last_error)}"
    return escaped(job.last_error)


def _progress(job: Job) -> str:
    """'40% copying part 4 (at <time>)': the last report of the current (or last) run."""
    message = f" {escaped(job.progress_message)}" if job.progress_message else ""
    return f"{job.progress:.0%}{message} (at {local_time(job.progress_at)})"


def _duration(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else f"{ms} ms"


def escaped(text: str) -> str:
    """Control characters shown as escapes: a worker's error text must not drive the terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _row(label: str, value: str) -> str:
    """A label and its value; the value's further lines indented under its first."""
    indent = "\n" + " " * _LABEL_WIDTH
    return f"{label:<{_LABEL_WIDTH}}{indent.join(value.splitlines()) or value}"
