"""Client: the asyncio client of the JobService API.

Each call runs `SyncClient`'s on a thread of the client's own. pyqwest's
asyncio client completes a call from a thread of its Rust runtime, which calls
back into Python (the event loop's call_soon_threadsafe) and can still be
inside that call when the loop's thread finishes its program: the interpreter
then finalizes under it, and the process aborts (SIGABRT, exit 134). These
threads are Python's own: the interpreter joins them before it finalizes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import ParamSpec, TypeVar

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..auth.roles import Caller
from ..codecs import Codec, encode_payload, encode_requests
from ..model import MAX_WAIT_MS, NO_OPTIONS, EnqueueRequest, Job, JobOptions
from ..queues import StatsReport, WorkerInfo
from ..selection import ALL_UNFINISHED, BulkOutcome, JobFilter, JobPage, ListOrder
from ..settings import DEFAULT_API_URL
from ..wire import job_id_text
from .endpoint import no_answer
from .sync_client import SyncClient
from .waiting import WaitTimeout, deadline_of, next_wait_ms
from .watch import AsyncEventStream, watch_jobs_request

P = ParamSpec("P")
T = TypeVar("T")


class Client:
    """The asyncio client.

        async with Client("http://localhost:8080") as client:
            job = await client.enqueue("print", "hello")

    Same calls, arguments and errors as `SyncClient`. At most
    `max_concurrent_calls` calls are on their way at once; more wait their
    turn, within their `timeout_s`. A call whose caller is cancelled still
    completes in the background (an enqueue may so still create its job).
    `ca_file`, `cert_file` and `key_file`: as SyncClient's.
    """

    def __init__(
        self,
        url: str = DEFAULT_API_URL,
        *,
        timeout_s: float = 30.0,
        json: bool = False,
        max_concurrent_calls: int = 32,
        token: str | None = None,
        tracing: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        gzip: bool = False,
    ) -> None:
        """`tracing`: each call is a CLIENT span, child of the caller's current span,
        whose context goes to the server (`traceparent`); needs the `otel` extra.
        `gzip`: as SyncClient's."""
        self._calls = SyncClient(
            url,
            timeout_s=timeout_s,
            json=json,
            token=token,
            tracing=tracing,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            gzip=gzip,
        )
        self._tracing = tracing
        self.url = self._calls.url
        self.timeout_s = timeout_s
        self._threads = ThreadPoolExecutor(max_concurrent_calls, thread_name_prefix="jobqueue-client")
        self._closed = False

    async def enqueue(
        self,
        job_type: str,
        payload: object = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
        *,
        codec: Codec | str | None = None,
    ) -> Job:
        """A new PENDING job, due at `execution_time_ms` (Unix ms; None: now); the
        payload as SyncClient.enqueue takes it, encoded here by `codec`."""
        encoded = encode_payload(payload, codec)
        return await self._run(self._calls.enqueue, job_type, encoded, execution_time_ms, options)

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, codec: Codec | str | None = None
    ) -> list[Job]:
        """EnqueueJobs: the jobs come back in request order, without their payloads;
        each request's payload encoded here by `codec` (as `enqueue`'s)."""
        return await self._run(self._calls.enqueue_many, encode_requests(requests, codec))

    async def get(self, job_id: str) -> Job:
        return await self._run(self._calls.get, job_id)

    async def wait(self, job_id: str, timeout_s: float = 30.0) -> Job:
        """As SyncClient.wait: the job once final, with its `result`; `WaitTimeout`
        when `timeout_s` passes first."""
        deadline = deadline_of(timeout_s)
        while True:
            wait_ms = next_wait_ms(deadline)
            job, done = await self._run_within(
                wait_ms / 1000 + self.timeout_s, self._calls.wait_once, job_id, wait_ms
            )
            if done:
                return job
            if wait_ms < MAX_WAIT_MS:
                raise WaitTimeout(job, timeout_s)

    async def cancel(self, job_id: str) -> None:
        await self._run(self._calls.cancel, job_id)

    async def retry(self, job_id: str) -> Job:
        """Runs a FAILED or CANCELLED job again, from its first attempt."""
        return await self._run(self._calls.retry, job_id)

    async def stats(self, job_type: str = "") -> StatsReport:
        """GetQueueStats: the counts of `job_type`, or of every type when it is empty."""
        return await self._run(self._calls.stats, job_type)

    async def workers(self, job_type: str = "") -> list[WorkerInfo]:
        """ListWorkers: the live workers serving `job_type` (any type when it is empty), by id."""
        return await self._run(self._calls.workers, job_type)

    async def pause(self, job_type: str) -> None:
        """PauseQueue: no worker claims the type's jobs until `resume`; enqueue goes on."""
        await self._run(self._calls.pause, job_type)

    async def resume(self, job_type: str) -> None:
        await self._run(self._calls.resume, job_type)

    async def set_partitions(self, job_type: str, partitions: int) -> int:
        """SetQueuePartitions (see SyncClient.set_partitions)."""
        return await self._run(self._calls.set_partitions, job_type, partitions)

    async def list_jobs(
        self,
        job_filter: JobFilter = ALL_UNFINISHED,
        order: ListOrder = ListOrder.NEWEST_FIRST,
        page_size: int = 0,
        page_token: str = "",
        *,
        with_payloads: bool = False,
    ) -> JobPage:
        """A page of the jobs the filter selects (see SyncClient.list_jobs)."""
        return await self._run(
            self._calls.list_jobs, job_filter, order, page_size, page_token, with_payloads=with_payloads
        )

    async def retry_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """RetryJobs (see SyncClient.retry_jobs)."""
        return await self._run(self._calls.retry_jobs, job_filter, limit, page_token)

    async def cancel_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """CancelJobs (see SyncClient.cancel_jobs)."""
        return await self._run(self._calls.cancel_jobs, job_filter, limit, page_token)

    async def delete_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """DeleteJobs (see SyncClient.delete_jobs)."""
        return await self._run(self._calls.delete_jobs, job_filter, limit, page_token)

    async def who_am_i(self) -> Caller:
        """WhoAmI: the role this client's token grants and the methods it may call."""
        return await self._run(self._calls.who_am_i)

    async def watch_job(self, job_id: str, cursor: str = "", *, progress: bool = False) -> AsyncEventStream:
        """WatchJob (see SyncClient.watch_job): `async for event in await client.watch_job(id)`."""
        request = pb.WatchJobRequest(id=job_id_text(job_id), cursor=cursor, progress=progress)
        return await self._watch(request)

    async def watch_jobs(
        self, job_type: str = "", cursor: str = "", *, progress: bool = False, results: bool = False
    ) -> AsyncEventStream:
        """WatchJobs (see SyncClient.watch_jobs); `aclose()` (or `async with`) ends it."""
        return await self._watch(watch_jobs_request(job_type, cursor, progress, results))

    async def _watch(self, request: pb.WatchJobRequest | pb.WatchJobsRequest) -> AsyncEventStream:
        if self._closed:
            raise RuntimeError("the client is closed")
        return await AsyncEventStream.start(self._calls._open_watch(request))

    async def _run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run_within(self.timeout_s, call, *args, **kwargs)

    async def _run_within(self, limit_s: float, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise RuntimeError("the client is closed")
        loop = asyncio.get_running_loop()
        try:
            # The call has its own timeout; this one also bounds the wait for a thread.
            async with asyncio.timeout(limit_s):
                work = functools.partial(call, *args, **kwargs)
                if self._tracing:  # the caller's span, current in the thread too
                    work = functools.partial(contextvars.copy_context().run, work)
                return await loop.run_in_executor(self._threads, work)
        except TimeoutError:
            raise no_answer(self.url, limit_s) from None

    async def close(self) -> None:
        """Waits for the calls on their way, then closes the connections."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._threads.shutdown)
        self._calls.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
