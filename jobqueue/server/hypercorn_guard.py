"""Hypercorn 0.18, hardened against what clients can do to it.

1. Rapid reset (CVE-2023-44487): a client opens an HTTP/2 stream and resets it
   at once, over and over. Each stream starts an app call that runs on after
   the reset, so MAX_CONCURRENT_STREAMS no longer bounds the work in flight.
   Hypercorn has no guard: the calls pile up until its priority tree refuses a
   1001st stream and the connection dies with an unhandled exception (an ERROR
   with a traceback). Here a connection whose client has more app calls running
   than MAX_ACTIVE_FACTOR times the stream limit is closed with GOAWAY
   (ENHANCE_YOUR_CALM), as Go's server does; a client that respects the limit
   never gets near it. h2corn has a reset-rate guard of its own.
2. HTTP/2 DATA on a stream whose answer has already gone out: Hypercorn has
   dropped the stream and fails with a KeyError, which kills the connection
   (another ERROR), and it never acknowledges those bytes, so the connection's
   flow-control window leaks (pgjones/hypercorn#329). Here such data is
   acknowledged and dropped.
3. A connection the client has closed lingers until its keep-alive timer
   fires: Hypercorn stops that timer only after waiting for it, so each closed
   connection holds its tasks and buffers for the whole idle timeout. A client
   that opens and closes connections quickly grows the server by that much per
   connection. Here the timer stops once the client has gone.
4. Closing a TLS connection waits for the client's answer to the server's
   close_notify, for up to asyncio's SSL shutdown timeout (30 s); a client that
   never reads (one idle since its handshake, say) holds the connection that long,
   and a server that shuts down waits for it past its grace; then the timeout
   escapes Hypercorn as an unhandled exception (an ERROR). Here the wait is
   CLOSE_NOTIFY_TIMEOUT_S, and its timeout closes the connection quietly.
5. A request that arrives on a connection h2 has already closed (after a GOAWAY,
   while the server shuts down) makes Hypercorn reset it, which h2 refuses with an
   exception that ends the server with status 1. Here the connection is closed, as
   Hypercorn closes one on a client's protocol error.

Not a guard but the same connection's cost: Hypercorn's keep-alive timer is a task
that it creates as a connection goes idle and cancels (and awaits) as the next
request comes, so every request over a kept-alive connection cost a task created,
cancelled and finished, a few turns of the event loop. Here it is a loop timer
(KeepAliveTimer): same timeout, same close, and a connection idle when the server
shuts down is closed then, as Hypercorn's task did.

`install()` makes Hypercorn use these classes in this process; `jobqueue
server` calls it before serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import h2.errors
import h2.exceptions
import hypercorn.asyncio.run
import hypercorn.protocol
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Closed
from hypercorn.protocol.h2 import H2Protocol

log = logging.getLogger("jobqueue.server.edge")

MAX_ACTIVE_FACTOR = 4
CLOSE_NOTIFY_TIMEOUT_S = 2.0


class _Discard:
    """Stands in for a stream Hypercorn has closed: what arrives for it is dropped."""

    async def handle(self, event: Any) -> None:
        pass


_DISCARD = _Discard()


class _Streams(dict[int, Any]):
    def __missing__(self, stream_id: int) -> Any:
        return _DISCARD


class GuardedH2Protocol(H2Protocol):
    def __init__(self, app: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        self._active = 0
        self._max_active = MAX_ACTIVE_FACTOR * config.h2_max_concurrent_streams
        self._calming = False

        def counted(*app_args: Any) -> Awaitable[None]:
            # Called in the call's own task (Hypercorn's `_handle`), which the call
            # ends with. Not a coroutine: it returns the app's, adding no frame to
            # the task, which would be re-entered every time the task resumes.
            task = asyncio.current_task()
            assert task is not None
            task.add_done_callback(self._call_ended)
            return app(*app_args)  # type: ignore[no-any-return]

        super().__init__(counted, config, *args, **kwargs)  # type: ignore[arg-type]
        self.streams = _Streams()

    def _call_ended(self, task: asyncio.Task[Any]) -> None:
        self._active -= 1

    async def _handle_events(self, events: list[Any]) -> None:
        if self._calming:
            return  # GOAWAY is sent: what the client sends on is dropped
        try:
            await super()._handle_events(events)
        except h2.exceptions.ProtocolError:
            # h2 refuses an action on a connection it has closed: Hypercorn resets a
            # request that arrives while the server shuts down, and a reset on a
            # closed connection raises, unhandled. The connection is over either way:
            # close it as Hypercorn does when h2 refuses what a client sent.
            await self._flush()
            await self.send(Closed())

    async def _create_stream(self, request: Any) -> None:
        if self._calming:
            return
        if self._active >= self._max_active:
            self._calming = True
            log.warning(
                "HTTP/2 client %s has %d calls running after resetting their streams: "
                "connection closed (GOAWAY, ENHANCE_YOUR_CALM)",
                self.client,
                self._active,
            )
            self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            await self._flush()
            await self.send(Closed())
            return
        # Counted before the app's task starts: a burst of streams in one read
        # is all created before any of their tasks runs.
        self._active += 1
        await super()._create_stream(request)


class KeepAliveTimer:
    """Hypercorn's keep-alive timer (the `idle_task` it restarts as a connection goes idle
    and stops as a request comes, or the connection ends) as a loop timer."""

    def __init__(self, server: GuardedTCPServer) -> None:
        self._server = server
        self._timer: asyncio.TimerHandle | None = None
        self._task_group: Any = None

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        """Arms the timer (`action`, Hypercorn's waiting task, is not needed: the timer closes)."""
        self.disarm()
        self._task_group = task_group
        server = self._server
        if server.context.terminated.is_set():
            self.close()  # shutting down: an idle connection goes now
            return
        if server.config.keep_alive_timeout is not None:  # None: no limit, as wait_for's
            self._timer = server.loop.call_later(server.config.keep_alive_timeout, self.close)
        _idle_connections(server.context).add(self)

    async def stop(self) -> None:
        self.disarm()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _idle_connections(self._server.context).discard(self)

    def close(self) -> None:
        """Closes the idle connection (in its task group, as Hypercorn's timer task did)."""
        self.disarm()
        self._task_group.spawn(self._server.close_idle)


# Per server (its worker context): the connections idle now, which its shutdown closes.
_IDLE: weakref.WeakKeyDictionary[Any, set[KeepAliveTimer]] = weakref.WeakKeyDictionary()
_WATCHERS: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def _idle_connections(context: Any) -> set[KeepAliveTimer]:
    idle = _IDLE.get(context)
    if idle is None:
        idle = _IDLE[context] = set()
        # One task per server, not per connection: it ends when the server shuts down.
        watcher = asyncio.get_running_loop().create_task(_close_at_shutdown(context, idle))
        _WATCHERS.add(watcher)
        watcher.add_done_callback(_WATCHERS.discard)
    return idle


async def _close_at_shutdown(context: Any, idle: set[KeepAliveTimer]) -> None:
    await context.terminated.wait()
    for timer in list(idle):
        timer.close()


class GuardedTCPServer(TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = KeepAliveTimer(self)  # type: ignore[assignment]
        # asyncio's own bound on a TLS close (a private attribute: without it, the
        # default stays, and only the wait is longer).
        tls = getattr(self.writer.transport, "_ssl_protocol", None)
        if tls is not None and hasattr(tls, "_ssl_shutdown_timeout"):
            tls._ssl_shutdown_timeout = CLOSE_NOTIFY_TIMEOUT_S

    async def _read_data(self) -> None:
        await super()._read_data()
        # The client is gone: nothing is left to keep alive, and the connection's
        # task group (which the timer belongs to) would otherwise wait for it.
        await self.idle_task.stop()

    async def close_idle(self) -> None:
        """What Hypercorn's keep-alive task did once its time was up."""
        await asyncio.shield(self._initiate_server_close())

    async def _close(self) -> None:
        # "SSL shutdown timed out": asyncio has closed the connection regardless.
        with contextlib.suppress(TimeoutError):
            await super()._close()


def install() -> None:
    """Makes Hypercorn's connections use the guarded classes (idempotent)."""
    hypercorn.protocol.H2Protocol = GuardedH2Protocol  # type: ignore[attr-defined]
    hypercorn.asyncio.run.TCPServer = GuardedTCPServer  # type: ignore[attr-defined]
