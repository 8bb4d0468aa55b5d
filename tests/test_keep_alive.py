"""Hypercorn's keep-alive timer as a loop timer (server/hypercorn_guard.py, KeepAliveTimer):
an idle kept-alive connection is closed after the idle timeout, counted from its last
answer, and at once when the server shuts down. A real `jobqueue server` (Hypercorn)
and raw HTTP/1.1 over a socket."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

from .conftest import jobqueue_server_process
from .edge import host_port

HEALTH_CHECK = (
    b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)
LIMIT_S = 30.0  # far past any timeout here: a failing test still ends


def answered(sock: socket.socket) -> None:
    """Sends a health check and reads its whole answer (a content-length one)."""
    sock.sendall(HEALTH_CHECK)
    sock.settimeout(LIMIT_S)
    head, _, body = sock.recv(1 << 16).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = int(lengths[0].split(b":")[1])
    while len(body) < length:
        body += sock.recv(1 << 16)


def closed_after(sock: socket.socket) -> float:
    """How long until the server closes the connection (fails after LIMIT_S)."""
    start = time.monotonic()
    sock.settimeout(LIMIT_S)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1 << 16) == b""
    return time.monotonic() - start


def test_an_idle_connection_is_closed_its_timeout_after_its_last_answer(
    edge_redis: str, tmp_path: Path
) -> None:
    env = {"JOBQUEUE_PREFIX": "keepalive", "JOBQUEUE_IDLE_TIMEOUT_S": "2"}
    with (
        jobqueue_server_process(edge_redis, tmp_path / "server.log", **env) as (url, _),
        socket.create_connection(host_port(url)) as sock,
    ):
        for _ in range(3):  # each answer restarts the timer
            answered(sock)
        took = closed_after(sock)
        assert 1.5 <= took < LIMIT_S
        with socket.create_connection(host_port(url)) as other:  # the server is still serving
            answered(other)


def test_an_idle_connection_is_closed_when_the_server_stops(edge_redis: str, tmp_path: Path) -> None:
    # Neither the idle timeout nor Hypercorn's graceful timeout (the grace) would end it in LIMIT_S.
    env = {
        "JOBQUEUE_PREFIX": "keepalive",
        "JOBQUEUE_IDLE_TIMEOUT_S": "600",
        "JOBQUEUE_SERVER_SHUTDOWN_GRACE_S": "60",
    }
    with (
        jobqueue_server_process(edge_redis, tmp_path / "server.log", **env) as (url, process),
        socket.create_connection(host_port(url)) as sock,
    ):
        answered(sock)
        process.send_signal(signal.SIGTERM)
        closed_after(sock)  # within LIMIT_S
        assert process.wait(LIMIT_S) == 0
