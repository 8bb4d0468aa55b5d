"""Producer: enqueue and manage jobs straight in Redis, from Python.

    async with Producer.connect() as producer:      # Settings.from_env(): same Redis and prefix
        job = await producer.enqueue("send_email", '{"to": "a@example.com"}')
        job = await producer.get(job.id)

What the API server offers, without a server in between (the server itself
answers its RPCs with one): enqueue, enqueue_many, get, cancel and retry; the
lists (list_jobs) and the bulk calls (retry_jobs, cancel_jobs, delete_jobs).
Programs that cannot reach Redis use the API's `Client` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import TracebackType

from .codecs import Codec, encode_payload, encode_requests
from .events import Notify
from .model import NO_OPTIONS, EnqueueRequest, Job, JobOptions, JobStatus, payload_bytes
from .selection import (
    DEFAULT_PAGE_SIZE,
    MAX_EXAMINED,
    BulkOutcome,
    JobFilter,
    JobPage,
    ListOrder,
    check_count,
    check_filter,
    check_order,
)
from .settings import Settings
from .store import Store
from .store.enqueuer import Enqueuer
from .store.listing import decode_token, encode_token
from .store.outcomes import refusal


class Producer:
    def __init__(self, store: Store, notify: Notify | None = None) -> None:
        """A producer on an open store (the caller closes it); see `connect`.
        `notify`: told of each job it stores as new (Event.ENQUEUED)."""
        self.store = store
        self._enqueuer = Enqueuer(store, notify)
        self._owns_store = False

    @classmethod
    def connect(cls, settings: Settings | None = None) -> Producer:
        """A producer on a store of its own, for `settings` (default: from the
        environment, as servers and workers read it); `aclose()` closes it."""
        producer = cls(Store.open(settings or Settings.from_env()))
        producer._owns_store = True
        return producer

    async def enqueue(
        self,
        job_type: str,
        payload: object = b"",
        execution_time_ms: int | None = None,
        options: JobOptions = NO_OPTIONS,
        *,
        codec: Codec | str | None = None,
    ) -> Job:
        """Stores a PENDING job, due at `execution_time_ms` (Unix ms; None: now).

        The payload is bytes, or str (stored as UTF-8); anything else is a TypeError
        unless a `codec` ('json', 'msgpack' or a jobqueue.codecs.Codec) encodes it
        (a dict, a list, a dataclass, a pydantic model...: docs/payloads.md).

        With an idempotency key already used for this type within the window,
        returns the job enqueued first instead of creating one; with a unique key
        (`options.unique_mode`), the key's active job, or its pending job updated
        (DEBOUNCE): `job.enqueued` says which. Concurrent calls share round trips
        to Redis.
        """
        encoded = encode_payload(payload, codec)
        return await self._enqueuer.enqueue(job_type, encoded, execution_time_ms, options)

    async def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, codec: Codec | str | None = None
    ) -> list[Job]:
        """Stores many jobs, in request order; one bad request stores none.

        Payloads as `enqueue` takes them: each encoded by `codec` if given.
        """
        encoded = encode_requests(requests, codec)
        return await self._enqueuer.enqueue_many(_with_bytes_payloads(encoded))

    async def get(self, job_id: str) -> Job:
        return await self.store.inspect.get(job_id)

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancels a pending or running job; returns the status it had."""
        result = await self.store.transitions.cancel(job_id)
        if not result.ok or result.status is None:
            raise refusal(result, job_id, "cancel")
        return result.status

    async def retry(self, job_id: str) -> Job:
        """Runs a FAILED or CANCELLED job again, due now, attempts from zero."""
        result = await self.store.transitions.redrive(job_id)
        if not result.ok:
            raise refusal(result, job_id, "retry")
        return await self.get(job_id)

    async def list_jobs(
        self,
        job_filter: JobFilter,
        order: ListOrder = ListOrder.NEWEST_FIRST,
        page_size: int = 0,
        page_token: str = "",
        *,
        with_payloads: bool = False,
    ) -> JobPage:
        """A page of the jobs `job_filter` selects (ListJobs); page_size 0 is 100."""
        checked = check_filter(job_filter)
        newest_first = check_order(order) is not ListOrder.OLDEST_FIRST
        size = check_count(page_size, "page_size", DEFAULT_PAGE_SIZE)
        after = decode_token(page_token, checked, newest_first)
        selected = await self.store.lister.select(
            checked, newest_first=newest_first, count=size, after=after, with_payloads=with_payloads
        )
        return JobPage(selected.jobs, encode_token(selected.cursor, checked, newest_first))

    async def retry_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """Redrives the FAILED or CANCELLED jobs selected, at most `limit` examined (0: 1,000)."""
        return await self.store.bulk.retry(check_filter(job_filter), _limit(limit), page_token)

    async def cancel_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """Cancels the unfinished jobs selected, at most `limit` examined (0: 1,000)."""
        return await self.store.bulk.cancel(check_filter(job_filter), _limit(limit), page_token)

    async def delete_jobs(self, job_filter: JobFilter, limit: int = 0, page_token: str = "") -> BulkOutcome:
        """Deletes the finished jobs selected, at most `limit` examined (0: 1,000)."""
        return await self.store.bulk.delete(check_filter(job_filter), _limit(limit), page_token)

    async def aclose(self) -> None:
        if self._owns_store:
            await self.store.aclose()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _limit(limit: int) -> int:
    return check_count(limit, "limit", MAX_EXAMINED)


def _with_bytes_payloads(requests: Sequence[EnqueueRequest]) -> Sequence[EnqueueRequest]:
    # Batches of bytes (the server's, every batch) pass as they are, uncopied.
    if all(type(r.payload) is bytes for r in requests):
        return requests
    return [
        dataclasses.replace(r, payload=payload_bytes(r.payload, f"requests[{i}].payload"))
        for i, r in enumerate(requests)
    ]
