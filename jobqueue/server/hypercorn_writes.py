"""Hypercorn's HTTP/1.1 answers of a known length in one write, head and body.

Hypercorn writes an answer's head as soon as the app sends its start, then each
body message: two socket writes for a unary call (the edge holds a Connect unary
start until its body and sizes it, edge.py), so the client wakes once for the
head and once for the body, and the server makes a system call more per call.
Here the head of an answer with a content-length waits for the next event of
its stream, and goes in the same write as that event's bytes (the body, or the
end of an empty one). An answer without a length (chunked: a stream, whose first
message may come much later) is written as before, head first.

`install()` makes Hypercorn use this class in this process; `jobqueue server`
calls it before serving.
"""

from __future__ import annotations

from typing import Any

import h11
import hypercorn.protocol
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h11 import H11Protocol


class OneWriteH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = b""  # a sized answer's head, until the next bytes of its stream

    async def stream_send(self, event: Any) -> None:
        if self._head and not isinstance(event, Body | EndBody):
            # Anything else (the stream closed without a body, say) goes after the head.
            head, self._head = self._head, b""
            await self.send(RawData(data=head))
        await super().stream_send(event)

    async def _send_h11_event(self, event: Any) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""  # nothing of this event to send, as Hypercorn does; a held head still goes
        if self._head:
            data, self._head = self._head + data, b""
        elif type(event) is h11.Response and any(name == b"content-length" for name, _ in event.headers):
            self._head = data
            return
        if data:
            await self.send(RawData(data=data))


def install() -> None:
    """Makes Hypercorn's HTTP/1.1 connections use OneWriteH11Protocol (idempotent)."""
    hypercorn.protocol.H11Protocol = OneWriteH11Protocol  # type: ignore[attr-defined]
