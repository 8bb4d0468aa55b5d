"""Watches as iterators: `EventStream` (blocking) and `AsyncEventStream` (asyncio).

The server's stream may send a message again (over HTTP/1.1 it repeats its last
one while quiet, so that it notices a client that has gone: server/streams.py),
and WatchJobs opens with its starting position, an event with only a cursor.
Neither is an event: both only move `cursor`, which is always where to resume
from (pass it back as `cursor=` to a new watch of the same jobs). The clients
ask WatchJobs for batches (`max_batch`): a busy queue's events come many to a
message, and are handed out one at a time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from pyqwest import SyncClient as HTTPClient

from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from ..store.job_events import JobChange
from ..wire import job_change_from_proto

# The most events a WatchJobs message brings the clients.
BATCH = 500


def watch_jobs_request(
    job_type: str, cursor: str, progress: bool = False, results: bool = False
) -> pb.WatchJobsRequest:
    return pb.WatchJobsRequest(
        type=job_type, cursor=cursor, max_batch=BATCH, progress=progress, results=results
    )


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent(JobChange):
    """One change of a job: its state after it (`at`: Unix ms, the Redis clock). A
    progress report (a watch with `progress=True`) is a RUNNING event whose `progress`
    is not None; WatchJob's event of a COMPLETED job has its `result`."""

    cursor: str  # resume after this event
    gap: bool  # events were lost before this one (the watch resumed from a cursor too old)


class EventStream:
    """A watch's events, in order, until the stream ends (WatchJob: after a final
    status) or `close()`. Errors arrive as the client's calls raise them."""

    def __init__(
        self,
        responses: Iterator[Any],
        translate: Callable[[ConnectError], Exception],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._responses = responses
        self._translate = translate
        self._on_close = on_close
        self._aborted = False
        self.cursor = ""
        self._started: list[Any] = []
        # A message's events not handed out yet, with whether events were lost before each.
        self._batch: collections.deque[tuple[Any, bool]] = collections.deque()

    def start(self, within_s: float | None = None) -> EventStream:
        """Waits for the stream's first message: from then on no event is missed (a
        WatchJobs without a cursor streams what happens after it starts). `within_s`:
        how long the server has to send it, for a watch whose first message comes at
        once; past that the stream is aborted and the wait fails as a call that got
        no answer does (DEADLINE_EXCEEDED). The wait is then on a thread of its own,
        since nothing ends a request whose answer has not begun: that thread ends
        when the connection does."""
        try:
            first = self._receive() if within_s is None else self._first_within(within_s)
        except StopIteration:  # it ended at once (WatchJob resumed after the job's last event)
            self._aborted = True
        else:
            self._started = [first]
        return self

    def _first_within(self, within_s: float) -> Any:
        outcome: list[Any] = []
        done = threading.Event()

        def receive() -> None:
            try:
                outcome.append(self._receive())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=receive, daemon=True, name="jobqueue-watch-start").start()
        if not done.wait(within_s):
            self.abort()
            late = TimeoutError()
            error = ConnectError(Code.DEADLINE_EXCEEDED, f"no first message within {within_s:g} s")
            error.__cause__ = late
            raise self._translate(error) from late
        [first] = outcome
        if isinstance(first, BaseException):
            raise first
        return first

    def _receive(self) -> Any:
        if self._aborted:
            raise StopIteration
        try:
            return next(self._responses)
        except ConnectError as error:
            if self._aborted:  # the read that abort() ended
                raise StopIteration from None
            raise self._translate(error) from error.__cause__

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            if self._batch:
                event, gap = self._batch.popleft()
                self.cursor = event.cursor
                return WatchEvent(**job_change_from_proto(event), cursor=event.cursor, gap=gap)
            response = self._started.pop() if self._started else self._receive()
            if getattr(response, "events", None):  # WatchJobs, batched
                if response.events[-1].cursor != self.cursor:  # else a repeat of the last message
                    self._batch.extend((e, response.gap and i == 0) for i, e in enumerate(response.events))
                continue
            event = response.event
            if event is None or event.cursor == self.cursor:
                continue
            self.cursor = event.cursor
            if not event.id:
                continue
            return WatchEvent(**job_change_from_proto(event), cursor=event.cursor, gap=response.gap)

    def abort(self) -> None:
        """Ends the stream from any thread: a wait for the next message in progress
        ends as the end of the stream."""
        self._aborted = True
        self._on_close()

    def close(self) -> None:
        self.abort()
        close = getattr(self._responses, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncEventStream:
    """`EventStream` for asyncio: each message is awaited on a thread of the stream's own
    (see async_client.py for why the client does not use pyqwest's asyncio transport).
    A cancelled wait leaves the message to the next one. `aclose()` ends the stream,
    and a wait in progress with it."""

    @classmethod
    async def start(cls, stream: EventStream) -> AsyncEventStream:
        """The stream once it has its first message (see EventStream.start)."""
        started = cls(stream)
        try:
            await asyncio.wrap_future(started._thread.submit(stream.start))
        except BaseException:
            await started.aclose()
            raise
        return started

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="jobqueue-watch")
        self._pending: asyncio.Future[WatchEvent] | None = None
        self._closed = False

    @property
    def cursor(self) -> str:
        return self._stream.cursor

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._pending is None:
            self._pending = asyncio.wrap_future(self._thread.submit(self._next))
        pending = self._pending
        try:
            event = await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise  # this wait was cancelled: the message, when it comes, is the next call's
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return event

    def _next(self) -> WatchEvent:
        try:
            return next(self._stream)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.abort()
        if self._pending is not None:
            await asyncio.wait((self._pending,))
        await asyncio.to_thread(self._thread.shutdown)
        self._stream.close()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class ClosableResponse:
    """The HTTP client of one stream, whose response `close()` closes from any thread
    (which ends a read in progress: closing the transport does not)."""

    def __init__(self, http: HTTPClient) -> None:
        self._http = http
        self._lock = threading.Lock()
        self._response: Any = None
        self._closed = False

    @contextlib.contextmanager
    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with self._http.stream(*args, **kwargs) as response:
            with self._lock:
                self._response = response
                if self._closed:
                    response.close()
            yield response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._response is not None:
                self._response.close()
