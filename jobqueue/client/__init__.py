"""Clients of the JobService API: `Client` (asyncio) and `SyncClient` (what the CLI uses).

    async with Client("http://localhost:8080") as client:
        job = await client.enqueue("print", b"hello")

    with SyncClient("http://localhost:8080") as client:
        job = client.get(job.id)

Both speak the Connect protocol over HTTP/1.1 (binary protobuf, or JSON with
`json=True`). Errors arrive as `connectrpc.errors.ConnectError` with the
server's code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.codec import proto_json_codec
from connectrpc.errors import ConnectError

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient, JobServiceClientSync
from ..model import NO_OPTIONS, EnqueueRequest, Job, JobOptions
from ..settings import DEFAULT_API_URL
from ..wire import enqueue_request, job_from_proto

DEFAULT_URL = DEFAULT_API_URL
T = TypeVar("T")


class Client:
    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 30.0, json: bool = False) -> None:
        # The timeout is applied here rather than through connectrpc's timeout_ms,
        # which wraps each call in asyncio.wait_for.
        self.timeout_s = timeout_s
        self._client = JobServiceClient(url.rstrip("/"), codec=proto_json_codec() if json else None)

    async def enqueue(
        self,
        job_type: str,
        payload: bytes = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
    ) -> Job:
        request = enqueue_request(job_type, payload, execution_time_ms, options)
        return _job((await self._within_timeout(self._client.enqueue_job(request))).job)

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        """EnqueueJobs: the jobs come back without their payloads."""
        reply = await self._within_timeout(self._client.enqueue_jobs(_batch(requests)))
        return [job_from_proto(job) for job in reply.jobs]

    async def get(self, job_id: str) -> Job:
        return _job((await self._within_timeout(self._client.get_job(pb.GetJobRequest(id=job_id)))).job)

    async def cancel(self, job_id: str) -> None:
        await self._within_timeout(self._client.cancel_job(pb.CancelJobRequest(id=job_id)))

    async def retry(self, job_id: str) -> Job:
        return _job((await self._within_timeout(self._client.retry_job(pb.RetryJobRequest(id=job_id)))).job)

    async def _within_timeout(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except TimeoutError:
            raise ConnectError(Code.DEADLINE_EXCEEDED, f"no answer within {self.timeout_s} s") from None

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class SyncClient:
    """The blocking twin of `Client`, for scripts and the CLI.

    Short-lived processes should prefer it: pyqwest's asyncio client can abort
    the interpreter at exit when a call finished just before (seen with
    connectrpc 0.13 / pyqwest 0.12, now and then); the blocking client
    does not.
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 30.0, json: bool = False) -> None:
        self._client = JobServiceClientSync(
            url.rstrip("/"), timeout_ms=int(timeout_s * 1000), codec=proto_json_codec() if json else None
        )

    def enqueue(
        self,
        job_type: str,
        payload: bytes = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
    ) -> Job:
        request = enqueue_request(job_type, payload, execution_time_ms, options)
        return _job(self._client.enqueue_job(request).job)

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        """EnqueueJobs: the jobs come back without their payloads."""
        return [job_from_proto(job) for job in self._client.enqueue_jobs(_batch(requests)).jobs]

    def get(self, job_id: str) -> Job:
        return _job(self._client.get_job(pb.GetJobRequest(id=job_id)).job)

    def cancel(self, job_id: str) -> None:
        self._client.cancel_job(pb.CancelJobRequest(id=job_id))

    def retry(self, job_id: str) -> Job:
        return _job(self._client.retry_job(pb.RetryJobRequest(id=job_id)).job)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _batch(requests: Sequence[EnqueueRequest]) -> pb.EnqueueJobsRequest:
    return pb.EnqueueJobsRequest(
        jobs=[enqueue_request(r.job_type, r.payload, r.execution_time_ms, r.options) for r in requests]
    )


def _job(job: pb.Job | None) -> Job:
    if job is None:
        raise ConnectError(Code.INTERNAL, "the server answered without a job")
    return job_from_proto(job)


__all__ = ["DEFAULT_URL", "Client", "SyncClient"]
