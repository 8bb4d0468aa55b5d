"""The JobService handlers: decode, validate, call the producer, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from connectrpc.request import RequestContext

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobService
from ..errors import InvalidInput
from ..model import Enqueued
from ..producer import Producer
from ..selection import BulkOutcome, JobFilter
from ..wire import (
    enqueue_request_from_proto,
    job_filter_from_proto,
    job_to_proto,
    list_order_from_proto,
    stats_to_proto,
    worker_to_proto,
)
from .auth import Guard
from .streams import Streams
from .wait import wait_job
from .watch import Hubs, watch_job, watch_jobs

MAX_BATCH = 10_000


class JobServiceHandler(JobService):
    """The handlers; the generated base class answers `unimplemented` for any RPC not defined here."""

    def __init__(
        self, producer: Producer, guard: Guard | None = None, streams: Streams | None = None
    ) -> None:
        self.producer = producer
        self.guard = guard or Guard(None)
        self.hubs = Hubs(producer.store)
        self.streams = streams or Streams()  # its shutdown ends waits (WaitJob)

    async def enqueue_job(
        self, request: pb.EnqueueJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.EnqueueJobResponse:
        r = enqueue_request_from_proto(request)
        job = await self.producer.enqueue(r.job_type, r.payload, r.execution_time_ms, r.options)
        return pb.EnqueueJobResponse(
            job=job_to_proto(job),
            existing=job.enqueued is Enqueued.EXISTING,
            debounced=job.enqueued is Enqueued.DEBOUNCED,
        )

    async def enqueue_jobs(
        self, request: pb.EnqueueJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.EnqueueJobsResponse:
        if len(request.jobs) > MAX_BATCH:
            raise InvalidInput("jobs", f"{len(request.jobs)} jobs in one call; at most {MAX_BATCH}")
        jobs = await self.producer.enqueue_many([enqueue_request_from_proto(r) for r in request.jobs])
        return pb.EnqueueJobsResponse(jobs=[job_to_proto(job, with_payload=False) for job in jobs])

    async def get_job(self, request: pb.GetJobRequest, ctx: RequestContext[Any, Any]) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=job_to_proto(await self.producer.get(request.id)))

    async def wait_job(self, request: pb.WaitJobRequest, ctx: RequestContext[Any, Any]) -> pb.WaitJobResponse:
        return await wait_job(self.hubs, self.producer, request, self.streams.closing)

    async def cancel_job(
        self, request: pb.CancelJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.CancelJobResponse:
        await self.producer.cancel(request.id)
        return pb.CancelJobResponse()

    async def retry_job(
        self, request: pb.RetryJobRequest, ctx: RequestContext[Any, Any]
    ) -> pb.RetryJobResponse:
        return pb.RetryJobResponse(job=job_to_proto(await self.producer.retry(request.id)))

    # -- queues: their counts, workers and pause (the store's reads and controls) --

    async def get_queue_stats(
        self, request: pb.GetQueueStatsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.GetQueueStatsResponse:
        return stats_to_proto(await self.producer.store.stats.read(request.type))

    async def list_workers(
        self, request: pb.ListWorkersRequest, ctx: RequestContext[Any, Any]
    ) -> pb.ListWorkersResponse:
        workers = await self.producer.store.registry.live(request.type)
        return pb.ListWorkersResponse(workers=[worker_to_proto(worker) for worker in workers])

    async def pause_queue(
        self, request: pb.PauseQueueRequest, ctx: RequestContext[Any, Any]
    ) -> pb.PauseQueueResponse:
        await self.producer.store.controls.pause(request.type)
        return pb.PauseQueueResponse()

    async def resume_queue(
        self, request: pb.ResumeQueueRequest, ctx: RequestContext[Any, Any]
    ) -> pb.ResumeQueueResponse:
        await self.producer.store.controls.resume(request.type)
        return pb.ResumeQueueResponse()

    async def set_queue_partitions(
        self, request: pb.SetQueuePartitionsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.SetQueuePartitionsResponse:
        covered = await self.producer.store.partitions.set(request.type, request.partitions)
        return pb.SetQueuePartitionsResponse(covered=covered)

    async def list_jobs(
        self, request: pb.ListJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.ListJobsResponse:
        page = await self.producer.list_jobs(
            job_filter_from_proto(request.filter),
            list_order_from_proto(request.order),
            request.page_size,
            request.page_token,
            with_payloads=request.with_payloads,
        )
        return pb.ListJobsResponse(
            jobs=[job_to_proto(job, with_payload=request.with_payloads) for job in page.jobs],
            next_page_token=page.next_page_token,
        )

    async def retry_jobs(
        self, request: pb.RetryJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.RetryJobsResponse:
        return pb.RetryJobsResponse(**await _bulk(self.producer.retry_jobs, request))

    async def cancel_jobs(
        self, request: pb.CancelJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.CancelJobsResponse:
        return pb.CancelJobsResponse(**await _bulk(self.producer.cancel_jobs, request))

    async def delete_jobs(
        self, request: pb.DeleteJobsRequest, ctx: RequestContext[Any, Any]
    ) -> pb.DeleteJobsResponse:
        return pb.DeleteJobsResponse(**await _bulk(self.producer.delete_jobs, request))

    async def who_am_i(self, request: pb.WhoAmIRequest, ctx: RequestContext[Any, Any]) -> pb.WhoAmIResponse:
        auth_enabled, role, methods = self.guard.who_am_i(ctx)
        return pb.WhoAmIResponse(auth_enabled=auth_enabled, role=role, methods=list(methods))

    def watch_job(
        self, request: pb.WatchJobRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.WatchJobResponse]:
        return watch_job(self.hubs, request)

    def watch_jobs(
        self, request: pb.WatchJobsRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.WatchJobsResponse]:
        return watch_jobs(self.hubs, request)


async def _bulk(
    call: Callable[[JobFilter, int, str], Awaitable[BulkOutcome]],
    request: pb.RetryJobsRequest | pb.CancelJobsRequest | pb.DeleteJobsRequest,
) -> dict[str, Any]:
    """A bulk call's reply fields (the three replies have the same ones)."""
    done = await call(job_filter_from_proto(request.filter), request.limit, request.page_token)
    return {"count": done.count, "next_page_token": done.next_page_token}
