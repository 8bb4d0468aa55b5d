"""Time bounds on slow clients, the same under Hypercorn and h2corn.

The HTTP servers bound idle connections and request heads (main.py sets their
timeouts), but under Hypercorn nothing bounds a request body that never
finishes, or a response the client never reads: a slow-loris client could hold
a connection, a task and its buffers for ever. Here:
- the request body may pause for at most `body_idle_s` between two reads, and
  must have arrived within `body_total_s` of the request's start; past either,
  the call ends with deadline_exceeded (Hypercorn then closes the connection, as
  a request read only in part leaves it unusable; h2corn reads on and drops what
  the client still sends of the body it announced);
- one send of the response may wait at most `send_s` for the client to make
  room; past it the response is abandoned.
A streaming response with nothing to send (health Watch between changes) waits
on nothing here: only reads of an unfinished body and blocked sends are timed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from .quiet import ClientFault


class ResponseStalled(ClientFault):
    pass


_now = time.monotonic


class _Call:
    """One request: its server's receive and send, timed. What it waits for, if
    anything, and until when, is noted for SlowClientTimeouts' timer to see."""

    __slots__ = ("body_deadline", "body_done", "bounds", "cancelling", "deadline", "expired", "task", "up")

    def __init__(
        self, bounds: SlowClientTimeouts, receive: Any, send: Any, now: float, task: asyncio.Task[Any]
    ) -> None:
        self.bounds = bounds
        self.up = (receive, send)
        self.body_deadline = now + bounds.body_total_s
        self.body_done = False
        # The request's task: connectrpc reads the body and sends the answer in
        # it (its watch for a disconnect reads in a task of its own, but only
        # once the body is done, when reads are no longer timed).
        self.task = task
        self.deadline: float | None = None
        self.cancelling = 0
        self.expired = False

    def _wait(self, deadline: float) -> None:
        self.cancelling = self.task.cancelling()
        self.expired = False
        self.deadline = deadline

    def _ours(self) -> bool:
        """Whether the cancellation that ended the wait is ours (as asyncio.timeout tells)."""
        return self.expired and self.task.uncancel() <= self.cancelling

    async def receive(self) -> Any:
        if self.body_done:
            return await self.up[0]()
        bounds = self.bounds
        idle_deadline = _now() + bounds.body_idle_s
        self._wait(min(idle_deadline, self.body_deadline))
        try:
            message = await self.up[0]()
        except asyncio.CancelledError:
            if not self._ours():
                raise
            self.body_done = True  # given up on: later reads wait for the disconnect
            if idle_deadline <= self.body_deadline:
                raise ConnectError(
                    Code.DEADLINE_EXCEEDED, f"request body: no data for {bounds.body_idle_s:g} s"
                ) from None
            raise ConnectError(
                Code.DEADLINE_EXCEEDED, f"request body: not complete after {bounds.body_total_s:g} s"
            ) from None
        finally:
            self.deadline = None
        self.body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            # Headers go to the transport without waiting on the client: one
            # whose answer is stuck behind unread data waits in a timed send.
            await self.up[1](message)
            return
        self._wait(_now() + self.bounds.send_s)
        try:
            await self.up[1](message)
        except asyncio.CancelledError:
            if not self._ours():
                raise
            raise ResponseStalled(
                f"the client read nothing of the response for {self.bounds.send_s:g} s"
            ) from None
        finally:
            self.deadline = None


class SlowClientTimeouts:
    """The bounds above. Not a timer per read and send (asyncio timeouts there
    were the dearest part of the edge): each request in progress
    notes what it waits for and until when (_Call), and one timer looks the
    requests over every `tick` seconds while there are any, cancelling a wait
    past its deadline as asyncio.timeout would. A bound is so enforced up to a
    tick late."""

    def __init__(self, app: Any, *, body_idle_s: float, body_total_s: float, send_s: float) -> None:
        self.app = app
        self.body_idle_s = body_idle_s
        self.body_total_s = body_total_s
        self.send_s = send_s
        self.tick = min(1.0, max(0.05, min(body_idle_s, body_total_s, send_s) / 8))
        self._calls: set[_Call] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = _now()
        task = asyncio.current_task()
        assert task is not None
        call = _Call(self, receive, send, now, task)
        self._calls.add(call)
        if self._timer is None:
            # The loop's clock is time.monotonic, which _now reads too.
            self._timer = asyncio.get_running_loop().call_at(now + self.tick, self._check)
        try:
            await self.app(scope, call.receive, call.send)
        finally:
            self._calls.discard(call)

    def _check(self) -> None:
        self._timer = None
        now = _now()
        for call in self._calls:
            if call.deadline is not None and now >= call.deadline and not call.expired:
                call.expired = True
                call.task.cancel()
        if self._calls:
            self._timer = asyncio.get_running_loop().call_at(now + self.tick, self._check)
