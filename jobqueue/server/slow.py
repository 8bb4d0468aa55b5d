"""Time bounds on slow clients, the same under Hypercorn and h2corn.

The HTTP servers bound idle connections and request heads (main.py sets their
timeouts), but under Hypercorn nothing bounds a request body that never
finishes, or a response the client never reads: a slow-loris client could hold
a connection, a task and its buffers for ever. Here:
- the request body may pause for at most `body_idle_s` between two reads, and
  must have arrived within `body_total_s` of the request's start; past either,
  the call ends with deadline_exceeded (the connection then closes, as a request
  read only in part leaves it unusable);
- one send of the response may wait at most `send_s` for the client to make
  room; past it the response is abandoned.
A streaming response with nothing to send (health Watch between changes) waits
on nothing here: only reads of an unfinished body and blocked sends are timed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from .quiet import ClientFault


class ResponseStalled(ClientFault):
    pass


class SlowClientTimeouts:
    def __init__(self, app: Any, *, body_idle_s: float, body_total_s: float, send_s: float) -> None:
        self.app = app
        self.body_idle_s = body_idle_s
        self.body_total_s = body_total_s
        self.send_s = send_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + self.body_total_s
        body_done = False

        async def timed_receive() -> Any:
            nonlocal body_done
            if body_done:
                return await receive()
            idle_deadline = loop.time() + self.body_idle_s
            try:
                async with asyncio.timeout_at(min(idle_deadline, body_deadline)):
                    message = await receive()
            except TimeoutError:
                body_done = True  # the body is given up on: later reads wait for the disconnect
                if idle_deadline <= body_deadline:
                    raise ConnectError(
                        Code.DEADLINE_EXCEEDED, f"request body: no data for {self.body_idle_s:g} s"
                    ) from None
                raise ConnectError(
                    Code.DEADLINE_EXCEEDED, f"request body: not complete after {self.body_total_s:g} s"
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def timed_send(message: Any) -> None:
            try:
                async with asyncio.timeout(self.send_s):
                    await send(message)
            except TimeoutError:
                raise ResponseStalled(
                    f"the client read nothing of the response for {self.send_s:g} s"
                ) from None

        await self.app(scope, timed_receive, timed_send)
