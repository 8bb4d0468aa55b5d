"""SyncClient: the blocking client of the JobService API, on pyqwest's blocking transport.

The calling thread waits for each call's result itself: no thread of pyqwest's
calls into Python, so none can be inside Python when the interpreter finalizes
(see async_client.py for the transport that did).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from connectrpc.code import Code
from connectrpc.codec import proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.interceptor import InterceptorSync
from pyqwest import SyncClient as HTTPClient
from pyqwest import SyncHTTPTransport

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClientSync
from ..auth.roles import Caller
from ..codecs import Codec, encode_payload, encode_requests
from ..model import MAX_WAIT_MS, NO_OPTIONS, EnqueueRequest, Job, JobOptions
from ..queues import StatsReport, WorkerInfo
from ..selection import ALL_UNFINISHED, BulkOutcome, JobFilter, JobPage, ListOrder
from ..settings import DEFAULT_API_URL
from ..wire import (
    bulk_request,
    enqueue_jobs_request,
    enqueue_request,
    enqueued_of,
    job_from_proto,
    job_id_text,
    list_jobs_request,
    stats_from_proto,
    type_text,
    worker_from_proto,
)
from .bearer import BearerToken
from .endpoint import ServerUnreachable, check_url, no_answer, tls_options
from .waiting import WaitTimeout, deadline_of, next_wait_ms
from .watch import ClosableResponse, EventStream, watch_jobs_request

REQ = TypeVar("REQ")
RES = TypeVar("RES")


class SyncClient:
    """The blocking client, for scripts and the CLI.

        with SyncClient("http://localhost:8080") as client:
            job = client.enqueue("print", "hello")

    Payloads are bytes, or str (sent as UTF-8). An argument that cannot be
    sent raises TypeError or ValueError before any call; the server's refusals
    and network failures raise `connectrpc.errors.ConnectError` with their
    code (`ServerUnreachable` when no connection could be made). Each client
    has connections of its own, released by `close()` (or the `with` block).
    """

    def __init__(
        self,
        url: str = DEFAULT_API_URL,
        *,
        timeout_s: float = 30.0,
        json: bool = False,
        token: str | None = None,
        tracing: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        gzip: bool = False,
    ) -> None:
        """`token`: the bearer token sent with every call, for a server with auth on
        (docs/security.md); None sends none. `tracing`: each call is a CLIENT span,
        child of the caller's current span, whose context goes to the server
        (`traceparent`); needs the `otel` extra. `ca_file`: for an https:// URL, a PEM
        file of the CAs to trust instead of the system's (a private CA's certificate,
        say). `cert_file` and `key_file`: PEM files of the client's certificate and
        key, for a server that requires one (mutual TLS, `--tls-client-ca`). `gzip`:
        compress requests and ask for compressed answers (worth it over a slow link;
        on loopback or a LAN it costs both sides more CPU time than it saves)."""
        self.url = check_url(url)
        self.timeout_s = timeout_s
        self._json = json
        bearer = (BearerToken(token),) if token is not None else ()
        self._interceptors = (*_tracing_interceptors(tracing), *bearer)
        self._compression = _compression(gzip)
        # A transport of its own rather than pyqwest's shared one: close() then
        # really closes its connections.
        self._transport = SyncHTTPTransport(**tls_options(self.url, ca_file, cert_file, key_file))
        self._client = JobServiceClientSync(
            self.url,
            timeout_ms=int(timeout_s * 1000),
            codec=proto_json_codec() if json else None,
            http_client=HTTPClient(self._transport),
            interceptors=self._interceptors,
            **self._compression,
        )
        self._closed = False

    def enqueue(
        self,
        job_type: str,
        payload: object = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
        *,
        codec: Codec | str | None = None,
    ) -> Job:
        """A new PENDING job, due at `execution_time_ms` (Unix ms; None: now).

        The payload is bytes, or str (sent as UTF-8); with a `codec` ('json',
        'msgpack' or a jobqueue.codecs.Codec), any object it encodes: a dict, a
        list, a dataclass, a pydantic model... (docs/payloads.md). With an idempotency
        or unique key, the job's `enqueued` says whether it is new, one enqueued
        before, or a pending one debounced."""
        request = enqueue_request(job_type, encode_payload(payload, codec), execution_time_ms, options)
        reply = self._call(self._client.enqueue_job, request)
        job = _job(reply.job)
        job.enqueued = enqueued_of(reply)
        return job

    def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, codec: Codec | str | None = None
    ) -> list[Job]:
        """EnqueueJobs: the jobs come back in request order, without their payloads;
        each request's payload encoded by `codec` if given (as `enqueue`'s)."""
        request = enqueue_jobs_request(encode_requests(requests, codec))
        reply = self._call(self._client.enqueue_jobs, request)
        return [job_from_proto(job) for job in reply.jobs]

    def get(self, job_id: str) -> Job:
        return _job(self._call(self._client.get_job, pb.GetJobRequest(id=job_id_text(job_id))).job)

    def wait(self, job_id: str, timeout_s: float = 30.0) -> Job:
        """The job once it reaches a final state (COMPLETED, FAILED or CANCELLED), with
        its `result`: WaitJob, which answers when the job's final event arrives (one
        call per minute of the wait). Raises `WaitTimeout` (a TimeoutError, whose `job`
        is the job's state then) when `timeout_s` passes first."""
        deadline = deadline_of(timeout_s)
        while True:
            wait_ms = next_wait_ms(deadline)
            job, done = self.wait_once(job_id, wait_ms)
            if done:
                return job
            if wait_ms < MAX_WAIT_MS:
                raise WaitTimeout(job, timeout_s)

    def wait_once(self, job_id: str, wait_ms: int) -> tuple[Job, bool]:
        """One WaitJob call: (the job, whether it is final) within `wait_ms` (at most
        MAX_WAIT_MS); the call's own timeout is the client's beyond it."""
        request = pb.WaitJobRequest(id=job_id_text(job_id), timeout_ms=wait_ms)
        reply = self._call(self._client.wait_job, request, timeout_ms=wait_ms + int(self.timeout_s * 1000))
        return _job(reply.job), reply.done

    def cancel(self, job_id: str) -> None:
        self._call(self._client.cancel_job, pb.CancelJobRequest(id=job_id_text(job_id)))

    def retry(self, job_id: str) -> Job:
        """Runs a FAILED or CANCELLED job again, from its first attempt."""
        return _job(self._call(self._client.retry_job, pb.RetryJobRequest(id=job_id_text(job_id))).job)

    def stats(self, job_type: str = "") -> StatsReport:
        """GetQueueStats: the counts of `job_type`, or of every type when it is empty."""
        reply = self._call(self._client.get_queue_stats, pb.GetQueueStatsRequest(type=type_text(job_type)))
        return stats_from_proto(reply)

    def workers(self, job_type: str = "") -> list[WorkerInfo]:
        """ListWorkers: the live workers serving `job_type` (any type when it is empty), by id."""
        reply = self._call(self._client.list_workers, pb.ListWorkersRequest(type=type_text(job_type)))
        return [worker_from_proto(worker) for worker in reply.workers]

    def pause(self, job_type: str) -> None:
        """PauseQueue: no worker claims the type's jobs until `resume`; enqueue goes on."""
        self._call(self._client.pause_queue, pb.PauseQueueRequest(type=type_text(job_type)))

    def resume(self, job_type: str) -> None:
        self._call(self._client.resume_queue, pb.ResumeQueueRequest(type=type_text(job_type)))

    def set_partitions(self, job_type: str, partitions: int) -> int:
        """SetQueuePartitions: the type's enqueues go to `partitions` partitions; returns
        how many its workers cover (the most it ever had)."""
        request = pb.SetQueuePartitionsRequest(type=type_text(job_type), partitions=partitions)
        return self._call(self._client.set_queue_partitions, request).covered

    def list_jobs(
        self,
        job_filter: JobFilter = ALL_UNFINISHED,
        order: ListOrder = ListOrder.NEWEST_FIRST,
        page_size: int = 0,
        page_token: str = "",
        *,
        with_payloads: bool = False,
    ) -> JobPage:
        """A page of the jobs the filter selects (default: the unfinished ones, newest first,
        100 a page); pass its next_page_token, with the same filter and order, for the next."""
        request = list_jobs_request(job_filter, order, page_size, page_token, with_payloads)
        reply = self._call(self._client.list_jobs, request)
        return JobPage([job_from_proto(job) for job in reply.jobs], reply.next_page_token)

    def retry_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """RetryJobs: redrives the FAILED or CANCELLED jobs selected, oldest first, at most
        `limit` (0: 1,000) a call; call again with the token until it is empty."""
        reply = self._call(
            self._client.retry_jobs, bulk_request(pb.RetryJobsRequest, job_filter, limit, page_token)
        )
        return BulkOutcome(reply.count, reply.next_page_token)

    def cancel_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """CancelJobs: cancels the unfinished jobs selected, as retry_jobs goes."""
        reply = self._call(
            self._client.cancel_jobs, bulk_request(pb.CancelJobsRequest, job_filter, limit, page_token)
        )
        return BulkOutcome(reply.count, reply.next_page_token)

    def delete_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """DeleteJobs: deletes the finished jobs selected, as retry_jobs goes."""
        reply = self._call(
            self._client.delete_jobs, bulk_request(pb.DeleteJobsRequest, job_filter, limit, page_token)
        )
        return BulkOutcome(reply.count, reply.next_page_token)

    def who_am_i(self) -> Caller:
        """WhoAmI: the role this client's token grants and the methods it may call."""
        reply = self._call(self._client.who_am_i, pb.WhoAmIRequest())
        return Caller(reply.auth_enabled, reply.role, tuple(reply.methods))

    def watch_job(self, job_id: str, cursor: str = "", *, progress: bool = False) -> EventStream:
        """WatchJob: the job's current state (or, with `cursor`, what followed it), then
        each change, until it reaches a final state (a COMPLETED one with its
        `result`). Iterate it; `close()` ends it. With `progress`, the handler's
        progress reports too (events whose `progress` is set). It returns once the
        server has answered (a refusal raises here), within the client's `timeout_s`
        unless it resumes from a cursor."""
        request = pb.WatchJobRequest(id=job_id_text(job_id), cursor=cursor, progress=progress)
        # Its first message comes at once (the job's state), but not when it resumes
        # from a cursor: then it is the job's next change, whenever that comes.
        return self._open_watch(request).start(None if cursor else self.timeout_s)

    def watch_jobs(
        self, job_type: str = "", cursor: str = "", *, progress: bool = False, results: bool = False
    ) -> EventStream:
        """WatchJobs: every change of the type's jobs (every type's if empty) from now on
        (or after `cursor`): what happens once it has returned, until `close()`; with
        `progress`, their progress reports too; with `results`, each COMPLETED event
        carries its job's result (`event.result`). It returns once the server has
        answered (its first message, the position it starts from, comes at once),
        within the client's `timeout_s`."""
        request = watch_jobs_request(job_type, cursor, progress, results)
        return self._open_watch(request).start(self.timeout_s)

    def _open_watch(self, request: pb.WatchJobRequest | pb.WatchJobsRequest) -> EventStream:
        """A watch with no deadline, not started; its abort() works from any thread."""
        if self._closed:
            raise RuntimeError("the client is closed")
        http = ClosableResponse(HTTPClient(self._transport))
        client = JobServiceClientSync(
            self.url,
            codec=proto_json_codec() if self._json else None,
            http_client=cast(HTTPClient, http),
            interceptors=self._interceptors,
            **self._compression,
        )
        if isinstance(request, pb.WatchJobRequest):
            responses: Iterator[Any] = client.watch_job(request)
        else:
            responses = client.watch_jobs(request)
        return EventStream(responses, self._translated, on_close=http.close)

    def _call(self, method: Callable[..., RES], request: REQ, **options: Any) -> RES:
        if self._closed:
            raise RuntimeError("the client is closed")
        try:
            return method(request, **options)
        except ConnectError as error:
            raise self._translated(error) from error.__cause__

    def _translated(self, error: ConnectError) -> ConnectError:
        """A network failure as the client's own error; the server's refusals as they are."""
        if isinstance(error.__cause__, ConnectionError):
            return ServerUnreachable(self.url, error.__cause__)
        if isinstance(error.__cause__, TimeoutError):  # ours, not a deadline the server reports
            return no_answer(self.url, self.timeout_s)
        return error

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _job(job: pb.Job | None) -> Job:
    if job is None:
        raise ConnectError(Code.INTERNAL, "the server answered without a job")
    return job_from_proto(job)


def _compression(gzip: bool) -> dict[str, Any]:
    """connectrpc's compression arguments: its default (gzip both ways), or none."""
    if gzip:
        return {}
    return {"accept_compression": (), "send_compression": None}


def _tracing_interceptors(tracing: bool) -> list[InterceptorSync]:
    if not tracing:
        return []
    from ..tracing import client_interceptor  # noqa: PLC0415 - only with tracing on

    return [client_interceptor()]
