"""Server streams that end: when their client has gone, and when the server shuts down.

`Streams` is a connectrpc interceptor for every server-streaming RPC (health
Watch now; job watches later get it for free, by being served by an app that has it).

A client that has gone. connectrpc stops a stream's handler when the ASGI server
reports the client gone (`http.disconnect`). Hypercorn reports it on every
protocol, and h2corn on HTTP/2; h2corn over HTTP/1.1 reads nothing from the
connection while it answers, so it notices only a write that fails. A stream that
writes only when something changes (health Watch) might never write again: its
loop would poll Redis forever, and hold up the server's shutdown. So on HTTP/1.x a
stream that has been quiet for `keepalive_s` sends its last message again. Our
streams' messages are states (a serving status; a job's state), so a repeat tells
a client nothing new, and it is a message that every protocol and client accepts,
where there is no such thing as an empty keepalive frame in Connect or gRPC-Web.
HTTP/2 needs no such write, so gRPC clients get a message only on a change. A
handler should send its first message (the current state) at once: until then a
quiet HTTP/1.1 stream has nothing to repeat.

Shutdown. `close()` ends every open stream at once with `unavailable` ("server
shutting down"), and refuses new ones the same way. Not OK: a stream that ends with
OK has said all it had to say (a job watch will end with OK when its job is
finished), and its client would stop watching instead of watching again.
`unavailable` is gRPC's code for "transient: retry, possibly elsewhere", the code
gRPC itself gives calls cut off by a server that goes away, so clients' retry
policies already cover it; and the stream still ends properly, with its status, so
a client can tell a server that stopped from one that crashed (whose streams end
without a status). The process can then exit as soon as the final statuses are
written, instead of waiting out the server's graceful timeout.

Who calls `close()`: `serve()` (main.py) when its stop event is set; for an app run
by a server that owns the signals (h2corn), `end_on_signals` installs a SIGTERM and
SIGINT hook in front of the server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from types import FrameType
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

log = logging.getLogger("jobqueue.server.streams")

REQ = TypeVar("REQ")
RES = TypeVar("RES")

KEEPALIVE_S = 2.0
SHUTTING_DOWN = "server shutting down; reconnect"
# How long a send may wait once the client has gone (see offer_to_gone_client).
GONE_SEND_TIMEOUT_S = 0.2

# Whether the request being handled came over HTTP/1.x (set by the edge, with
# `note_http_version`): interceptors see the RPC, not the ASGI scope.
_http1: ContextVar[bool] = ContextVar("jobqueue_http1", default=False)


# Tells the Streams interceptor of the request being handled whether it came over
# HTTP/1.x: the variable's own setter, called by the edge for every request (no
# Python call around it).
note_http_version: Callable[[bool], object] = _http1.set
# What the request's context already says: the edge sets it only when it differs
# (a set makes a new context mapping and a token; over HTTP/2 the default holds).
noted_http_version: Callable[[], bool] = _http1.get


async def offer_to_gone_client(send: Any, message: Any) -> None:
    """Sends `message` to a client that has gone (the request has received
    `http.disconnect`), giving up after GONE_SEND_TIMEOUT_S, and on any error.

    connectrpc still writes a stream's final status after the client has gone;
    Hypercorn's HTTP/2 side, its connection closed, then waits forever for that
    write to go out, and the connection's task with it (the socket stays in
    CLOSE-WAIT, and the server's shutdown waits out its graceful timeout, then
    cancels it with an ERROR traceback). Those sends are still offered, briefly:
    h2corn logs an ERROR for an app that returns without completing its response,
    gone client or not, and takes the sends at once.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(GONE_SEND_TIMEOUT_S):
            await send(message)


class Streams:
    """The server's open streams (for one event loop): the interceptor that runs them,
    and their end on shutdown."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self._closing = False
        self._closed: asyncio.Future[None] | None = None  # made on the loop, by the first stream
        self._open = 0
        self._none_open: asyncio.Event | None = None

    @property
    def open(self) -> int:
        return self._open

    def close(self) -> None:
        """Ends every open stream (`unavailable`) and refuses new ones. Call it on the loop's thread."""
        if self._closing:
            return
        self._closing = True
        log.debug("ending %d open stream(s): server shutting down", self._open)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def closing(self) -> None:
        """Returns once `close` is called: a long unary call (WaitJob) then answers at once
        rather than hold the shutdown up."""
        if self._closing:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed)

    async def wait_ended(self, timeout_s: float) -> bool:
        """Whether every stream ended within `timeout_s`."""
        if self._open == 0:
            return True
        if self._none_open is None:
            self._none_open = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._none_open.wait()
        return self._open == 0

    async def intercept_server_stream(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], AsyncIterator[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[RES]:
        if self._closing:
            raise ConnectError(Code.UNAVAILABLE, SHUTTING_DOWN)
        loop = asyncio.get_running_loop()
        if self._closed is None:
            self._closed = loop.create_future()
        closed = self._closed
        keepalive_s = self.keepalive_s if _http1.get() else None
        messages = call_next(request, ctx)
        # The handler's next message is awaited in a task of its own, so that waiting
        # for it can be interrupted (keepalive, shutdown) without cancelling the handler.
        pending: asyncio.Future[RES] | None = None
        last: RES | None = None
        ending = "cancelled (client gone, or deadline)"
        self._open += 1
        if self._none_open is not None:
            self._none_open.clear()
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait(
                    (pending, closed), timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done:
                    finished, pending = pending, None
                    try:
                        message = finished.result()
                    except StopAsyncIteration:
                        ending = "done"
                        break
                    last = message
                    yield message
                elif closed.done():
                    ending = SHUTTING_DOWN
                    break
                elif last is not None:
                    yield last
        except Exception as exc:
            ending = f"error: {exc}"
            raise
        except GeneratorExit:
            ending = "closed (client gone)"
            raise
        finally:
            if pending is not None:
                pending.cancel()
                # Not `await pending`: that would raise the cancellation of the handler
                # as if it were this task's own.
                await asyncio.wait((pending,))
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()
            self._open -= 1
            if self._open == 0 and self._none_open is not None:
                self._none_open.set()
            log.debug("%s stream ended: %s", ctx.method.name, ending)
        if ending == SHUTTING_DOWN:
            raise ConnectError(Code.UNAVAILABLE, SHUTTING_DOWN)


async def close_when(stop: asyncio.Event, streams: Streams, grace_s: float) -> None:
    """Waits for `stop`, then ends the streams and waits (at most `grace_s`) until
    their final statuses are written: a shutdown trigger for Hypercorn, which then
    closes the connections, now idle, instead of waiting out its graceful timeout."""
    await stop.wait()
    streams.close()
    if not await streams.wait_ended(grace_s):
        log.warning("%d stream(s) still open after %s s", streams.open, grace_s)


def end_on_signals(
    streams: Streams, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Has `signals` end the streams, before the handling that the ASGI server installed.

    For an app whose server owns the signals (h2corn): the server waits for requests
    in flight before it stops, and tells the app nothing, so open streams would
    hold it up until its graceful timeout and then be cut off. The hook is chained
    to the server's own Python-level handler; an asyncio server's handling runs
    anyway (the loop learns of the signal from its wakeup fd). Call it from the loop
    that serves the streams.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("open streams will not end on signals: the app runs outside the main thread")
        return
    loop = asyncio.get_running_loop()
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue  # the default action (or none): nothing shuts the server down gracefully

        def hook(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(streams.close)
            previous(signum, frame)

        signal.signal(sig, hook)
