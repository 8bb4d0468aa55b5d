"""The least a client adds to a call: Connect (binary protobuf) over one blocking
HTTP/1.1 socket, for timing what the server answers rather than what a client costs.

`SyncClient` runs each call through connectrpc's client and pyqwest's transport, whose
I/O happens on threads of pyqwest's own runtime: the calling thread hands each request
over and is woken with the answer. On a machine whose cores the client, the server
and Redis share, that work and those wake-ups are part of every latency the bench
measures through it. This client writes the request and reads the answer on the
calling thread, and decodes the reply with protobuf-py as SyncClient does (it does not
make the `Job`s SyncClient makes of them). Loopback only; a bench tool, not an API.
"""

from __future__ import annotations

import socket
from types import TracebackType
from urllib.parse import urlsplit

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.selection import JobFilter, ListOrder
from jobqueue.wire import list_jobs_request

SERVICE = "/mpataki.jobqueue.v1.JobService/"


class SocketClient:
    """ListJobs and GetJob, as `bench/list_jobs.py` walks them with SyncClient."""

    def __init__(self, url: str, *, timeout_s: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not (parts.hostname or "").startswith("127."):
            raise ValueError(f"an http:// URL on 127.0.0.0/8, not {url!r}")
        self._host = parts.netloc
        self._socket = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout_s)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = self._socket.makefile("rb")

    def list_jobs(
        self,
        job_filter: JobFilter,
        order: ListOrder = ListOrder.NEWEST_FIRST,
        page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListJobsResponse:
        request = list_jobs_request(job_filter, order, page_size, page_token, False)
        return pb.ListJobsResponse.from_binary(self._call("ListJobs", request.to_binary()))

    def get(self, job_id: str) -> pb.Job:
        reply = pb.GetJobResponse.from_binary(self._call("GetJob", pb.GetJobRequest(id=job_id).to_binary()))
        return reply.job

    def _call(self, method: str, body: bytes) -> bytes:
        head = (
            f"POST {SERVICE}{method} HTTP/1.1\r\nhost: {self._host}\r\n"
            "content-type: application/proto\r\nconnect-protocol-version: 1\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self._socket.sendall(head.encode() + body)
        status = self._reader.readline()
        length = 0
        while (line := self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer = self._reader.read(length)
        if b" 200 " not in status:
            raise RuntimeError(f"{method}: {status.decode().strip()} {answer[:200]!r}")
        return answer

    def close(self) -> None:
        self._reader.close()
        self._socket.close()

    def __enter__(self) -> SocketClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
