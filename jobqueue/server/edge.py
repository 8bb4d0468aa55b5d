"""The edge: the one ASGI layer that sees every message of every HTTP request.

Five concerns must see each message a request receives or sends, or each
answer's start, and each keeps its rules in its own module:
- refusals that explain themselves (refusals.py): the start of a 415 or 429
  waits for its body, to be explained with it;
- slow clients (slow.py): reads of an unfinished body and blocked sends are timed;
- a body the app has not read to its end when it answers (drain.py): the rest
  is read and dropped, and over HTTP/1.1 the answer held back meanwhile;
- streams whose client has gone (streams.py): once a read has returned
  `http.disconnect`, sends are only offered, briefly; and the Streams interceptor
  learns whether the request came over HTTP/1.x;
- client aborts kept out of the error log (quiet.py): the exception a send to
  the client raised is recorded, and what the app raises because of it, or
  because of the client's deadline or disconnect, ends as a DEBUG line.

It also sizes Connect's unary answers over HTTP/1.x: connectrpc sends their
start and then their one body without a length, which HTTP/1.1 sends chunked (a
write for the start, one for the chunk, one for the last chunk). The start of an answer of a
unary content type waits for its body and goes with its content-length.

They share this layer, with one wrapper of `receive` and one of `send`, calling
the concerns' hooks as plain functions; the cheapest notes are made inline
(the body's end, for slow.py's TimedCall and drain.py's UnreadBody; whether an
answer's start is unary and unsized), and a held start goes out without a
second pass through `send` when nothing else holds it. A layer per concern, each awaiting its
app and wrapping both callables, was most of what the edge cost per call: each
such layer's coroutine frame is re-entered every time the request's task
resumes, and each wrapper is one more coroutine per message. For the same
reason the layers that only look at the request (gRPC trailers, gRPC-Web text,
CORS, the router) return their app's coroutine instead of awaiting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from .drain import UnreadBody
from .quiet import client_abort, log_client_abort
from .refusals import EXPLAINED_STATUSES, ExplainedRefusals
from .slow import SlowClientTimeouts, TimedCall
from .streams import note_http_version, noted_http_version, offer_to_gone_client


class Edge:
    def __init__(self, app: Any, slow: SlowClientTimeouts, refusals: ExplainedRefusals) -> None:
        self.app = app
        self.slow = slow
        self.refusals = refusals

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        http1 = scope.get("http_version", "1.1").startswith("1")
        if http1 is not noted_http_version():
            note_http_version(http1)
        exchange = _Exchange(self, scope, UnreadBody(http1), receive, send)
        try:
            try:
                await self.app(scope, exchange.receive, exchange.send)
                if exchange.refused is not None:  # a start without a body: not one of connectrpc's refusals
                    await exchange.send_held()
                if exchange.unsized is not None:  # a unary start without a body
                    await exchange.send({"type": "http.response.body"})
            except BaseException:
                await exchange.body.failed(exchange.send)
                raise
            if exchange.body.held:  # an answer held back without its last message (drain.py)
                await exchange.body.finish(exchange.read, exchange.send)
        except Exception as exc:
            if not client_abort(exc, exchange.send_error):
                raise
            log_client_abort(scope, exc)
        finally:
            self.slow.end(exchange)


class _Exchange(TimedCall):
    """One request's receive and send, as the app sees them; the request's
    TimedCall (slow.py) itself: one object per call less."""

    __slots__ = (
        "body", "edge", "gone", "refusal_seen", "refused",
        "scope", "send_error", "sizing_seen", "unsized", "up_receive", "up_send",
    )  # fmt: skip

    def __init__(self, edge: Edge, scope: Any, body: UnreadBody, receive: Any, send: Any) -> None:
        TimedCall.__init__(self, edge.slow)
        self.edge = edge
        self.scope = scope
        self.body = body
        self.up_receive = receive
        self.up_send = send
        self.gone = False
        self.send_error: BaseException | None = None
        self.refused: Any = None  # the start of a 415 or 429, until its body
        self.refusal_seen = False  # a start held once goes out as it is, or explained
        self.unsized: Any = None  # the start of a unary answer, until its body
        # A start held once goes out, sized or not; over HTTP/2 none is held: a DATA
        # frame's END_STREAM ends the body, and a content-length would only be one
        # more header for Hypercorn's HTTP/2 side to check and encode.
        self.sizing_seen = not body.http1

    async def receive(self, noted: bool = True) -> Any:
        """The server's next message, timed while the body is unfinished (slow.py),
        and noted for drain.py and streams.py unless `noted` is false (drain.py's
        own reads of what is left, `read`). One coroutine per message: the read
        is not a second one."""
        if self.body_done:
            message = await self.up_receive()
        else:
            idle_deadline = self.reading_body()
            try:
                message = await self.up_receive()
            except asyncio.CancelledError:
                if self.ours():
                    raise self.body_timed_out(idle_deadline) from None
                raise
            finally:
                self.deadline = None
            self.body_done = message["type"] != "http.request" or not message.get("more_body", False)
        if noted:
            kind = message["type"]
            # UnreadBody.received (drain.py), inline: a Python call per message less.
            body = self.body
            body.unread = kind == "http.request" and message.get("more_body", False)
            if not body.unread and body.held:
                await body.release(self.send)
            if kind == "http.disconnect":
                self.gone = True
        return message

    def read(self) -> Awaitable[Any]:
        """The server's next message, timed as the app's are but not noted: for
        drain.py, which reads and drops what is left of the body."""
        return self.receive(noted=False)

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if self.refused is not None or (
            kind == "http.response.start"
            and message["status"] in EXPLAINED_STATUSES
            and not self.refusal_seen
        ):
            await self._refusal(message)
            return
        if self.unsized is not None:
            start, self.unsized = self.unsized, None
            if kind == "http.response.body" and not message.get("more_body", False):
                length = (b"content-length", b"%d" % len(message.get("body", b"")))
                start = {**start, "headers": [*start["headers"], length]}
            if self.body.unread or self.gone:
                await self.send(start)
            else:  # what the rest of this method does with a start, without a call to it
                try:
                    await self.up_send(start)
                except Exception as exc:
                    self.send_error = exc
                    raise
        elif kind == "http.response.start" and not self.sizing_seen:
            # Whether it is Connect unary's (or its error's) without a length: held until its body.
            unary = False
            for name, value in message["headers"]:
                if name == b"content-length":
                    unary = False
                    break
                if name == b"content-type":
                    unary = value in _UNARY_CONTENT_TYPES
            if unary:
                self.unsized = message
                self.sizing_seen = True
                return
        # The rest of a refused body is read before the send is timed: a client
        # still sending it is not one that does not read its answer.
        if self.body.unread and await self.body.answer(message, self.read, self.send):
            return
        if self.gone:
            await offer_to_gone_client(self.up_send, message)
            return
        timed = kind != "http.response.start"
        if timed:
            self.sending()
        try:
            await self.up_send(message)
        except asyncio.CancelledError:
            if timed and self.ours():
                raise self.send_stalled() from None
            raise
        except Exception as exc:
            self.send_error = exc
            raise
        finally:
            self.deadline = None

    async def _refusal(self, message: Any) -> None:
        """A 415 or 429's start is held; with its whole body, both are explained."""
        if self.refused is None:
            self.refused = message
            self.refusal_seen = True
            return
        start, self.refused = self.refused, None
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            start, message = self.edge.refusals.explained(self.scope, start, message)
        await self.send(start)
        await self.send(message)

    async def send_held(self) -> None:
        """The app is done and a held start had no body: it goes as it is."""
        start, self.refused = self.refused, None
        await self.send(start)


# The Content-Types of Connect's unary answers, sized by the edge.
_UNARY_CONTENT_TYPES = (b"application/proto", b"application/json")
