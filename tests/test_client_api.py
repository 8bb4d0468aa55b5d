"""The API clients (jobqueue.client) at their edges: payloads, bad arguments, bad URLs,
servers that cannot be reached or do not answer, closing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from jobqueue import Backoff, EnqueueRequest, JobOptions
from jobqueue.client import Client, ServerUnreachable, SyncClient
from jobqueue.selection import JobFilter

from .harness import Harness

TEXT = "žluťoučký kůň ✓"


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so no one else takes it), not listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"


# -- payloads ------------------------------------------------------------------------------


def test_sync_client_sends_str_payloads_as_utf8(server_url: str) -> None:
    with SyncClient(server_url) as client:
        job = client.enqueue("text", TEXT)
        assert job.payload == TEXT.encode()
        assert client.get(job.id).payload == TEXT.encode()
        [first, second] = client.enqueue_many([EnqueueRequest("text", TEXT), EnqueueRequest("text", b"\xff")])  # type: ignore[arg-type]
        assert client.get(first.id).payload == TEXT.encode()
        assert client.get(second.id).payload == b"\xff"


async def test_async_client_sends_str_payloads_as_utf8(server_url: str) -> None:
    async with Client(server_url) as client:
        job = await client.enqueue("text", TEXT)
        assert (await client.get(job.id)).payload == TEXT.encode()
        [many] = await client.enqueue_many([EnqueueRequest("text", TEXT)])  # type: ignore[arg-type]
        assert (await client.get(many.id)).payload == TEXT.encode()


async def test_producer_stores_str_payloads_as_utf8(private_store: Harness) -> None:
    job = await private_store.producer.enqueue("text", TEXT)
    assert (await private_store.get(job.id)).payload == TEXT.encode()
    jobs = await private_store.producer.enqueue_many(
        [EnqueueRequest("text", TEXT), EnqueueRequest("text", b"b")]
    )  # type: ignore[arg-type]
    assert [(await private_store.get(j.id)).payload for j in jobs] == [TEXT.encode(), b"b"]


async def test_producer_refuses_other_payloads_naming_them(private_store: Harness) -> None:
    with pytest.raises(TypeError, match=r"^payload must be bytes or str, not dict$"):
        await private_store.producer.enqueue("text", {"to": "a@example.com"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^requests\[1\]\.payload must be bytes or str, not int$"):
        await private_store.producer.enqueue_many([EnqueueRequest("t"), EnqueueRequest("t", 7)])  # type: ignore[arg-type]
    assert await private_store.redis.keys(f"{private_store.settings.prefix}:*") == []


# -- arguments that cannot be sent: refused before any call ------------------------------

Call = Callable[[Any], Any]  # a SyncClient call, or with a Client a coroutine to await

INT_OR_NONE = "must be int or None, not"
BAD_CALLS = [
    pytest.param(lambda c: c.enqueue("t", 5), TypeError,
                 "payload must be bytes or str, not int", id="payload"),
    pytest.param(lambda c: c.enqueue(5), TypeError, "job_type must be str, not int", id="type"),
    pytest.param(lambda c: c.enqueue("t", b"", "soon"), TypeError,
                 f"execution_time_ms {INT_OR_NONE} str", id="str time"),
    pytest.param(lambda c: c.enqueue("t", b"", True), TypeError,
                 f"execution_time_ms {INT_OR_NONE} bool", id="bool time"),
    pytest.param(lambda c: c.enqueue("t", b"", 1.5), TypeError,
                 f"execution_time_ms {INT_OR_NONE} float", id="float"),
    pytest.param(lambda c: c.enqueue("t", b"", 2**63), ValueError,
                 "execution_time_ms is out of range", id="int64"),
    pytest.param(lambda c: c.enqueue("t", options={}), TypeError,
                 "options must be a JobOptions, not dict", id="options"),
    pytest.param(lambda c: c.enqueue("t", options=JobOptions(max_attempts=2**31)), ValueError,
                 "options.max_attempts is out of range", id="int32"),
    pytest.param(lambda c: c.enqueue("t", options=JobOptions(timeout_ms="5s")), TypeError,
                 f"options.timeout_ms {INT_OR_NONE} str", id="timeout"),
    pytest.param(lambda c: c.enqueue("t", options=JobOptions(idempotency_key=1)), TypeError,
                 "options.idempotency_key must be str, not int", id="key"),
    pytest.param(lambda c: c.enqueue("t", options=JobOptions(backoff={"base_ms": 1})), TypeError,
                 "options.backoff must be a Backoff or None, not dict", id="backoff"),
    pytest.param(lambda c: c.enqueue("t", options=JobOptions(backoff=Backoff(cap_ms=2**64))), ValueError,
                 "options.backoff.cap_ms is out of range", id="backoff cap"),
    pytest.param(lambda c: c.get(None), TypeError, "job_id must be str, not NoneType", id="get"),
    pytest.param(lambda c: c.cancel(b"id"), TypeError, "job_id must be str, not bytes", id="cancel"),
    pytest.param(lambda c: c.retry(7), TypeError, "job_id must be str, not int", id="retry"),
    pytest.param(lambda c: c.enqueue_many([EnqueueRequest("t"), ("t", b"")]), TypeError,
                 "requests[1] must be an EnqueueRequest, not tuple", id="batch"),
    pytest.param(lambda c: c.enqueue_many([EnqueueRequest("t", 3)]), TypeError,
                 "requests[0].payload must be bytes or str, not int", id="batch payload"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_sync_client_refuses_what_it_cannot_send_before_any_call(
    refusing_url: str, call: Call, error: type[Exception], message: str
) -> None:
    """Against a port that refuses connections: any attempt to call would be ServerUnreachable."""
    with SyncClient(refusing_url) as client, pytest.raises(error) as caught:
        call(client)
    assert str(caught.value).startswith(message)
    assert not isinstance(caught.value, ConnectError)


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
async def test_async_client_refuses_what_it_cannot_send_before_any_call(
    refusing_url: str, call: Call, error: type[Exception], message: str
) -> None:
    async with Client(refusing_url) as client:
        with pytest.raises(error) as caught:
            await call(client)  # the same methods, awaited
    assert str(caught.value).startswith(message)


# -- URLs and servers ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [SyncClient, Client])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8080", "URL must start with http:// or https://: 'localhost:8080'"),
        ("ftp://example.com", "URL must start with http:// or https://: 'ftp://example.com'"),
        ("http://", "URL has no host: 'http://'"),
    ],
)
def test_a_url_no_call_could_use_is_refused_when_the_client_is_made(
    make: Callable[[str], object], url: str, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        make(url)
    assert str(caught.value) == message


@pytest.mark.parametrize("make", [SyncClient, Client])
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/", "https://jobs.example.com:8443", "http://[::1]:8080"]
)
def test_http_and_https_urls_make_clients(make: Callable[[str], SyncClient | Client], url: str) -> None:
    client = make(url)
    assert client.url == url.rstrip("/")
    if isinstance(client, SyncClient):
        client.close()
    else:
        asyncio.run(client.close())


def test_an_unreachable_server_is_server_unreachable(refusing_url: str) -> None:
    with SyncClient(refusing_url) as client, pytest.raises(ServerUnreachable) as caught:
        client.get("0000aaaa-0000-4000-8000-000000000000")
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.url == refusing_url
    assert caught.value.message.startswith(f"cannot reach {refusing_url}: ")
    assert "refused" in caught.value.message.lower()


async def test_an_unreachable_server_is_server_unreachable_to_the_async_client(refusing_url: str) -> None:
    async with Client(refusing_url + "/") as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.enqueue("t", TEXT)
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.message.startswith(f"cannot reach {refusing_url}: ")


def test_a_refusal_by_the_server_is_not_server_unreachable(server_url: str) -> None:
    with SyncClient(server_url) as client, pytest.raises(ConnectError) as caught:
        client.get("nope")
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert not isinstance(caught.value, ServerUnreachable)


def test_a_server_that_does_not_answer_is_deadline_exceeded(silent_url: str) -> None:
    with SyncClient(silent_url, timeout_s=0.5) as client, pytest.raises(ConnectError) as caught:
        client.get("0000aaaa-0000-4000-8000-000000000000")
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert caught.value.message == f"no answer from {silent_url} within 0.5 s"


async def test_a_server_that_does_not_answer_is_deadline_exceeded_to_the_async_client(
    silent_url: str,
) -> None:
    async with Client(silent_url, timeout_s=0.5) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get("0000aaaa-0000-4000-8000-000000000000")
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert caught.value.message == f"no answer from {silent_url} within 0.5 s"


# -- closing ---------------------------------------------------------------------------------


def test_a_closed_sync_client_refuses_calls(server_url: str) -> None:
    client = SyncClient(server_url)
    job = client.enqueue("closing")
    client.close()
    client.close()  # twice is fine
    with pytest.raises(RuntimeError, match="the client is closed"):
        client.get(job.id)


async def test_closing_the_async_client_waits_for_its_calls(server_url: str) -> None:
    client = Client(server_url)
    calls = [asyncio.create_task(client.enqueue("closing", TEXT)) for _ in range(20)]
    await asyncio.sleep(0)  # one step of each task: their calls are handed to the client's threads
    await client.close()
    jobs = await asyncio.gather(*calls)  # none cut off by the closing
    assert len({job.id for job in jobs}) == 20
    with pytest.raises(RuntimeError, match="the client is closed"):
        await client.get(jobs[0].id)
    await client.close()


# -- compression -----------------------------------------------------------------------------


@contextlib.contextmanager
def recording_relay(target_url: str) -> Iterator[tuple[str, bytearray, bytearray]]:
    """A loopback relay to `target_url` that keeps the bytes it passes: its URL, what
    clients sent, what they received (HTTP/1.1: the headers are plain text)."""
    target = urlsplit(target_url)
    listener = socket.create_server(("127.0.0.1", 0))
    sent, received = bytearray(), bytearray()

    def pump(source: socket.socket, sink: socket.socket, kept: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                kept += data
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            upstream = socket.create_connection((target.hostname, target.port), timeout=30)
            client.settimeout(30)
            threading.Thread(target=pump, args=(client, upstream, sent), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, received), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", sent, received
    finally:
        listener.close()


@pytest.mark.parametrize("gzip", [False, True], ids=["default", "gzip"])
def test_the_client_compresses_only_when_told(server_url: str, gzip: bool) -> None:
    """By default the client neither compresses its requests nor asks for compressed
    answers (on loopback or a LAN gzip costs more than it saves); with gzip=True it
    does both, and the server answers compressed. The calls work either way."""
    job_type = f"compressed-or-not-{uuid.uuid4().hex}"  # the shared server's: a type of its own
    with recording_relay(server_url) as (url, sent, received), SyncClient(url, gzip=gzip) as client:
        job = client.enqueue(job_type, b"x" * 4000)
        assert client.get(job.id).payload == b"x" * 4000
        page = client.list_jobs(JobFilter(type=job_type), with_payloads=True)
        assert [listed.payload for listed in page.jobs] == [b"x" * 4000]
    requests, answers = bytes(sent).lower(), bytes(received).lower()
    assert requests.count(b"post /") == 3
    if gzip:
        assert requests.count(b"content-encoding: gzip") == 3
        assert requests.count(b"accept-encoding: gzip") == 3
        assert answers.count(b"content-encoding: gzip") == 3
    else:
        assert b"gzip" not in requests
        assert b"content-encoding: gzip" not in answers
        assert b"x" * 4000 in requests  # the payload as it is
