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
        held: list[Any] = []  # HTTP/1.1: the answer so far, while the body is unread

        async def release() -> None:
            while held:
                await send(held.pop(0))

        async def tracked_receive() -> Any:
            nonlocal unread
            message = await receive()
            unread = message["type"] == "http.request" and message.get("more_body", False)
            if not unread and held:
                await release()
            return message

        async def draining_send(message: Any) -> None:
            nonlocal unread, trailers
            kind = message["type"]
            if kind == "http.response.start":
                trailers = message.get("trailers", False)
            if kind == "http.response.body":
                last = not trailers and not message.get("more_body", False)
            else:
                last = kind == "http.response.trailers" and not message.get("more_trailers", False)
            if http1 and unread:
                held.append(message)
                if last:
                    unread = False
                    await self._drain(receive)
                    await release()
                return
            if unread and last:
                unread = False
                await self._drain(receive)
            await send(message)

        try:
            await self.app(scope, tracked_receive, draining_send)
        except BaseException:
            # What the app sent goes out as it would have without the hold: the
            # server then cuts the answer short, as for any app that fails midway.
            with contextlib.suppress(Exception):
                await release()
            raise
        if held:  # the app is done without its answer's last message
            if unread:
                await self._drain(receive)
            await release()

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
