"""Reads what is left of a refused request's body before its answer goes out
(HTTP/1.1) or ends (HTTP/2).

connectrpc refuses a request over `read_max_bytes` (resource_exhausted) as soon
as it has read that much, and answers while the client is still sending:
- HTTP/1.1: a connection whose request was not read to the end cannot be reused,
  so Hypercorn closes it, and a socket closed with unread bytes sends a TCP reset.
  The client, still writing, sees a broken pipe instead of the answer (connectrpc's
  client says `unavailable`, which invites a retry of the same request), and did so
  for most multi-MiB payloads over gRPC-Web.
- HTTP/2: Hypercorn 0.18 does not acknowledge DATA that arrives for a stream it
  has closed (pgjones/hypercorn#329), so the connection's flow-control window
  leaks: after two refused 12 MiB requests every call on that connection hung.

So the rest of the body is read and dropped, within bounds (at most
DRAIN_MAX_BYTES and DRAIN_MAX_S; past either, the server behaves as above):
- HTTP/1.1: before the response starts. Not after, as nginx's lingering close
  does: a client such as curl stops sending when an error status arrives early,
  then waits for the rest of the answer, which would wait for the rest of the body.
  Until then, what the app sends is held back: an app that answers a message and
  then reads on (a bidi stream: reflection over Connect or gRPC-Web) gets the
  rest of the body, and its answers go out once it has read it; an app that is
  done (its answer's last message) has the rest read and dropped first. (Reading
  the rest at the answer's start took the body's end from a bidi stream, which
  then waited for it for ever: found by tests/test_fuzz_edge.py.)
- HTTP/2: before the message that ends the response, so that a streaming call
  (gRPC reflection is one) still answers while its client is sending.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from connectrpc.errors import ConnectError

DRAIN_MAX_BYTES = 32 << 20
DRAIN_MAX_S = 5.0


class UnreadBody:
    """One request's body as the answer meets it: whether the app has read it to
    the end, and the answer held back meanwhile (HTTP/1.1). The edge (edge.py)
    notes each message the app receives as `received` does (inline: a call per
    message less), and calls `answer` on each message it sends while the body is
    unread: plain calls while nothing is held or drained."""

    __slots__ = ("held", "http1", "max_bytes", "max_s", "trailers", "unread")

    def __init__(self, http1: bool, max_bytes: int = DRAIN_MAX_BYTES, max_s: float = DRAIN_MAX_S) -> None:
        self.http1 = http1
        self.max_bytes = max_bytes
        self.max_s = max_s
        self.unread = True  # the app has not received the body's last message
        self.trailers = False
        # HTTP/1.1: the answer so far, while the body is unread; a list only once
        # something is held (most calls hold nothing: no allocation for them).
        self.held: list[Any] | None = None

    def received(self, message: Any) -> bool:
        """Notes a message the app received; whether an answer held back may now go."""
        self.unread = message["type"] == "http.request" and message.get("more_body", False)
        return not self.unread and bool(self.held)

    async def release(self, send: Any) -> None:
        """Sends what was held back (once the body is read: `send` sends at once)."""
        while self.held:
            await send(self.held.pop(0))

    async def answer(self, message: Any, read: Any, send: Any) -> bool:
        """For a message the app sends while the body is unread: holds it, or reads
        the rest of the body first (with `read`) when it ends the answer. Whether it
        was taken (held, or sent with what was held); if not, the caller sends it."""
        kind = message["type"]
        if kind == "http.response.start":
            self.trailers = message.get("trailers", False)
        if kind == "http.response.body":
            last = not self.trailers and not message.get("more_body", False)
        else:
            last = kind == "http.response.trailers" and not message.get("more_trailers", False)
        if self.http1:
            if self.held is None:
                self.held = [message]
            else:
                self.held.append(message)
            if last:
                self.unread = False
                await self._drain(read)
                await self.release(send)
            return True
        if last:
            self.unread = False
            await self._drain(read)
        return False

    async def failed(self, send: Any) -> None:
        """The app failed: what it sent goes out as it would have without the hold
        (the server then cuts the answer short, as for any app that fails midway)."""
        self.unread = False
        with contextlib.suppress(Exception):
            await self.release(send)

    async def finish(self, read: Any, send: Any) -> None:
        """The app is done: an answer held back without its last message goes now,
        after the rest of the body."""
        if self.held:
            if self.unread:
                self.unread = False
                await self._drain(read)
            await self.release(send)

    async def _drain(self, read: Any) -> None:
        dropped = 0
        # A ConnectError: the body's own time bounds passed (slow.py) meanwhile.
        with contextlib.suppress(TimeoutError, ConnectError):
            async with asyncio.timeout(self.max_s):
                while dropped <= self.max_bytes:
                    message = await read()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    dropped += len(message.get("body", b""))


class DrainUnreadBody:
    """UnreadBody as an ASGI layer of its own, for any app. The server does the
    same within its edge (edge.py), which wraps receive and send once for all
    the bounds that see every message."""

    def __init__(self, app: Any, max_bytes: int = DRAIN_MAX_BYTES, max_s: float = DRAIN_MAX_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_s = max_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = UnreadBody(scope.get("http_version", "1.1").startswith("1"), self.max_bytes, self.max_s)

        async def tracked_receive() -> Any:
            message = await receive()
            if body.received(message):
                await body.release(send)
            return message

        async def draining_send(message: Any) -> None:
            if not (body.unread and await body.answer(message, receive, send)):
                await send(message)

        try:
            await self.app(scope, tracked_receive, draining_send)
        except BaseException:
            await body.failed(send)
            raise
        await body.finish(receive, send)
