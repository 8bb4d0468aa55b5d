"""An in-memory stand-in for the queue, for unit tests without Redis or network.

    queue = InlineQueue(Worker("email", send_email, max_attempts=3))
    job = await queue.enqueue("email", b"to=a@example.com")   # runs send_email now
    assert job.status is JobStatus.COMPLETED

It has `Client`'s enqueue/get surface (enqueue, enqueue_many, get, cancel,
retry), so code that takes a client can be given one (`queue.sync()`: one
with SyncClient's). What differs from the real queue is listed in
docs/testing.md ("What the inline queue does not do").
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from connectrpc.errors import ConnectError

from ..codecs import Codec, encode_payload, encode_requests
from ..errors import InvalidInput, JobAlreadyFinished, JobNotFound, JobNotRetryable, PayloadTooLarge
from ..model import (
    DEFAULT_PRIORITY,
    NO_OPTIONS,
    Enqueued,
    EnqueueRequest,
    Job,
    JobOptions,
    JobStatus,
    UniqueMode,
    check_execution_time,
    check_expiry,
    check_job_id,
    check_job_type,
    new_job_id,
    partition_of_type,
    payload_bytes,
)
from ..outage import Outage
from ..settings import Settings
from ..store.codec import option_fields
from ..worker import Worker
from ..worker.results import result_bytes

P = ParamSpec("P")
T = TypeVar("T")

WORKER_ID = "inline"
EXPIRED_ERROR = "expired before start"  # lua/include/expire.lua's
# The most runs one `run_pending` makes: handlers that enqueue forever end there.
MAX_RUNS = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class InlineRun:
    """One run of a handler: the job as the handler got it (RUNNING, its attempt),
    the error kept if it failed ('' if it completed), the delay a worker would
    wait before the next attempt (None: no attempt follows), and what the
    handler returned."""

    job: Job
    error: str = ""
    retry_in_s: float | None = None
    returned: object = None


class InlineQueue:
    """Jobs in a dict; each type's handler is a `Worker`'s, with its max_attempts,
    backoff and timeout_s (a Worker that is built is not started: no Redis needed).

    `eager=True`: `enqueue` runs the job at once, attempts after failures
    included (their delays are not waited for), and returns it final. `eager=False`:
    jobs stay PENDING until `await run_pending()`. Jobs of a type without a
    handler stay PENDING either way: `enqueued(type)` shows them. Refusals are
    the `ConnectError`s the server sends (invalid_argument, not_found...).
    """

    def __init__(self, *workers: Worker, eager: bool = True, settings: Settings | None = None) -> None:
        """`settings`: only its max_payload_bytes and max_result_bytes apply."""
        self.eager = eager
        self.max_payload_bytes = (settings or Settings()).max_payload_bytes
        self.max_result_bytes = (settings or Settings()).max_result_bytes
        self.runs: list[InlineRun] = []  # every run, in order
        self._workers: dict[str, Worker] = {}
        self._jobs: dict[str, Job] = {}  # in enqueue order
        self._keys: dict[tuple[str, str], str] = {}  # (type, idempotency key) -> job id
        self._unique: dict[tuple[str, str], str] = {}  # (type, unique key) -> the job that took it last
        for worker in workers:
            self.register(worker)

    def register(self, worker: Worker) -> None:
        """Runs `worker.handler` for the jobs of `worker.job_type` (one handler a type)."""
        if worker.job_type in self._workers:
            raise ValueError(f"a handler for {worker.job_type!r} is registered already")
        self._workers[worker.job_type] = worker

    # -- Client's surface ------------------------------------------------------

    async def enqueue(
        self,
        job_type: str,
        payload: object = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
        *,
        codec: Codec | str | None = None,
    ) -> Job:
        """A new PENDING job (or the one its idempotency or unique key names: its
        `enqueued` says which); with `eager` and a handler for its type, run to its
        final state first. The payload as Client.enqueue takes it, encoded by `codec`."""
        request = EnqueueRequest(job_type, encode_payload(payload, codec), execution_time_ms, options)
        job, enqueued = self._add(self._checked(request))
        if self.eager:
            await self._run_to_end(job)
        snapshot = self._snapshot(job)
        snapshot.enqueued = enqueued
        return snapshot

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, codec: Codec | str | None = None
    ) -> list[Job]:
        """Checks every request first (one bad request stores none), then enqueues each;
        payloads encoded by `codec` as Client.enqueue_many's."""
        encoded = encode_requests(requests, codec)
        checked = [self._checked(request, i) for i, request in enumerate(encoded)]
        jobs = [self._add(request)[0] for request in checked]
        if self.eager:  # as workers would take them: higher priorities first
            for job in sorted(jobs, key=_run_order):
                await self._run_to_end(job)
        return [self._snapshot(job) for job in jobs]

    async def get(self, job_id: str) -> Job:
        return self._snapshot(self._find(job_id))

    async def cancel(self, job_id: str) -> None:
        """A PENDING job is CANCELLED; a RUNNING one too, but its handler is not
        interrupted: its outcome is dropped."""
        job = self._find(job_id)
        if job.status.is_final:
            raise _refusal(JobAlreadyFinished(job.id, job.status.name))
        self._finish(job, JobStatus.CANCELLED)

    async def retry(self, job_id: str) -> Job:
        """Runs a FAILED, CANCELLED or EXPIRED job again from its first attempt, without
        its expiry (at once with `eager`)."""
        job = self._find(job_id)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED):
            raise _refusal(JobNotRetryable(job.id, job.status.name))
        job.status, job.attempt, job.finished_at, job.expires_at_ms = JobStatus.PENDING, 0, 0, 0
        job.execution_time_ms = job.updated_at = _now_ms()
        if self.eager:
            await self._run_to_end(job)
        return self._snapshot(job)

    def sync(self) -> InlineSyncClient:
        """SyncClient's enqueue/get surface on this queue, for code that blocks."""
        return InlineSyncClient(self)

    # -- for the test's assertions ---------------------------------------------

    def enqueued(self, job_type: str | None = None) -> list[Job]:
        """The jobs enqueued (of `job_type`, or all), oldest first, as they are now."""
        return [self._snapshot(j) for j in self._jobs.values() if job_type in (None, j.type)]

    async def run_pending(self, max_runs: int = MAX_RUNS) -> list[InlineRun]:
        """Runs PENDING jobs that have a handler, one attempt each, higher priority
        first, then earliest execution time (times are not waited for), then
        enqueue order, until none is left:
        retries and the jobs handlers enqueue included. A job not started by its
        expiry (by the clock, when its turn comes) ends EXPIRED instead, unrun.
        Returns the runs made.
        Raises RuntimeError if jobs are still pending after `max_runs` runs."""
        first = len(self.runs)
        for _ in range(max_runs):
            due = [j for j in self._jobs.values() if j.status is JobStatus.PENDING and self._handles(j)]
            if not due:
                return self.runs[first:]
            await self._run_once(min(due, key=_run_order))
        raise RuntimeError(f"jobs still pending after {max_runs} runs (do handlers enqueue without end?)")

    # -- the runs ---------------------------------------------------------------

    async def _run_to_end(self, job: Job) -> None:
        while job.status is JobStatus.PENDING and self._handles(job):
            await self._run_once(job)

    async def _run_once(self, job: Job) -> None:
        if job.expires_at_ms and job.attempt == 0 and _now_ms() >= job.expires_at_ms:
            job.last_error = EXPIRED_ERROR  # as a claim past the expiry does
            self._finish(job, JobStatus.EXPIRED)
            return
        worker = self._workers[job.type]
        job.status, job.attempt, job.worker_id = JobStatus.RUNNING, job.attempt + 1, WORKER_ID
        job.max_attempts = job.max_attempts or worker.max_attempts
        job.lease_token += 1
        job.started_at = job.updated_at = _now_ms()
        job.progress, job.progress_message, job.progress_at = 0.0, "", 0  # a run shows its own
        given = self._snapshot(job)
        token = job.lease_token
        given._progress_sink = functools.partial(_record_progress, job, token)
        timeout_s = job.timeout_ms / 1000 if job.timeout_ms else worker.timeout_s
        deadline = asyncio.timeout(timeout_s) if timeout_s is not None else None
        try:
            returned = await _call(worker, given, deadline)
            result = result_bytes(returned, self.max_result_bytes, worker.codec)  # as a worker stores it
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the job's outcome
            # The worker's own rules: the error text, and the delay (None: no retry).
            failure = worker._failure(job, exc, deadline, timeout_s)
            delay_ms = failure.delay_ms if job.attempt < job.max_attempts else None
            self.runs.append(InlineRun(given, failure.error, None if delay_ms is None else delay_ms / 1000))
            if not _current(job, token):
                return
            job.last_error, job.last_error_attempt = failure.error, job.attempt
            if delay_ms is None:
                self._finish(job, JobStatus.FAILED)
            else:
                job.status, job.worker_id = JobStatus.PENDING, ""
                job.updated_at = _now_ms()
                job.execution_time_ms = job.updated_at + delay_ms
        else:
            self.runs.append(InlineRun(given, returned=returned))
            if _current(job, token):
                job.result = result
                self._finish(job, JobStatus.COMPLETED)

    # -- the jobs ----------------------------------------------------------------

    def _checked(self, request: EnqueueRequest, index: int | None = None) -> EnqueueRequest:
        """The request with its payload as bytes (a TypeError if it is neither bytes
        nor str, as Client's); refused as the server refuses it if it breaks a rule.
        `index`: its place in an enqueue_many."""
        if index is not None:
            payload = payload_bytes(request.payload, f"requests[{index}].payload")
            request = dataclasses.replace(request, payload=payload)
        try:
            check_job_type(request.job_type)
            if len(request.payload) > self.max_payload_bytes:
                raise PayloadTooLarge(len(request.payload), self.max_payload_bytes)
            if request.execution_time_ms:
                check_execution_time(request.execution_time_ms)
            option_fields(request.options)  # checks them
            _check_expiry(request)
        except InvalidInput as exc:
            if index is not None:  # as the server names it
                exc.args = (f"jobs[{index}].{exc.args[0]}",)
            raise _refusal(exc) from None
        return request

    def _add(self, request: EnqueueRequest) -> tuple[Job, Enqueued]:
        options = request.options
        key = (request.job_type, options.idempotency_key)
        if options.idempotency_key and key in self._keys:
            return self._jobs[self._keys[key]], Enqueued.EXISTING
        now = _now_ms()
        unique = (request.job_type, options.unique_key)
        holder = self._jobs.get(self._unique.get(unique, "")) if options.unique_key else None
        # As enqueue.lua: a key is free once its job is final (or ran, for a debounce).
        if (
            holder is not None
            and options.unique_mode == UniqueMode.WHILE_ACTIVE
            and not holder.status.is_final
        ):
            return holder, Enqueued.EXISTING
        if (
            holder is not None
            and options.unique_mode == UniqueMode.DEBOUNCE
            and holder.status is JobStatus.PENDING
        ):
            holder.payload = bytes(request.payload)
            holder.execution_time_ms = request.execution_time_ms or now + options.debounce_ms
            holder.updated_at = now
            return holder, Enqueued.DEBOUNCED
        job = Job(
            id=new_job_id(partition_of_type(request.job_type)),
            type=request.job_type,
            payload=bytes(request.payload),
            status=JobStatus.PENDING,
            execution_time_ms=request.execution_time_ms or now + options.debounce_ms,
            created_at=now,
            updated_at=now,
            max_attempts=options.max_attempts or 0,
            timeout_ms=options.timeout_ms or 0,
            idempotency_key=options.idempotency_key,
            backoff=options.backoff,
            expires_at_ms=options.expiry_from(now),
            priority=options.priority or DEFAULT_PRIORITY,
            unique_key=options.unique_key,
            unique_mode=UniqueMode(options.unique_mode),
        )
        self._jobs[job.id] = job
        if options.idempotency_key:
            self._keys[key] = job.id
        if options.unique_key:
            self._unique[unique] = job.id
        return job, Enqueued.CREATED

    def _handles(self, job: Job) -> bool:
        return job.type in self._workers

    def _find(self, job_id: str) -> Job:
        try:
            canonical = check_job_id(job_id)
        except InvalidInput as exc:
            raise _refusal(exc) from None
        job = self._jobs.get(canonical)
        if job is None:
            raise _refusal(JobNotFound(canonical))
        return job

    def _finish(self, job: Job, status: JobStatus) -> None:
        job.status, job.worker_id = status, ""
        job.finished_at = job.updated_at = _now_ms()

    @staticmethod
    def _snapshot(job: Job) -> Job:
        return dataclasses.replace(job)


def _check_expiry(request: EnqueueRequest) -> None:
    """The server's checks of an expiry, against this process' clock."""
    options = request.options
    if options.expires_at_ms is None and options.expires_in_ms is None:
        return
    check_expiry(options, request.execution_time_ms)
    now = _now_ms()
    at = request.execution_time_ms or now
    if options.expires_at_ms is not None and options.expires_at_ms <= max(now, at):
        raise InvalidInput("expires_at_ms", f"{options.expires_at_ms} is not after now ({now}) and {at}")
    if options.expires_in_ms is not None and now + options.expires_in_ms <= at:
        raise InvalidInput("expires_in_ms", f"{options.expires_in_ms} ms after now is not after {at}")


class InlineSyncClient:
    """An InlineQueue as a `SyncClient`: each call runs the queue's in an event loop
    of its own (asyncio.run), handlers included. So it cannot be called from a
    coroutine (RuntimeError), and a handler cannot keep loop-bound objects (an
    asyncio client...) from one call to the next."""

    def __init__(self, queue: InlineQueue) -> None:
        self.queue = queue

    def enqueue(
        self,
        job_type: str,
        payload: object = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
        *,
        codec: Codec | str | None = None,
    ) -> Job:
        return _blocking(self.queue.enqueue, job_type, payload, execution_time_ms, options, codec=codec)

    def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, codec: Codec | str | None = None
    ) -> list[Job]:
        return _blocking(self.queue.enqueue_many, requests, codec=codec)

    def get(self, job_id: str) -> Job:
        return _blocking(self.queue.get, job_id)

    def cancel(self, job_id: str) -> None:
        _blocking(self.queue.cancel, job_id)

    def retry(self, job_id: str) -> Job:
        return _blocking(self.queue.retry, job_id)


def _blocking(call: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs `call` in an event loop of its own; refused (before the coroutine is
    made, so none is left unawaited) where a loop runs already."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call(*args, **kwargs))
    raise RuntimeError(
        "InlineSyncClient called from a coroutine (an event loop is running): "
        "await the InlineQueue's own calls there"
    )


async def _call(worker: Worker, job: Job, deadline: asyncio.Timeout | None) -> object:
    """Runs the handler within the job's timeout. A plain function runs right here,
    in the loop's thread (its timeout cannot cut it short)."""
    outcome: object = worker.handler(job)
    if not inspect.isawaitable(outcome):
        return outcome
    if deadline is None:
        return await outcome
    async with deadline:
        return await outcome


def _record_progress(job: Job, token: int, given: Job, fraction: float, message: str) -> None:
    """set_progress of a run: recorded on the queue's job at once (no rate limit) while
    the run is current, as a worker writes it only while it holds the lease."""
    if _current(job, token):
        job.progress, job.progress_message, job.progress_at = fraction, message, _now_ms()


def _current(job: Job, token: int) -> bool:
    """Whether a run's outcome still counts: the job was not cancelled (or retried) meanwhile."""
    return job.status is JobStatus.RUNNING and job.lease_token == token


def _refusal(exc: Exception) -> ConnectError:
    """The ConnectError the server sends for a domain error."""
    # Imported here: the server's package is big, and only refusals need its table.
    from ..server.errors import to_connect_error  # noqa: PLC0415

    return to_connect_error(exc, "inline", Outage(WORKER_ID))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _run_order(job: Job) -> tuple[int, int]:
    """Which of the pending jobs runs first (min): the higher priority, then the earlier
    time; ties keep enqueue order (min and sorted keep the first)."""
    return -job.priority, job.execution_time_ms
