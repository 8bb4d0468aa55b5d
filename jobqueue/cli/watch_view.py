"""`jobqueue watch`: events as lines for people, or as JSON documents, one a line.

The stream is read on a thread of its own: a read blocked in the HTTP library
would hold off Ctrl-C until the next event, and a quiet watch may wait for hours.
The main thread waits on a queue, which Ctrl-C interrupts at once.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from typing import TYPE_CHECKING

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..wire import job_change_to_proto
from .exits import ExitCode, call_failure
from .job_view import escaped, local_time

if TYPE_CHECKING:
    from ..client import EventStream, WatchEvent
    from .parser import TLSFiles

GAP_NOTE = "jobqueue: events were lost before the next one (the cursor was older than the events kept)"
_END = object()


def event_line(event: WatchEvent) -> str:
    """Time, id, type, status, attempt, worker, error, and a progress report's percentage
    and message: one line (an error's newlines escaped)."""
    parts = [local_time(event.at), event.id, escaped(event.type), f"{event.status.name:<9}"]
    parts.append(f"attempt {event.attempt}")
    if event.worker_id:
        parts.append(f"worker {escaped(event.worker_id)}")
    if event.error:
        parts.append(f"error {json.dumps(event.error, ensure_ascii=False)}")
    if event.progress is not None:
        parts.append(f"progress {event.progress:.0%}")
        if event.progress_message:
            parts.append(json.dumps(event.progress_message, ensure_ascii=False))
    return "  ".join(parts)


def event_json(event: WatchEvent) -> str:
    """The event as the API's JSON has it (a WatchJobsResponse), on one line."""
    message = pb.WatchJobsResponse(event=job_change_to_proto(event, event.cursor), gap=event.gap)
    return json.dumps(json.loads(message.to_json()), separators=(",", ":"))


def watch(
    url: str,
    timeout_s: float,
    token: str | None,
    *,
    tls: TLSFiles,
    job_id: str | None,
    job_type: str,
    cursor: str,
    as_json: bool,
    progress: bool = False,
) -> int:
    from connectrpc.errors import ConnectError  # noqa: PLC0415 - keeps --help fast

    from ..client import SyncClient  # noqa: PLC0415

    with SyncClient(url, timeout_s=timeout_s, token=token, **tls) as client:
        try:
            if job_id:
                stream = client.watch_job(job_id, cursor, progress=progress)
            else:
                stream = client.watch_jobs(job_type, cursor, progress=progress)
        except ConnectError as exc:
            raise call_failure(exc, url, timeout_s) from None
        events: queue.Queue[object] = queue.Queue(maxsize=1000)
        reader = threading.Thread(target=_read, args=(stream, events), daemon=True, name="watch")
        reader.start()
        try:
            while True:
                item = events.get()
                if item is _END:
                    return ExitCode.OK
                if isinstance(item, ConnectError):
                    raise call_failure(item, url, timeout_s)
                event: WatchEvent = item  # type: ignore[assignment]
                if event.gap and not as_json:
                    print(GAP_NOTE, file=sys.stderr, flush=True)
                print(event_json(event) if as_json else event_line(event), flush=True)
        except KeyboardInterrupt:
            return ExitCode.OK  # the way a watch of many jobs ends
        finally:
            stream.abort()
            reader.join(timeout=1)


def _read(stream: EventStream, events: queue.Queue[object]) -> None:
    from connectrpc.errors import ConnectError  # noqa: PLC0415

    try:
        for event in stream:
            events.put(event)
    except ConnectError as exc:
        events.put(exc)
    finally:
        events.put(_END)
