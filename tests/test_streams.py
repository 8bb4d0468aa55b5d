"""Server streams (health Watch) keep the gRPC health contract, and they end: when
their client goes, on every protocol and on both servers, and when the server
shuts down (jobqueue/server/streams.py).

The servers here use a Redis of their own, so that Redis' PING count shows how
many Watch loops are running: each polls Redis with a PING every second.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pyqwest
import pytest
from connectrpc.protocol import ProtocolType
from redis.asyncio import Redis

from jobqueue._gen.grpc.health.v1 import health_pb
from jobqueue._gen.grpc.health.v1.health_connect import HealthClient
from jobqueue.redis_server import RedisServer
from jobqueue.server.streams import KEEPALIVE_S, SHUTTING_DOWN

from .conftest import ROOT, eventually, jobqueue_server, jobqueue_server_process, json_documents
from .test_api import SERVICE, grpcurl, host_port, tool

Status = health_pb.HealthCheckResponse.ServingStatus
WATCH = "grpc.health.v1.Health/Watch"
SERVERS = [
    "hypercorn",
    pytest.param("h2corn", marks=pytest.mark.skipif(shutil.which("h2corn") is None, reason="no h2corn")),
]
# Each protocol's client: gRPC (h2c), Connect streaming over HTTP/1.1 and over h2c,
# gRPC-Web over HTTP/1.1 (a browser's case against an http:// server).
CLIENTS = ("grpc", "connect-http1", "connect-h2c", "grpc-web-http1")


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("streams-redis")) as server:
        yield server


@pytest.fixture
async def redis(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)  # no health-check PINGs of its own
    yield client
    await client.aclose()


@pytest.fixture(scope="module", params=SERVERS)
def stream_server(
    request: pytest.FixtureRequest, own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp(f"streams-{request.param}") / "server.log"
    with jobqueue_server(own_redis.url, log, server=request.param) as url:
        yield url
    assert_quiet(log)


def assert_quiet(log: Path) -> None:
    """Clients that go and streams that end are no news: nothing above INFO."""
    text = log.read_text(errors="replace")
    for word in ("ERROR", "WARNING", "Traceback", "CancelledError"):
        assert word not in text, f"{word} in the server log:\n{text[-3000:]}"


# -- streaming clients, as processes --------------------------------------------------


def envelope(message: dict[str, str], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """The (flags, payload) frames of a Connect or gRPC-Web stream (a partial last one left out)."""
    found = []
    while len(body) >= 5:
        flags, length = struct.unpack(">BI", body[:5])
        if len(body) < 5 + length:
            break
        found.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return found


def trailer_fields(frame: bytes) -> dict[str, str]:
    """A gRPC-Web trailers frame's fields (HTTP/1 header lines)."""
    lines = frame.decode().strip().split("\r\n")
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


@dataclass
class Client:
    kind: str
    process: asyncio.subprocess.Process
    out: Path

    def output(self) -> bytes:
        return self.out.read_bytes()

    def messages(self) -> list[str]:
        """The statuses received, in order."""
        if self.kind == "grpc":
            return [doc["status"] for doc in json_documents(self.output().decode())]
        return [json.loads(data)["status"] for flags, data in frames(self.output()) if flags == 0]

    async def wait(self, limit_s: float = 15.0) -> int:
        async with asyncio.timeout(limit_s):
            return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)


async def watch(kind: str, url: str, tmp_path: Path, service: str = "", max_time_s: float = 60) -> Client:
    request = {"service": service}
    curl = [tool("curl"), "-sS", "-N", "--max-time", str(max_time_s), "--data-binary", "@-"]
    connect = ["-H", "Content-Type: application/connect+json", f"{url}/{WATCH}"]
    argv, stdin = {
        "grpc": (
            [tool("grpcurl"), "-plaintext", "-max-time", str(max_time_s), "-d", json.dumps(request),
             host_port(url), WATCH],
            None,
        ),
        "connect-http1": (
            [*curl, "--http1.1", *connect],
            envelope(request),
        ),
        "connect-h2c": (
            [*curl, "--http2-prior-knowledge", *connect],
            envelope(request),
        ),
        "grpc-web-http1": (
            [*curl, "--http1.1", "-H", "Content-Type: application/grpc-web+json", "-H", "X-Grpc-Web: 1",
             f"{url}/{WATCH}"],
            envelope(request),
        ),
    }[kind]  # fmt: skip
    out = tmp_path / f"{kind}.out"
    with out.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
            start_new_session=True,
        )
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        await process.stdin.drain()
        process.stdin.close()
    return Client(kind, process, out)


async def watching(url: str, tmp_path: Path, service: str = "", max_time_s: float = 60) -> list[Client]:
    """One Watch per protocol, each once it has its first status."""
    clients = [await watch(kind, url, tmp_path, service, max_time_s) for kind in CLIENTS]
    try:
        for client in clients:

            async def started(client: Client = client) -> bool:
                return bool(client.messages())

            await eventually(started, timeout=20, what=f"{client.kind}'s first status")
    except BaseException:
        for client in clients:
            client.kill()
        raise
    return clients


# -- Redis' PING count: how many Watch loops run ---------------------------------------


async def pings(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def pings_stop(redis: Redis, window_s: float = 2.5, timeout_s: float = 30.0) -> float:
    """Waits until no Watch loop runs: at most one PING (the scheduler's pub/sub health
    check may send one) in `window_s`. Returns when the last loop's PINGs stopped,
    in seconds from the call."""
    start = time.monotonic()
    samples = [(start, await pings(redis))]
    last_growth = start
    while True:
        await asyncio.sleep(0.25)
        now, count = time.monotonic(), await pings(redis)
        if count > samples[-1][1] + 1:
            last_growth = now
        samples.append((now, count))
        earlier = [c for t, c in samples if t <= now - window_s]
        if earlier and count - earlier[-1] <= 1:
            return last_growth - start
        if now - start > timeout_s:
            pytest.fail(f"Watch loops still running {timeout_s} s after their clients went: {samples[-8:]}")


# -- the contract ------------------------------------------------------------------------


async def test_unknown_service_gets_service_unknown_and_the_stream_stays_open(
    stream_server: str, tmp_path: Path
) -> None:
    check = await grpcurl(stream_server, "grpc.health.v1.Health/Check", data={"service": "no.Such"})
    assert check.code == 64 + 5 and "Code: NotFound\n" in check.err, check
    clients = await watching(stream_server, tmp_path, service="no.Such", max_time_s=2 * KEEPALIVE_S + 1)
    codes = [await client.wait() for client in clients]
    # Each client gave up at its own deadline (grpcurl: DeadlineExceeded; curl: timeout),
    # the stream still open: no end-of-stream, no status.
    assert codes == [64 + 4, 28, 28, 28], [c.output()[-300:] for c in clients]
    for client in clients:
        assert set(client.messages()) == {"SERVICE_UNKNOWN"}, client.output()
        assert all(flags == 0 for flags, _ in frames(client.output())) or client.kind == "grpc"
    # Over HTTP/2 a status is sent only when it changes; over HTTP/1.1 it is repeated
    # while the stream is quiet, so that a gone client is noticed (streams.py).
    assert clients[0].messages() == clients[2].messages() == ["SERVICE_UNKNOWN"]
    assert len(clients[1].messages()) >= 2


async def test_status_is_sent_again_when_it_changes(stream_server: str, own_redis: RedisServer) -> None:
    process = own_redis.process
    assert process is not None
    async with pyqwest.HTTPTransport(http_version=pyqwest.HTTPVersion.HTTP2) as transport:
        http = pyqwest.Client(transport)
        client = HealthClient(stream_server, protocol=ProtocolType.GRPC, http_client=http)
        statuses = client.watch(health_pb.HealthCheckRequest(service=SERVICE))
        try:
            async with asyncio.timeout(20):
                assert (await anext(statuses)).status == Status.SERVING
                process.send_signal(signal.SIGSTOP)  # a frozen Redis: PINGs time out
                try:
                    assert (await anext(statuses)).status == Status.NOT_SERVING
                finally:
                    process.send_signal(signal.SIGCONT)
                assert (await anext(statuses)).status == Status.SERVING
        finally:
            await statuses.aclose()  # type: ignore[attr-defined]
            await client.close()


# -- a client that goes --------------------------------------------------------------------


async def test_a_gone_client_stops_the_servers_loop(stream_server: str, redis: Redis, tmp_path: Path) -> None:
    clients = await watching(stream_server, tmp_path)
    before = await pings(redis)

    async def all_loops_run() -> bool:
        return await pings(redis) >= before + 2 * len(clients)

    await eventually(all_loops_run, timeout=20, what="the Watch loops' PINGs")
    for client in clients:
        client.kill()
    noticed_s = await pings_stop(redis)
    # A loop polls once a second; h2corn over HTTP/1.1 notices at the second
    # keepalive write at the latest.
    assert noticed_s < 2 * KEEPALIVE_S + 2.5, noticed_s
    for client in clients:
        await client.wait()


# -- shutdown ------------------------------------------------------------------------------

GRACE_S = 3.0


@pytest.mark.parametrize("server", SERVERS)
async def test_sigterm_ends_open_streams(server: str, own_redis: RedisServer, tmp_path: Path) -> None:
    """Every open stream ends with `unavailable` ("server shutting down"), its status
    written in full; the server exits 0 at once, with nothing in its log."""
    log = tmp_path / "server.log"
    with jobqueue_server_process(
        own_redis.url, log, server=server, JOBQUEUE_SERVER_SHUTDOWN_GRACE_S=str(GRACE_S)
    ) as (url, process):
        clients = await watching(url, tmp_path)
        try:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, GRACE_S + 10)
            took_s = time.monotonic() - started
            codes = [await client.wait() for client in clients]
        finally:
            for client in clients:
                client.kill()
    assert code == 0
    assert took_s < GRACE_S + 1, took_s
    assert_quiet(log)
    grpc, connect_http1, connect_h2c, grpc_web = clients
    assert codes == [64 + 14, 0, 0, 0], [c.output()[-300:] for c in clients]
    assert "Code: Unavailable" in grpc.output().decode() and SHUTTING_DOWN in grpc.output().decode()
    for client in (connect_http1, connect_h2c):
        flags, end = frames(client.output())[-1]
        assert flags == 2 and json.loads(end) == {"error": {"code": "unavailable", "message": SHUTTING_DOWN}}
    flags, trailers = frames(grpc_web.output())[-1]
    assert flags == 0x80, grpc_web.output()
    assert trailer_fields(trailers) == {"grpc-status": "14", "grpc-message": quote(SHUTTING_DOWN)}
    for client in clients:
        assert client.messages()[0] == "SERVING"
