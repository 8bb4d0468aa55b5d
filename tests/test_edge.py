"""Hostile input never takes the server down: each bound at the edge, proved
against a real `jobqueue server` under Hypercorn and under h2corn (conftest's
edge_server), with raw HTTP/1.1 and HTTP/2 clients that send what no
well-behaved client would. After each test the server must be alive, healthy,
and its log free of errors.

The decoding bounds themselves are in server/limits.py (unit tests:
test_limits.py); the slow-client bounds in server/slow.py; the HTTP servers'
in server/main.py and server/hypercorn_guard.py. Hypothesis-generated input: test_fuzz_edge.py.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import http.client
import os
import random
import socket
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import h2.settings
import hpack
import pyqwest
import pytest
from connectrpc.codec import proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from jobqueue.server.grpc_trailers import NO_TE, NO_TRAILERS
from jobqueue.server.limits import MAX_JSON_DEPTH, MAX_STREAM_MESSAGES

from .conftest import EdgeServer, jobqueue_server_process
from .edge import (
    H2,
    HEALTH,
    REFLECTION,
    SERVICE,
    LogWatch,
    Outcome,
    as_headers,
    connect_stream_outcome,
    connect_unary_outcome,
    envelope,
    grpc_outcome,
    grpc_web_outcome,
    gzipped,
    h1,
    h2_request,
    has_message,
    health_latency,
    host_port,
    rss_bytes,
)

MiB = 1 << 20
NESTING = f"JSON nesting: arrays and objects nested deeper than {MAX_JSON_DEPTH} levels"


@pytest.fixture
def server(edge_server: EdgeServer) -> Iterator[EdgeServer]:
    """The edge server; after the test it must still run, answer health quickly
    and have logged no error."""
    watch = LogWatch(edge_server.log)
    yield edge_server
    assert_alive(edge_server)
    assert health_latency(edge_server.url) < 0.5
    watch.assert_quiet()


def assert_alive(server: EdgeServer) -> None:
    os.kill(server.pid, 0)  # raises if the process is gone
    log = server.log.read_text(errors="replace")
    assert "exited unexpectedly" not in log, log[-2000:]


def nested(depth: int, field: str = "type") -> bytes:
    inner = depth - 1
    return b'{"' + field.encode() + b'": ' + b"[" * inner + b"]" * inner + b"}"


# -- JSON nesting: the crash of issue 13, on every JSON route --------------------------------

CRASH_DEPTH = 14_000  # killed the server before (SIGSEGV in protobuf-py's JSON decoder)


def json_routes(body: bytes) -> dict[str, Callable[[str], Outcome]]:
    """The same JSON message sent by every protocol that takes JSON."""
    json_type = as_headers([("content-type", "application/json")])
    return {
        "connect-unary": lambda url: connect_unary_outcome(
            h1(url, "POST", f"/{SERVICE}/EnqueueJob", json_type, body)
        ),
        "connect-unary-h2": lambda url: connect_unary_outcome(
            h2_request(url, "POST", f"/{SERVICE}/EnqueueJob", json_type, body)
        ),
        "connect-unary-gzip": lambda url: connect_unary_outcome(
            h1(
                url,
                "POST",
                f"/{SERVICE}/EnqueueJob",
                [*json_type, (b"content-encoding", b"gzip")],
                gzipped(body),
            )
        ),
        "connect-stream": lambda url: connect_stream_outcome(
            h1(
                url,
                "POST",
                f"/{HEALTH}/Watch",
                as_headers([("content-type", "application/connect+json")]),
                envelope(body),
                enough=has_message,
            )
        ),
        "grpc-json": lambda url: grpc_outcome(
            h2_request(
                url,
                "POST",
                f"/{SERVICE}/EnqueueJob",
                as_headers([("content-type", "application/grpc+json"), ("te", "trailers")]),
                envelope(body),
            )
        ),
        "grpc-json-reflection": lambda url: grpc_outcome(
            h2_request(
                url,
                "POST",
                f"/{REFLECTION}/ServerReflectionInfo",
                as_headers([("content-type", "application/grpc+json"), ("te", "trailers")]),
                envelope(body),
            )
        ),
        "grpc-web-json": lambda url: grpc_web_outcome(
            h1(
                url,
                "POST",
                f"/{SERVICE}/EnqueueJob",
                as_headers([("content-type", "application/grpc-web+json"), ("x-grpc-web", "1")]),
                envelope(body),
            )
        ),
    }


@pytest.mark.parametrize("route", list(json_routes(b"")))
def test_deep_json_is_refused_on_every_route(server: EdgeServer, route: str) -> None:
    outcome = json_routes(nested(CRASH_DEPTH))[route](server.url)
    assert (outcome.code, outcome.message) == ("invalid_argument", NESTING)


def test_deep_json_in_a_get_request(server: EdgeServer) -> None:
    message = base64.urlsafe_b64encode(nested(1000, "id")).decode().rstrip("=")
    query = urllib.parse.urlencode({"connect": "v1", "encoding": "json", "base64": "1", "message": message})
    outcome = connect_unary_outcome(h1(server.url, "GET", f"/{SERVICE}/GetJob?{query}", []))
    assert (outcome.code, outcome.message) == ("invalid_argument", NESTING)


def test_json_at_the_limit_reaches_the_handler(server: EdgeServer) -> None:
    """64 levels are decoded (and refused for their content, not their depth)."""
    reply = h1(
        server.url,
        "POST",
        f"/{SERVICE}/EnqueueJob",
        as_headers([("content-type", "application/json")]),
        nested(MAX_JSON_DEPTH),
    )
    outcome = connect_unary_outcome(reply)
    assert outcome.code == "invalid_argument"
    assert outcome.message.startswith("unmarshal message: expected string got: array")


# -- decompressed size: a small gzip body that inflates far past the limit -------------------

BOMB = gzipped(b"\0" * (256 * MiB))  # a few hundred KB on the wire


def bomb_routes() -> dict[str, Callable[[str], Outcome]]:
    proto = as_headers([("content-type", "application/proto"), ("content-encoding", "gzip")])
    small = base64.urlsafe_b64encode(gzipped(b"\0" * (8 * MiB))).decode().rstrip("=")
    query = urllib.parse.urlencode(
        {"connect": "v1", "encoding": "proto", "base64": "1", "compression": "gzip", "message": small}
    )
    grpc_gzip = as_headers(
        [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-encoding", "gzip")]
    )
    return {
        "connect-unary": lambda url: connect_unary_outcome(
            h1(url, "POST", f"/{SERVICE}/EnqueueJob", proto, BOMB)
        ),
        "connect-get": lambda url: connect_unary_outcome(h1(url, "GET", f"/{SERVICE}/GetJob?{query}", [])),
        "connect-stream": lambda url: connect_stream_outcome(
            h1(
                url,
                "POST",
                f"/{HEALTH}/Watch",
                as_headers(
                    [("content-type", "application/connect+proto"), ("connect-content-encoding", "gzip")]
                ),
                envelope(BOMB, flags=1),
                enough=has_message,
            )
        ),
        "grpc": lambda url: grpc_outcome(
            h2_request(url, "POST", f"/{SERVICE}/EnqueueJob", grpc_gzip, envelope(BOMB, flags=1))
        ),
        "grpc-web": lambda url: grpc_web_outcome(
            h1(
                url,
                "POST",
                f"/{SERVICE}/EnqueueJob",
                as_headers([("content-type", "application/grpc-web+proto"), ("grpc-encoding", "gzip")]),
                envelope(BOMB, flags=1),
            )
        ),
    }


@pytest.mark.parametrize("route", list(bomb_routes()))
def test_gzip_bomb_is_refused_without_inflating_it(server: EdgeServer, route: str) -> None:
    """connectrpc inflates at most read_max_bytes + 1 (zlib's max_length), then
    answers resource_exhausted, with a message that names the limit (server/refusals.py;
    a Connect stream's end message keeps connectrpc's, with health's 64 KiB): the
    server's memory must not grow by the bomb's inflated size, nor anywhere near it."""
    before = rss_bytes(server.pid)
    outcome = bomb_routes()[route](server.url)
    assert outcome.code == "resource_exhausted", outcome
    expected = {
        "connect-get": "request: over the limit of ",
        "connect-stream": "message is larger than configured max 65536",
    }.get(route, f"payload: over the limit of {MiB} bytes (JOBQUEUE_MAX_PAYLOAD_BYTES)")
    assert outcome.message.startswith(expected), outcome
    assert rss_bytes(server.pid) - before < 64 * MiB


# -- headers, messages per stream, streams per connection ------------------------------------


def test_huge_headers_http1(server: EdgeServer) -> None:
    reply = h1(server.url, "POST", f"/{HEALTH}/Check", as_headers([("x-junk", "a" * (256 * 1024))]), b"{}")
    assert reply.status in (400, 431) or (reply.status is None and reply.closed), reply


def test_many_headers_http1(server: EdgeServer) -> None:
    headers = as_headers([(f"x-junk-{i}", "a" * 100) for i in range(2000)])
    reply = h1(server.url, "POST", f"/{HEALTH}/Check", headers, b"{}")
    assert reply.status in (400, 431) or (reply.status is None and reply.closed), reply


def test_huge_headers_http2(server: EdgeServer) -> None:
    headers = as_headers([(f"x-junk-{i}", "a" * 1000) for i in range(200)])
    reply = h2_request(server.url, "POST", f"/{HEALTH}/Check", headers, b"{}")
    assert reply.status == 431 or reply.reset is not None or reply.goaway is not None or reply.closed, reply


def grpc_headers(content_type: str = "application/grpc") -> list[tuple[bytes, bytes]]:
    return as_headers([("content-type", content_type), ("te", "trailers")])


def test_a_unary_call_takes_one_message(server: EdgeServer) -> None:
    message = pb.GetJobRequest(id="00000000-0000-4000-8000-000000000000").to_binary()
    reply = h2_request(server.url, "POST", f"/{SERVICE}/GetJob", grpc_headers(), envelope(message) * 3)
    assert grpc_outcome(reply) == Outcome("unimplemented", "unary request has multiple messages")


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("ListJobs", b'{"pageSize": 1}', 200),
        ("GetJob", b'{"id": "00000000-0000-4000-8000-000000000000"}', 404),  # an error's answer
    ],
)
def test_a_connect_unary_answer_has_its_length_over_http1(
    server: EdgeServer, method: str, body: bytes, status: int
) -> None:
    """Sent with its content-length, not chunked: a write less per call (edge.py)."""
    connection = http.client.HTTPConnection(*host_port(server.url), timeout=20)
    try:
        connection.request("POST", f"/{SERVICE}/{method}", body, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        answer = reply.read()
    finally:
        connection.close()
    assert reply.status == status, answer
    assert not reply.chunked
    lengths = [value for name, value in reply.getheaders() if name.lower() == "content-length"]
    assert lengths == [str(len(answer))], reply.getheaders()


def test_a_reflection_stream_takes_a_bounded_number_of_messages(server: EdgeServer) -> None:
    request = envelope(b'{"listServices": ""}')
    headers = grpc_headers("application/grpc+json")
    reply = h2_request(
        server.url,
        "POST",
        f"/{REFLECTION}/ServerReflectionInfo",
        headers,
        request * (MAX_STREAM_MESSAGES + 5),
    )
    assert grpc_outcome(reply) == Outcome(
        "resource_exhausted", f"more than {MAX_STREAM_MESSAGES} messages in one stream", MAX_STREAM_MESSAGES
    )
    within = h2_request(server.url, "POST", f"/{REFLECTION}/ServerReflectionInfo", headers, request * 10)
    assert grpc_outcome(within) == Outcome("ok", "", 10)


def test_grpc_without_trailers(server: EdgeServer) -> None:
    """gRPC over HTTP/1.1 (Hypercorn has no trailers there) and gRPC without
    `te: trailers` get a status that arrives (in the headers), never `unknown`."""
    message = envelope(pb.GetJobRequest(id="00000000-0000-4000-8000-000000000000").to_binary())
    over_http1 = grpc_outcome(h1(server.url, "POST", f"/{SERVICE}/GetJob", grpc_headers(), message))
    if server.kind == "hypercorn":
        assert over_http1 == Outcome("unimplemented", NO_TRAILERS)
    else:  # h2corn sends trailers over HTTP/1.1 too
        assert over_http1.code == "not_found", over_http1
    no_te = as_headers([("content-type", "application/grpc")])
    for reply in (
        h2_request(server.url, "POST", f"/{SERVICE}/GetJob", no_te, message),
        h1(server.url, "POST", f"/{SERVICE}/GetJob", no_te, message),
    ):
        assert grpc_outcome(reply) in (
            Outcome("invalid_argument", NO_TE),
            Outcome("unimplemented", NO_TRAILERS),
        )


@pytest.mark.parametrize("transport", ["h1", "h2"])
def test_unknown_method_is_not_found(server: EdgeServer, transport: str) -> None:
    """Under h2corn, whose scope has no root_path, connectrpc answered `unknown`."""
    send = h1 if transport == "h1" else h2_request
    reply = send(
        server.url,
        "POST",
        f"/{SERVICE}/NoSuchMethod",
        as_headers([("content-type", "application/json")]),
        b"{}",
    )
    assert reply.status == 404, reply


def test_closed_connections_are_released(server: EdgeServer) -> None:
    """A client that opens and closes connections: each must be freed when it
    closes, not held for the keep-alive timeout (Hypercorn held each one's tasks
    and buffers that long, so the server grew with the rate of new connections)."""
    headers = as_headers([("content-type", "application/json")])
    for _ in range(200):
        h1(server.url, "POST", f"/{HEALTH}/Check", headers, b"{}")
    before = rss_bytes(server.pid)
    for _ in range(3000):
        h1(server.url, "POST", f"/{HEALTH}/Check", headers, b"{}")
    assert rss_bytes(server.pid) - before < 8 * MiB


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 1, 3, 4, 7, 9
END_STREAM, END_HEADERS = 0x1, 0x4


class RawH2:
    """A client that writes HTTP/2 frames as they are, past any rule a real client keeps."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sock = socket.create_connection(host_port(url), timeout=20)
        self.encoder = hpack.Encoder()
        self.buffer = b""
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(SETTINGS, 0, 0))

    def headers(self, stream_id: int, path: str, *, end_stream: bool, end_headers: bool = True) -> bytes:
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":path", path),
                (":scheme", "http"),
                (":authority", self.url.removeprefix("http://")),
                ("content-type", "application/json"),
            ]
        )
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return raw_frame(HEADERS, flags, stream_id, block)

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def frames(self, timeout: float) -> Iterator[tuple[int, int, int, bytes]]:
        """Frames from the server (kind, flags, stream, payload) until it closes or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
                yield kind, flags, stream_id, payload
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return
            except OSError:
                data = b""
            if not data:
                return
            self.buffer += data

    def close(self) -> None:
        self.sock.close()


def test_streams_per_connection_are_bounded(server: EdgeServer) -> None:
    """100 streams may be open at once (SETTINGS_MAX_CONCURRENT_STREAMS); the
    101st is refused, or the connection closed, before any app call starts for it."""
    client = RawH2(server.url)
    try:
        opened = b"".join(
            client.headers(1 + 2 * i, f"/{SERVICE}/EnqueueJob", end_stream=False) for i in range(101)
        )
        client.send(opened)
        over = 1 + 2 * 100
        refused = False
        for kind, _, stream_id, payload in client.frames(timeout=10):
            if kind == RST_STREAM and stream_id == over:
                refused = True
                break
            if kind == GOAWAY:
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                assert last < over, last
                refused = True
                break
        assert refused
    finally:
        client.close()


def rapid_resets(url: str, streams: int) -> tuple[int, int | None]:
    """Opens and at once resets `streams` streams (CVE-2023-44487); returns how
    many were sent before the server closed the connection, and its GOAWAY code."""
    client = RawH2(url)
    sent, goaway = 0, None
    try:
        batch = 200
        while sent < streams:
            data = b"".join(
                client.headers(1 + 2 * (sent + i), f"/{HEALTH}/Check", end_stream=True)
                + raw_frame(RST_STREAM, 0, 1 + 2 * (sent + i), struct.pack(">I", 8))  # CANCEL
                for i in range(batch)
            )
            if not client.send(data):
                break
            sent += batch
            for kind, _, _, payload in client.frames(timeout=0.01):
                if kind == GOAWAY:
                    goaway = int.from_bytes(payload[4:8], "big")
            if goaway is not None:
                break
        if goaway is None:
            for kind, _, _, payload in client.frames(timeout=5):
                if kind == GOAWAY:
                    goaway = int.from_bytes(payload[4:8], "big")
                    break
    finally:
        client.close()
    return sent, goaway


def test_rapid_reset_is_stopped(server: EdgeServer) -> None:
    before = rss_bytes(server.pid)
    sent, goaway = rapid_resets(server.url, 50_000)
    assert goaway is not None, f"no GOAWAY after {sent} reset streams"
    assert sent < 20_000
    # Hypercorn: ENHANCE_YOUR_CALM; h2corn answers its own way.
    if server.kind == "hypercorn":
        assert goaway == 0xB
    assert rss_bytes(server.pid) - before < 64 * MiB


def test_continuation_flood_is_cut_off(server: EdgeServer) -> None:
    """A header block that never ends (HEADERS, then CONTINUATION frames) is cut
    off at the header size limit, not buffered without end."""
    client = RawH2(server.url)
    try:
        client.send(client.headers(1, f"/{HEALTH}/Check", end_stream=True, end_headers=False))
        junk = client.encoder.encode([("x-junk", "a" * 16_000)])
        sent = 0
        while sent < 64 * MiB and client.send(raw_frame(CONTINUATION, 0, 1, junk)):
            sent += len(junk)
        kinds = [kind for kind, *_ in client.frames(timeout=10)]
    finally:
        client.close()
    assert sent < 64 * MiB or GOAWAY in kinds


# -- slow clients: a server of short timeouts ----------------------------------------------

SHORT = {
    "JOBQUEUE_IDLE_TIMEOUT_S": "2",
    "JOBQUEUE_BODY_IDLE_TIMEOUT_S": "1",
    "JOBQUEUE_BODY_TIMEOUT_S": "3",
    "JOBQUEUE_SEND_TIMEOUT_S": "2",
}
# Past a timeout: the server's own slack (Hypercorn reads a refused body's rest
# for up to 5 s before answering over HTTP/1.1: drain.py) and a loaded machine's.
SLACK_S = 10.0


@pytest.fixture(scope="module", params=["hypercorn", "h2corn"])
def short_server(
    request: pytest.FixtureRequest, edge_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeServer]:
    kind: str = request.param
    log = tmp_path_factory.mktemp(f"short-{kind}") / "server.log"
    with jobqueue_server_process(edge_redis, log, server=kind, JOBQUEUE_PREFIX="short", **SHORT) as (url, p):
        server = EdgeServer(kind, url, p.pid, log, edge_redis, "short")
        watch = LogWatch(log)
        yield server
        assert_alive(server)
        watch.assert_quiet()


def closed_within(sock: socket.socket, limit_s: float, trickle: bytes = b"", trickle_s: float = 1e9) -> float:
    """Sends `trickle` a byte at a time (every 0.2 s, for at most `trickle_s`)
    until the server closes the connection; returns how long that took. Fails
    after `limit_s`."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < limit_s:
        sock.settimeout(0.2)
        try:
            if not sock.recv(1 << 16):
                return time.monotonic() - start
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - start
        if sent < len(trickle) and time.monotonic() - start < trickle_s:
            try:
                sock.sendall(trickle[sent : sent + 1])
            except OSError:
                return time.monotonic() - start
            sent += 1
    raise AssertionError(f"the connection was still open after {limit_s} s")


def slowloris_head_is_cut_off(short_server: EdgeServer) -> None:
    """A request head sent a byte at a time, never finished. Hypercorn's timer
    runs from the connection's start (or its last answer), so it cuts a trickle
    off; h2corn's is an idle timer, reset by every byte: it cuts off a head that
    pauses, while a steady trickle is bounded only by the head's size limit
    (test_slowloris_head_is_bounded_in_size)."""
    trickle_s = 1e9 if short_server.kind == "hypercorn" else 1.0
    with socket.create_connection(host_port(short_server.url)) as sock:
        sock.sendall(f"POST /{HEALTH}/Check HTTP/1.1\r\nHost: x\r\n".encode())
        took = closed_within(sock, 2 + SLACK_S, trickle=b"X-Slow: " + b"a" * 10_000, trickle_s=trickle_s)
    assert took >= 1.5  # not closed before the timeout


def slowloris_head_is_bounded_in_size(short_server: EdgeServer) -> None:
    """A head that keeps coming is refused at the size limit: past 64 KiB the server
    answers 400/431 or closes, without waiting for more (however long it takes to
    read what was sent: no race with the server's scheduling)."""
    with socket.create_connection(host_port(short_server.url)) as sock:
        sock.sendall(f"POST /{HEALTH}/Check HTTP/1.1\r\nHost: x\r\n".encode())
        with contextlib.suppress(OSError):  # the server may refuse while lines are still going
            for i in range(70):  # about 70 KB of header lines, the head never ending
                sock.sendall(b"X-Slow-%d: " % i + b"a" * 1000 + b"\r\n")
        sock.settimeout(10)
        try:
            answer = sock.recv(1 << 16)
        except ConnectionResetError:
            answer = b""  # closed: refused too
        except TimeoutError:
            pytest.fail("the server waited for more of a head past its size limit")
    assert answer.split(b" ")[1] in (b"400", b"431") if answer else True


def slowloris_idle_connection_is_closed(short_server: EdgeServer) -> None:
    with socket.create_connection(host_port(short_server.url)) as sock:
        took = closed_within(sock, 2 + SLACK_S)
    assert took >= 1.5


def slowloris_body_is_cut_off(short_server: EdgeServer, trickle: bool) -> None:
    """A body that stops (past the 1 s pause limit), or comes a byte every 0.2 s
    (past the 3 s limit of the whole): the call ends with deadline_exceeded.
    Hypercorn then closes the connection; h2corn reads on (and drops) what the
    client still sends of the body it declared, until the client stops."""
    with socket.create_connection(host_port(short_server.url)) as sock:
        head = f"POST /{SERVICE}/EnqueueJob HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(head.encode() + b"Content-Length: 100000\r\n\r\n{")
        start = time.monotonic()
        answer, closed = b"", False
        while b"\r\n\r\n" not in answer and not closed and time.monotonic() - start < 3 + SLACK_S:
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                data = sock.recv(1 << 16)
                answer += data
                closed = not data
            if trickle and not closed:
                sock.sendall(b" ")
        took = time.monotonic() - start
        if short_server.kind == "hypercorn" and not closed:
            closed_within(sock, SLACK_S)
    if closed and not answer:
        # h2corn's own timer (the same 1 s pause) may close first, with no answer.
        assert short_server.kind == "h2corn" and not trickle
    else:
        assert answer.startswith(b"HTTP/1.1 504"), answer
    assert (0.8 if not trickle else 2.5) <= took < 3 + SLACK_S


def slowloris_grpc_body_is_cut_off(short_server: EdgeServer) -> None:
    """Over HTTP/2 with gRPC, which h2corn exempts from its own body timeouts:
    the call ends with deadline_exceeded within the app's bound."""
    with H2(short_server.url, timeout=3 + SLACK_S) as client:
        start = time.monotonic()
        reply = client.request("POST", f"/{SERVICE}/EnqueueJob", grpc_headers(), [b"\0\0\0"], end=False)
        took = time.monotonic() - start
    assert grpc_outcome(reply).code == "deadline_exceeded", reply
    assert grpc_outcome(reply).message == "request body: no data for 1 s"
    assert 0.8 <= took < 1 + SLACK_S


def a_reader_that_stalls_is_dropped(short_server: EdgeServer) -> None:
    """A client that never opens its HTTP/2 window: the response is abandoned
    after the send timeout, quietly, and the server goes on serving."""
    payload = base64.b64encode(random.Random(3).randbytes(300_000)).decode()
    created = h1(
        short_server.url,
        "POST",
        f"/{SERVICE}/EnqueueJob",
        as_headers([("content-type", "application/json")]),
        f'{{"type": "stall", "payload": "{payload}"}}'.encode(),
    )
    job_id = created.json()["job"]["id"]
    window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100}
    with H2(short_server.url, timeout=2 + SLACK_S, settings=window, ack=False) as client:
        reply = client.request(
            "POST",
            f"/{SERVICE}/GetJob",
            as_headers([("content-type", "application/json")]),
            f'{{"id": "{job_id}"}}'.encode(),
        )
    assert reply.status == 200 and len(reply.body) < 1000  # what the window let through
    assert health_latency(short_server.url) < 0.5


SLOW_CLIENTS: dict[str, Callable[[EdgeServer], None]] = {
    "head trickled": slowloris_head_is_cut_off,
    "head too large": slowloris_head_is_bounded_in_size,
    "idle connection": slowloris_idle_connection_is_closed,
    "body stalled": lambda server: slowloris_body_is_cut_off(server, trickle=False),
    "body trickled": lambda server: slowloris_body_is_cut_off(server, trickle=True),
    "gRPC body stalled": slowloris_grpc_body_is_cut_off,
    "reader stalled": a_reader_that_stalls_is_dropped,
}


def test_slow_clients_are_cut_off(short_server: EdgeServer) -> None:
    """Every slow client above at once (each waits out a timer of the server)."""
    with concurrent.futures.ThreadPoolExecutor(len(SLOW_CLIENTS)) as pool:
        running = {name: pool.submit(scenario, short_server) for name, scenario in SLOW_CLIENTS.items()}
        failures = {}
        for name, future in running.items():
            try:
                future.result(timeout=60)
            except Exception as exc:  # noqa: BLE001 - reported below, each by name
                failures[name] = f"{type(exc).__name__}: {exc}"
    assert not failures, failures
    assert health_latency(short_server.url) < 0.5


# -- a client's deadline or disconnect is not an error of the server's ------------------------


async def tiny_deadline_calls(url: str, calls: int) -> dict[str, int]:
    """connectrpc clients in every protocol, with deadlines of 1-8 ms."""
    seen: dict[str, int] = {}
    h1v, h2v = pyqwest.HTTPVersion.HTTP1, pyqwest.HTTPVersion.HTTP2
    kinds = [
        (ProtocolType.CONNECT, h1v, None),
        (ProtocolType.CONNECT, h2v, proto_json_codec()),
        (ProtocolType.GRPC, h2v, None),
        (ProtocolType.GRPC_WEB, h1v, None),
    ]
    rng = random.Random(13)
    for kind, version, codec in kinds:
        async with pyqwest.HTTPTransport(http_version=version) as transport:
            for _ in range(calls):
                client = JobServiceClient(
                    url,
                    protocol=kind,
                    codec=codec,
                    http_client=pyqwest.Client(transport),
                    timeout_ms=rng.randint(1, 8),
                )
                request = pb.EnqueueJobRequest(type="tiny", payload=rng.randbytes(rng.randint(0, 20_000)))
                try:
                    await client.enqueue_job(request)
                    outcome = "ok"
                except ConnectError as exc:
                    outcome = exc.code.name
                seen[outcome] = seen.get(outcome, 0) + 1
    return seen


def grpcio_tiny_deadlines(url: str, calls: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    rng = random.Random(14)
    with grpc.insecure_channel(url.removeprefix("http://")) as channel:
        enqueue = channel.unary_unary(f"/{SERVICE}/EnqueueJob")
        for _ in range(calls):
            request = pb.EnqueueJobRequest(type="tiny", payload=rng.randbytes(rng.randint(0, 20_000)))
            try:
                enqueue(request.to_binary(), timeout=rng.randint(1, 8) / 1000)
                outcome = "OK"
            except grpc.RpcError as exc:
                outcome = exc.code().name
            seen[outcome] = seen.get(outcome, 0) + 1
    return seen


@pytest.fixture
async def quiet(edge_server: EdgeServer) -> AsyncIterator[EdgeServer]:
    watch = LogWatch(edge_server.log)
    yield edge_server
    assert_alive(edge_server)
    watch.assert_quiet()


async def test_tiny_deadlines_are_quiet(quiet: EdgeServer) -> None:
    """Real clients whose deadlines pass mid-call (before the fix, Hypercorn logged
    'Error in ASGI Framework' for some of these, h2corn 'request failed')."""
    seen = await tiny_deadline_calls(quiet.url, 150)
    assert seen.get("DEADLINE_EXCEEDED", 0) > 0, seen  # the deadlines did pass
    assert set(seen) <= {"ok", "DEADLINE_EXCEEDED"}, seen
    seen = await asyncio.to_thread(grpcio_tiny_deadlines, quiet.url, 300)
    assert set(seen) <= {"OK", "DEADLINE_EXCEEDED"}, seen


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_a_deadline_passing_mid_response_is_quiet(quiet: EdgeServer, protocol: str) -> None:
    """A slow HTTP/2 reader (a 10-byte window) whose 300 ms deadline passes while
    the response is being written: before the fix, Hypercorn logged an ERROR
    with a traceback every time."""
    body = b'{"type": "slow", "payload": "' + b"QUFB" * 2000 + b'"}'
    if protocol == "grpc":
        headers = as_headers(
            [("content-type", "application/grpc+json"), ("te", "trailers"), ("grpc-timeout", "300m")]
        )
        body = envelope(body)
    else:
        headers = as_headers([("content-type", "application/json"), ("connect-timeout-ms", "300")])
    window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10}
    with H2(quiet.url, timeout=1.0, settings=window, ack=False) as client:
        reply = client.request("POST", f"/{SERVICE}/EnqueueJob", headers, body)
    assert reply.status == 200 and len(reply.body) <= 10
    assert_alive(quiet)


def test_clients_that_leave_mid_stream_are_quiet(quiet: EdgeServer) -> None:
    """Health Watch streams whose clients go away after the first message.

    Not over HTTP/1.1 under h2corn: it tells the app of a client gone only when
    the app next sends, and Watch sends only when the status changes; such a
    stream runs until the server stops (a finding of this suite, left to Watch)."""
    for _ in range(5 if quiet.kind == "hypercorn" else 0):
        reply = h1(
            quiet.url,
            "POST",
            f"/{HEALTH}/Watch",
            as_headers([("content-type", "application/connect+json")]),
            envelope(b"{}"),
            enough=has_message,
        )
        assert reply.status == 200 and has_message(reply.body)
    with H2(quiet.url) as client:
        for _ in range(5):
            reply = client.request(
                "POST", f"/{HEALTH}/Watch", grpc_headers(), envelope(b""), enough=has_message
            )
            assert has_message(reply.body)


def test_the_log_check_sees_errors(tmp_path: Path) -> None:
    """The check itself: an ERROR line or a traceback in a log fails it."""
    log = tmp_path / "server.log"
    log.write_text("2026-01-01 00:00:00,000 INFO x: fine\n")
    watch = LogWatch(log)
    for bad in (
        "2026-01-01 00:00:01,000 ERROR hypercorn.error: Error in ASGI Framework\n",
        "Traceback (most recent call last):\n",
        "request failed: ASGI app returned before completing the response\n",
        '{"level":"error","event":"failed","subject":"request","detail":"boom"}\n',
    ):
        watch.mark()
        with log.open("a") as f:
            f.write(bad)
        with pytest.raises(AssertionError):
            watch.assert_quiet()
