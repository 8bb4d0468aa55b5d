"""Where the metrics are scraped: the server's `GET /metrics` (an app of its
Router), and a worker process's own port (`jobqueue worker --metrics-port`).

Each process has its own numbers; Prometheus scrapes each process as a target
and adds them up. (`jobqueue server --server h2corn` runs one h2corn process, so
/metrics always answers for the process that serves the API.)
"""

from __future__ import annotations

import dataclasses
import errno
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server

from ..ports import AddressInUse, CannotListen
from ..store import Store
from .jobs import JobMetrics
from .queues import QueueMetrics
from .rpcs import RpcMetrics

PATH = "/metrics"


class ServerMetrics:
    """The API server's metrics: its jobs (`jobs`: the observer of its producer, reaper
    and scheduler), its RPCs (`rpcs`: the first interceptor) and the queues' counts;
    an ASGI app that serves them."""

    path = PATH  # where the Router sends requests (server/router.py)

    def __init__(self, store: Store) -> None:
        self.jobs = JobMetrics()
        self.rpcs = RpcMetrics()
        self.queues = QueueMetrics(store.stats)
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (self.jobs, self.rpcs, self.queues):
            self.registry.register(collector)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app of GET /metrics."""
        if scope["type"] != "http" or scope.get("path") != PATH:
            await _answer(send, 404, b"no such service\n")
        elif scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, b"GET /metrics\n", [(b"allow", b"GET, HEAD")])
        else:
            await self.queues.refresh()
            body = generate_latest(self.registry)
            await _answer(
                send, 200, b"" if scope["method"] == "HEAD" else body, content_type=CONTENT_TYPE_LATEST
            )


async def _answer(
    send: Any,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    head = [(b"content-type", content_type.encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


@dataclasses.dataclass
class _Port:
    jobs: JobMetrics
    server: WSGIServer
    thread: threading.Thread
    users: int = 0


class WorkerPorts:
    """The ports where worker processes serve their jobs' metrics (prometheus_client's
    HTTP server, on a thread of its own). Workers of one process given the same
    address share it, and its numbers; it closes when the last of them stops."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], _Port] = {}
        self._lock = threading.Lock()

    def acquire(self, host: str, port: int) -> JobMetrics:
        """The metrics served on `host:port`, serving them from now on if none are."""
        with self._lock:
            served = self._open.get((host, port))
            if served is None:
                jobs = JobMetrics()
                registry = CollectorRegistry(auto_describe=False)
                registry.register(jobs)
                server, thread = _listen(host, port, registry)
                served = self._open[(host, port)] = _Port(jobs, server, thread)
            served.users += 1
            return served.jobs

    def release(self, host: str, port: int) -> None:
        with self._lock:
            served = self._open[(host, port)]
            served.users -= 1
            if served.users:
                return
            del self._open[(host, port)]
        served.server.shutdown()
        served.server.server_close()
        served.thread.join(timeout=5)


def _listen(host: str, port: int, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    try:
        return start_http_server(port, host, registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(errno.EADDRINUSE, f"metrics port {port} on {host} is in use") from None
        reason = exc.strerror or str(exc)
        raise CannotListen(exc.errno, f"cannot serve metrics on port {port} on {host}: {reason}") from None


worker_ports = WorkerPorts()  # this process's
