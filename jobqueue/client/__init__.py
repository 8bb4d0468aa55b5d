"""An async client of the JobService API (what the CLI uses).

    async with Client("http://localhost:8080") as client:
        job = await client.enqueue("print", b"hello")
        job = await client.get(job.id)

Errors arrive as `connectrpc.errors.ConnectError` with the server's code.
"""

from __future__ import annotations

from types import TracebackType

from connectrpc.codec import proto_json_codec

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from ..model import Job
from ..wire import job_from_proto

DEFAULT_URL = "http://localhost:8080"


class Client:
    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 30.0, json: bool = False) -> None:
        """Connect protocol over HTTP/1.1; `json=True` sends JSON instead of binary protobuf."""
        self._client = JobServiceClient(
            url.rstrip("/"),
            timeout_ms=int(timeout_s * 1000),
            codec=proto_json_codec() if json else None,
        )

    async def enqueue(self, job_type: str, payload: bytes = b"", execution_time_ms: int | None = None) -> Job:
        request = pb.EnqueueJobRequest(type=job_type, payload=payload, execution_time_ms=execution_time_ms)
        return job_from_proto((await self._client.enqueue_job(request)).job)

    async def get(self, job_id: str) -> Job:
        return job_from_proto((await self._client.get_job(pb.GetJobRequest(id=job_id))).job)

    async def cancel(self, job_id: str) -> None:
        await self._client.cancel_job(pb.CancelJobRequest(id=job_id))

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


__all__ = ["DEFAULT_URL", "Client"]
