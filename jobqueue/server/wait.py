"""WaitJob: a job once it is final, or as it is when the wait's timeout passes.

The wait follows the job's events (WatchJob's: the partition's hub, one XREAD
shared by every watcher of the partition), so a waiting call costs Redis nothing
while it waits: no polling. Then one read of the job (GetJob's), which carries its
result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..model import JobStatus, check_job_id, check_wait_ms
from ..producer import Producer
from ..wire import job_to_proto
from .watch import Hubs, watch_job


async def wait_job(
    hubs: Hubs, producer: Producer, request: pb.WaitJobRequest, shutdown: Callable[[], Awaitable[None]]
) -> pb.WaitJobResponse:
    """`shutdown` returns when the server shuts down: the wait then answers at once, with
    the job as it is (the client calls again, on a server that is up)."""
    job_id = check_job_id(request.id)
    if check_wait_ms(request.timeout_ms):
        final = asyncio.ensure_future(_until_final(hubs, job_id, request.timeout_ms / 1000))
        closing = asyncio.ensure_future(shutdown())
        try:
            await asyncio.wait((final, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            final.cancel()
            closing.cancel()
            await asyncio.wait((final, closing))
        if final.done() and not final.cancelled():
            final.result()  # raises JobNotFound for a job that does not exist
    job = await producer.get(job_id)
    return pb.WaitJobResponse(job=job_to_proto(job), done=job.status.is_final)


async def _until_final(hubs: Hubs, job_id: str, timeout_s: float) -> None:
    """Returns when the job's events show a final status, or after `timeout_s`;
    raises JobNotFound for a job that does not exist."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            events = watch_job(hubs, pb.WatchJobRequest(id=job_id), results=False)
            async with contextlib.aclosing(events):
                async for response in events:
                    if response.event is not None and JobStatus(response.event.status).is_final:
                        return
