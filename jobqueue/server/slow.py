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
The edge (edge.py) applies these bounds to every HTTP request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from .quiet import ClientFault


class ResponseStalled(ClientFault):
    pass


_now = time.monotonic


class TimedCall:
    """One request's waits on its client: what it waits for, if anything, and
    until when, noted for SlowClientTimeouts' timer to see. The edge (edge.py)
    calls these hooks around its reads of the body and its sends (plain calls,
    not a wrapper coroutine per message), and sets `deadline` back to None when
    a wait ends; it notes the body's end in `body_done` itself (see edge.py)."""

    __slots__ = ("body_deadline", "body_done", "bounds", "cancelling", "deadline", "expired", "task")

    def __init__(self, bounds: SlowClientTimeouts) -> None:
        """The current task's request, timed until `bounds.end(self)`. Registers
        itself (not a `bounds.start()` around it: one Python call per request less)."""
        now = _now()
        self.bounds = bounds
        self.body_deadline = now + bounds.body_total_s
        self.body_done = False
        # The request's task: connectrpc reads the body and sends the answer in
        # it (its watch for a disconnect reads in a task of its own, but only
        # once the body is done, when reads are no longer timed).
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.deadline: float | None = None
        self.cancelling = 0
        self.expired = False
        bounds._calls.add(self)
        if bounds._timer is None:
            bounds._arm(now)

    def ours(self) -> bool:
        """Whether the cancellation that ended the wait is ours (as asyncio.timeout tells)."""
        return self.expired and self.task.uncancel() <= self.cancelling

    def reading_body(self) -> float:
        """Starts a timed read of the body; the read's idle deadline."""
        idle_deadline = _now() + self.bounds.body_idle_s
        self.cancelling = self.task.cancelling()
        self.expired = False
        self.deadline = min(idle_deadline, self.body_deadline)
        return idle_deadline

    def body_timed_out(self, idle_deadline: float) -> ConnectError:
        """What the read that `ours()` cancelled raises. The body is given up on:
        later reads wait for the disconnect, untimed."""
        self.body_done = True
        if idle_deadline <= self.body_deadline:
            return ConnectError(
                Code.DEADLINE_EXCEEDED, f"request body: no data for {self.bounds.body_idle_s:g} s"
            )
        return ConnectError(
            Code.DEADLINE_EXCEEDED, f"request body: not complete after {self.bounds.body_total_s:g} s"
        )

    def sending(self) -> None:
        """Starts a timed send. Not for the response's start: headers go to the
        transport without waiting on the client; one whose answer is stuck behind
        unread data waits in a timed send."""
        self.cancelling = self.task.cancelling()
        self.expired = False
        self.deadline = _now() + self.bounds.send_s

    def send_stalled(self) -> ResponseStalled:
        return ResponseStalled(f"the client read nothing of the response for {self.bounds.send_s:g} s")


class SlowClientTimeouts:
    """The bounds above, and their timer. Not a timer per read and send (asyncio
    timeouts there were the dearest part of the edge): each request in progress
    notes what it waits for and until when (TimedCall), and one timer looks the
    requests over every `tick` seconds while there are any, cancelling a wait
    past its deadline as asyncio.timeout would. A bound is so enforced up to a
    tick late."""

    def __init__(self, *, body_idle_s: float, body_total_s: float, send_s: float) -> None:
        self.body_idle_s = body_idle_s
        self.body_total_s = body_total_s
        self.send_s = send_s
        self.tick = min(1.0, max(0.05, min(body_idle_s, body_total_s, send_s) / 8))
        self._calls: set[TimedCall] = set()
        self._timer: asyncio.TimerHandle | None = None
        # A request's TimedCall registers itself; `end(call)` stops timing it (the
        # set's own method: no Python call around it).
        self.end: Callable[[TimedCall], None] = self._calls.discard

    def _arm(self, now: float) -> None:
        # The loop's clock is time.monotonic, which _now reads too.
        self._timer = asyncio.get_running_loop().call_at(now + self.tick, self._check)

    def _check(self) -> None:
        self._timer = None
        now = _now()
        for call in self._calls:
            if call.deadline is not None and now >= call.deadline and not call.expired:
                call.expired = True
                call.task.cancel()
        if self._calls:
            self._arm(now)
