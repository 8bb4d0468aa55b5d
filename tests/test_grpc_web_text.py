"""gRPC-Web text mode (`application/grpc-web-text`, base64), the default mode of
Google's grpc-web JavaScript client (jobqueue/server/grpc_web_text.py).

With curl and frames built here (unary, errors, a server stream), with an HTTP/1.1
client that sends the body in odd chunks, and with the grpc-web client itself,
running in headless Chromium on another origin (so through CORS as well).
"""

from __future__ import annotations

import asyncio
import base64
import random
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import h11
import pytest
from playwright.async_api import BrowserContext

from jobqueue._gen.grpc.health.v1 import health_pb
from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.server.grpc_web_text import decode

from .browser import CHROMIUM, chromium, page_origin, run_in_page
from .conftest import ROOT, jobqueue_server
from .harness import Harness
from .test_api import SERVICE, HttpReply, curl, run, tool
from .test_streams import SERVERS, frames, trailer_fields

GRPC_WEB_JS = ROOT / "tests" / "grpc_web" / "node_modules" / "grpc-web" / "index.js"
TEXT = "application/grpc-web-text"
CHECK = "grpc.health.v1.Health/Check"
WATCH = "grpc.health.v1.Health/Watch"
SERVING = health_pb.HealthCheckResponse(status=health_pb.HealthCheckResponse.ServingStatus.SERVING)


def frame(message: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(message)) + message


def from_text(text: bytes) -> bytes:
    """Base64 that may be padded between chunks: each 4-character group decodes alone."""
    text = text.strip()
    return b"".join(base64.b64decode(text[i : i + 4]) for i in range(0, len(text), 4))


@pytest.fixture(scope="module")
def page() -> Iterator[str]:
    """The origin of the grpc-web page (empty where the grpc-web package is missing)."""
    if not GRPC_WEB_JS.exists():
        yield ""
        return
    files = {
        "/grpc-web.html": ("text/html; charset=utf-8", PAGE),
        "/grpc-web.js": ("text/javascript", GRPC_WEB_JS.read_bytes()),
    }
    with page_origin(files) as origin:
        yield origin


@pytest.fixture(scope="module", params=SERVERS)
def web_server(
    request: pytest.FixtureRequest, redis_url: str, page: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp(f"grpc-web-{request.param}") / "server.log"
    with jobqueue_server(redis_url, log, server=request.param, JOBQUEUE_CORS_ORIGINS=page or "*") as url:
        yield url


async def call_text(url: str, method: str, body: bytes, *extra: str) -> HttpReply:
    return await curl(
        "--http1.1", "-H", f"Content-Type: {TEXT}", "-H", "X-Grpc-Web: 1", *extra,
        "--data-binary", "@-", f"{url}/{method}", stdin=body,
    )  # fmt: skip


# -- curl and hand-built frames ------------------------------------------------------


async def test_unary(web_server: str, store: Harness) -> None:
    reply = await call_text(web_server, CHECK, base64.b64encode(frame(b"")))
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == f"{TEXT}+proto"
    (data_flags, data), (trailer_flags, trailers) = frames(from_text(reply.body.encode()))
    assert (data_flags, health_pb.HealthCheckResponse.from_binary(data)) == (0, SERVING)
    assert trailer_flags == 0x80 and trailer_fields(trailers)["grpc-status"] == "0"

    payload = random.Random(7).randbytes(5000)  # binary, several base64 groups' worth
    request = pb.EnqueueJobRequest(type="text-mode", payload=payload).to_binary()
    reply = await call_text(web_server, f"{SERVICE}/EnqueueJob", base64.b64encode(frame(request)))
    job = pb.EnqueueJobResponse.from_binary(frames(from_text(reply.body.encode()))[0][1]).job
    assert (await store.get(job.id)).payload == payload


async def test_errors(web_server: str) -> None:
    unknown = await call_text(
        web_server,
        CHECK,
        base64.b64encode(frame(health_pb.HealthCheckRequest(service="no.Such").to_binary())),
    )
    assert unknown.status == 200, unknown
    (flags, trailers), *_ = frames(from_text(unknown.body.encode()))
    assert flags == 0x80 and trailer_fields(trailers)["grpc-status"] == "5", unknown  # NOT_FOUND
    not_base64 = await call_text(web_server, CHECK, b"AAAA!AAA")
    (flags, trailers), *_ = frames(from_text(not_base64.body.encode()))
    fields = trailer_fields(trailers)
    assert fields["grpc-status"] == "3" and "base64" in fields["grpc-message"], fields  # INVALID_ARGUMENT


async def test_server_stream(web_server: str) -> None:
    """A Watch: each status reaches the client as soon as it is written, base64 on its own."""
    body = base64.b64encode(frame(health_pb.HealthCheckRequest(service="").to_binary()))
    ran = await run(
        tool("curl"), "-sS", "-N", "--http1.1", "--max-time", "2", "-H", f"Content-Type: {TEXT}",
        "--data-binary", "@-", f"{web_server}/{WATCH}", stdin=body,
    )  # fmt: skip
    assert ran.code == 28, ran  # still open at curl's deadline
    statuses = [
        health_pb.HealthCheckResponse.from_binary(data) for _, data in frames(from_text(ran.out.encode()))
    ]
    assert statuses and all(status == SERVING for status in statuses), ran.out


async def test_binary_request_with_a_text_answer(web_server: str) -> None:
    """The protocol lets a client ask for a text answer with Accept alone."""
    reply = await curl(
        "-H", "Content-Type: application/grpc-web+proto", "-H", f"Accept: {TEXT}", "--data-binary", "@-",
        f"{web_server}/{CHECK}", stdin=frame(b""),
    )  # fmt: skip
    assert reply.headers["content-type"] == f"{TEXT}+proto"
    assert frames(from_text(reply.body.encode()))[0] == (0, SERVING.to_binary())


async def test_odd_chunks_and_padding_inside_the_body(web_server: str, store: Harness) -> None:
    """The request arrives in chunks that split base64 groups, and is padded in the middle
    (two segments encoded on their own), as a client that flushes as it goes sends it."""
    whole = frame(pb.EnqueueJobRequest(type="chunks", payload=b"odd sizes").to_binary())
    text = base64.b64encode(whole[:7]) + base64.b64encode(whole[7:])
    assert b"=" in text[:-4]
    pieces = [text[i : i + n] for i, n in _cuts(len(text), random.Random(3))]
    reply = await _post_chunked(web_server, f"/{SERVICE}/EnqueueJob", {"content-type": TEXT}, pieces)
    job = pb.EnqueueJobResponse.from_binary(frames(from_text(reply))[0][1]).job
    assert (await store.get(job.id)).payload == b"odd sizes"


def _cuts(length: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    start = 0
    while start < length:
        size = rng.randint(1, 5)
        yield start, size
        start += size


async def _post_chunked(url: str, path: str, headers: dict[str, str], pieces: list[bytes]) -> bytes:
    """An HTTP/1.1 POST whose body goes out as one chunk per piece; the answer's body."""
    address = urlparse(url)
    assert address.hostname is not None and address.port is not None
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    connection = h11.Connection(h11.CLIENT)
    try:
        request = h11.Request(
            method="POST",
            target=path,
            headers=[("host", address.netloc), ("transfer-encoding", "chunked"), *headers.items()],
        )
        writer.write(connection.send(request) or b"")
        for piece in pieces:
            writer.write(connection.send(h11.Data(data=piece)) or b"")
            await writer.drain()
        writer.write(connection.send(h11.EndOfMessage()) or b"")
        body = b""
        async with asyncio.timeout(20):
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    assert event.status_code == 200, event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return body
    finally:
        writer.close()


def test_decode() -> None:
    """Whole groups, padded at the end, between segments, or not at all."""
    data = random.Random(5).randbytes(100)
    for cut in range(len(data) + 1):
        assert decode(base64.b64encode(data[:cut]) + base64.b64encode(data[cut:])) == data


# -- Google's grpc-web client, in Chromium -------------------------------------------------

# The client's generated code would need protoc's grpc-web plugin; a MethodDescriptor
# with messages that carry their encoded bytes does what generated classes do.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>jobqueue grpc-web</title>
<script>var exports = {};</script>
<script src="/grpc-web.js"></script>
</head><body><script>
const web = exports;  // grpc-web's names are globals of that script as well
class Raw {
  constructor(bytes) { this.bytes = bytes; }
  serializeBinary() { return this.bytes; }
  static deserializeBinary(bytes) { return new Raw(bytes); }
}
const fromHex = (hex) => new Uint8Array((hex.match(/../g) || []).map((byte) => parseInt(byte, 16)));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const client = new web.GrpcWebClientBase({format: "text"});  // the client's default mode
const descriptor = (method, type) =>
  new web.MethodDescriptor("/" + method, type, Raw, Raw, (r) => r.serializeBinary(), Raw.deserializeBinary);

window.unary = ([api, method, hex]) => new Promise((resolve) => {
  const done = (error, response) =>
    resolve(error ? {code: error.code, message: error.message} : {data: toHex(response.bytes)});
  const unaryMethod = descriptor(method, web.MethodType.UNARY);
  client.rpcCall(api + "/" + method, new Raw(fromHex(hex)), {}, unaryMethod, done);
});
// The first `wanted` messages of a server stream, then cancels it.
window.stream = ([api, method, hex, wanted]) => new Promise((resolve) => {
  const data = [];
  const stream = client.serverStreaming(api + "/" + method, new Raw(fromHex(hex)), {},
    descriptor(method, web.MethodType.SERVER_STREAMING));
  stream.on("data", (response) => {
    data.push(toHex(response.bytes));
    if (data.length >= wanted) { stream.cancel(); resolve({data}); }
  });
  stream.on("error", (error) => resolve({code: error.code, message: error.message, data}));
});
</script></body></html>
"""


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    if CHROMIUM is None:
        pytest.skip("no chromium binary (Debian: apt install chromium; .ci/run installs it)")
    if not GRPC_WEB_JS.exists():
        pytest.skip("the grpc-web npm package is not installed (npm ci in tests/grpc_web; test.sh does it)")
    async with chromium(tmp_path / "profile") as context:
        yield context


async def test_grpc_web_client(browser: BrowserContext, page: str, web_server: str) -> None:
    url = f"{page}/grpc-web.html"

    async def call(kind: str, method: str, request: Any, *more: Any) -> Any:
        return await run_in_page(
            browser, url, f"window.{kind}", web_server, method, request.to_binary().hex(), *more
        )

    checked = await call("unary", CHECK, health_pb.HealthCheckRequest())
    assert health_pb.HealthCheckResponse.from_binary(bytes.fromhex(checked["data"])) == SERVING, checked
    unknown = await call("unary", CHECK, health_pb.HealthCheckRequest(service="no.Such"))
    assert unknown["code"] == 5, unknown  # NOT_FOUND
    payload = bytes(range(256))
    enqueued = await call(
        "unary", f"{SERVICE}/EnqueueJob", pb.EnqueueJobRequest(type="grpc-web", payload=payload)
    )
    assert pb.EnqueueJobResponse.from_binary(bytes.fromhex(enqueued["data"])).job.payload == payload
    # A server stream, read as it arrives (the browser's XHR, in text mode): the first
    # status, then its repetition on this HTTP/1.1 connection while nothing changes.
    watched = await call("stream", WATCH, health_pb.HealthCheckRequest(), 2)
    statuses = [health_pb.HealthCheckResponse.from_binary(bytes.fromhex(data)) for data in watched["data"]]
    assert statuses == [SERVING, SERVING], watched
    unknown_watch = await call("stream", WATCH, health_pb.HealthCheckRequest(service="no.Such"), 1)
    assert [bytes.fromhex(d) for d in unknown_watch["data"]] == [
        health_pb.HealthCheckResponse(
            status=health_pb.HealthCheckResponse.ServingStatus.SERVICE_UNKNOWN
        ).to_binary()
    ], unknown_watch
