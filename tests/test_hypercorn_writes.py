"""server/hypercorn_writes.py: an HTTP/1.1 answer of a known length in one write.

Hypercorn's own HTTP/1.1 protocol (the class installed) driven in process with its
own task group and app wrapper; `send` records what would be written to the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.typing import ConnectionState

from jobqueue.server.hypercorn_writes import OneWriteH11Protocol

REQUEST = b"POST /x HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n"
App = Callable[[Any, Any, Any], Awaitable[None]]


async def exchange(app_of: Callable[[list[bytes]], App]) -> list[bytes]:
    """The writes of one request's answer by `app_of(writes)`, an app that may look at
    what was written so far."""
    writes: list[bytes] = []

    async def send(event: Event) -> None:
        if isinstance(event, RawData):
            writes.append(event.data)

    async with TaskGroup(asyncio.get_running_loop()) as task_group:
        protocol = OneWriteH11Protocol(
            ASGIWrapper(app_of(writes)),  # type: ignore[arg-type]
            Config(),
            WorkerContext(None),
            task_group,
            ConnectionState({}),
            False,  # ssl
            ("127.0.0.1", 50000),
            ("127.0.0.1", 8080),
            send,
        )
        await protocol.handle(RawData(REQUEST))
    return writes


def answer(headers: list[tuple[bytes, bytes]], body: bytes, seen: list[int]) -> Callable[[list[bytes]], App]:
    """An app that answers `body` after its start, noting how many writes its start made."""

    def app_of(writes: list[bytes]) -> App:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            seen.append(len(writes))
            await send({"type": "http.response.body", "body": body})

        return app

    return app_of


async def test_a_sized_answer_is_one_write() -> None:
    seen: list[int] = []
    body = b"x" * 5000
    writes = await exchange(answer([(b"content-length", b"5000")], body, seen))
    assert seen == [0]  # its head waited for the body
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 ")
    assert writes[0].endswith(b"\r\n\r\n" + body)


async def test_an_answer_without_a_length_sends_its_head_at_once() -> None:
    """A stream's head is not held: its first message may come much later."""
    seen: list[int] = []
    writes = await exchange(answer([(b"content-type", b"application/connect+json")], b"message", seen))
    assert seen == [1]
    assert writes[0].startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in writes[0].lower()
    assert b"message" in b"".join(writes[1:])


async def test_an_empty_sized_answer_goes_with_its_end() -> None:
    seen: list[int] = []
    writes = await exchange(answer([(b"content-length", b"0")], b"", seen))
    assert seen == [0]
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 ") and writes[0].endswith(b"\r\n\r\n")


async def test_a_held_head_goes_out_when_the_app_ends_without_a_body() -> None:
    def app_of(writes: list[bytes]) -> App:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})

        return app

    writes = await exchange(app_of)
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 ") and writes[0].endswith(b"\r\n\r\n")
