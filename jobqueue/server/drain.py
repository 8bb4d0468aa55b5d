"""Reads what is left of a refused request's body before its answer goes out
(HTTP/1.1) or ends (HTTP/2).

connectrpc refuses a request over `read_max_bytes` (resource_exhausted) as soon
as it has read that much, and answers while the client is still sending:
- HTTP/1.1: a connection whose request was not read to the end cannot be reused,
  so Hypercorn closes it, and a socket closed with unread bytes sends a TCP reset.
  The client, still writing, sees a broken pipe instead of the answer (connectrpc's
  client says `unavailable`, which invites a retry of the same request). Measured
  before this: a 6 MiB payload over gRPC-Web failed that way in 23 of 30 tries.
- HTTP/2: Hypercorn 0.18 does not acknowledge DATA that arrives for a stream it
  has closed (pgjones/hypercorn#329), so the connection's flow-control window
  leaks: after two refused 12 MiB requests every call on that connection hung.

So the rest of the body is read and dropped, within bounds (at most
DRAIN_MAX_BYTES and DRAIN_MAX_S; past either, the server behaves as above):
- HTTP/1.1: before the response starts. Not after, as nginx's lingering close
  does: a client such as curl stops sending when an error status arrives early,
  then waits for the rest of the answer, which would wait for the rest of the body.
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


class DrainUnreadBody:
    def __init__(self, app: Any, max_bytes: int = DRAIN_MAX_BYTES, max_s: float = DRAIN_MAX_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_s = max_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        http1 = scope.get("http_version", "1.1").startswith("1")
        unread = True  # the app has not received the body's last message
        trailers = False

        async def tracked_receive() -> Any:
            nonlocal unread
            message = await receive()
            unread = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def draining_send(message: Any) -> None:
            nonlocal unread, trailers
            kind = message["type"]
            if kind == "http.response.start":
                trailers = message.get("trailers", False)
                drain_now = http1
            elif kind == "http.response.body":
                drain_now = not trailers and not message.get("more_body", False)
            else:
                drain_now = kind == "http.response.trailers" and not message.get("more_trailers", False)
            if unread and drain_now:
                unread = False
                await self._drain(receive)
            await send(message)

        await self.app(scope, tracked_receive, draining_send)

    async def _drain(self, receive: Any) -> None:
        dropped = 0
        # A ConnectError: the body's own time bounds passed (slow.py) meanwhile.
        with contextlib.suppress(TimeoutError, ConnectError):
            async with asyncio.timeout(self.max_s):
                while dropped <= self.max_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    dropped += len(message.get("body", b""))
