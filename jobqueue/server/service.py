"""The JobService handlers: decode, validate, call the store, encode."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobService
from ..store import JobStore
from ..wire import job_to_proto, options_from_request


class JobServiceHandler(JobService):
    """The handlers; the generated base class answers `unimplemented` for any RPC not defined here."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def enqueue_job(
        self, request: pb.EnqueueJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.EnqueueJobResponse:
        at = request.execution_time_ms if request.has_field("execution_time_ms") else None
        job = await self.store.enqueue(request.type, request.payload, at, options_from_request(request))
        return pb.EnqueueJobResponse(job=job_to_proto(job))

    async def get_job(self, request: pb.GetJobRequest, ctx: RequestContext[Any, Any]) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=job_to_proto(await self.store.get(request.id)))

    async def cancel_job(
        self, request: pb.CancelJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.CancelJobResponse:
        await self.store.cancel(request.id)
        return pb.CancelJobResponse()

    async def retry_job(
        self, request: pb.RetryJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.RetryJobResponse:
        return pb.RetryJobResponse(job=job_to_proto(await self.store.retry(request.id)))
