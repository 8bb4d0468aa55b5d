"""The bounds of DrainUnreadBody (server/drain.py), on a bare ASGI app: the read of
a refused body's rest must stop at its byte and time limits, and the answer must
go out either way. Its effect on real clients is in test_api_errors.py."""

from __future__ import annotations

import asyncio
from typing import Any

from jobqueue.server.drain import DrainUnreadBody

SCOPE = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/", "headers": []}
CHUNK = b"x" * 1024


async def refuse_at_once(scope: Any, receive: Any, send: Any) -> None:
    """Answers after reading one message of the body, as a size limit does."""
    await receive()
    await send({"type": "http.response.start", "status": 429, "headers": []})
    await send({"type": "http.response.body", "body": b"too big"})


async def serve(app: Any, body_chunks: int | None, scope: Any = SCOPE) -> tuple[int, list[str]]:
    """Runs `app` on a body of `body_chunks` chunks (None: the client never ends it);
    returns how many messages were received and what was sent."""
    received = 0
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if body_chunks is None and received > 3:
            await asyncio.Event().wait()  # a client that stopped sending
        more = body_chunks is None or received < body_chunks
        return {"type": "http.request", "body": CHUNK, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(f"{message['type']} after {received}")

    await app(scope, receive, send)
    return received, sent


async def test_the_rest_of_a_refused_body_is_read_before_the_answer() -> None:
    received, sent = await serve(DrainUnreadBody(refuse_at_once), body_chunks=50)
    assert received == 50
    assert sent[0] == "http.response.start after 50"  # HTTP/1.1: before the answer starts
    assert [what.split()[0] for what in sent] == ["http.response.start", "http.response.body"]


async def test_the_read_stops_past_its_byte_limit() -> None:
    app = DrainUnreadBody(refuse_at_once, max_bytes=10 * len(CHUNK))
    received, sent = await serve(app, body_chunks=1000)
    assert 10 < received < 20
    assert [what.split()[0] for what in sent] == ["http.response.start", "http.response.body"]


async def test_the_read_stops_past_its_time_limit() -> None:
    app = DrainUnreadBody(refuse_at_once, max_s=0.05)
    received, sent = await asyncio.wait_for(serve(app, body_chunks=None), 10)
    assert received == 4
    assert [what.split()[0] for what in sent] == ["http.response.start", "http.response.body"]


async def test_a_body_read_to_the_end_is_not_read_again() -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["more_body"]:
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    received, _ = await serve(DrainUnreadBody(echo), body_chunks=5)
    assert received == 5


async def test_http2_answers_a_stream_before_it_ends() -> None:
    """A streaming call answers while its client sends: over HTTP/2 the read of the
    rest waits for the message that ends the response, not for its start."""

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"first answer", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"8")]})

    h2 = {**SCOPE, "http_version": "2"}
    received, sent = await serve(DrainUnreadBody(stream), body_chunks=50, scope=h2)
    assert received == 50
    assert sent == [
        "http.response.start after 1",
        "http.response.body after 1",
        "http.response.body after 1",
        "http.response.trailers after 50",
    ]


async def test_http1_an_app_that_answers_and_reads_on_gets_the_whole_body() -> None:
    """A bidi stream over HTTP/1.1 answers its first message, then reads the next:
    the rest of the body is the app's, not the drain's, and the answer waits for
    it (the found case: reflection over Connect or gRPC-Web hung)."""

    async def bidi(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first answer", "more_body": True})
        while (await receive())["more_body"]:
            await send({"type": "http.response.body", "body": b"next", "more_body": True})
        await send({"type": "http.response.body", "body": b"end", "more_body": False})

    received, sent = await asyncio.wait_for(serve(DrainUnreadBody(bidi), body_chunks=4), 10)
    assert received == 4
    assert sent == [
        "http.response.start after 4",
        "http.response.body after 4",
        "http.response.body after 4",
        "http.response.body after 4",
        "http.response.body after 4",
    ]
