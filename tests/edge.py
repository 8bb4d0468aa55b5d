"""Raw clients and checks for the tests of the server's edge (test_edge.py,
test_fuzz_edge.py): HTTP/1.1 over a socket and HTTP/2 through the `h2` package,
so that any header, framing or envelope can be sent as is; Connect, gRPC and
gRPC-Web envelopes; the documented answers; the server's log and memory."""

from __future__ import annotations

import gzip
import json
import re
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

SERVICE = "mpataki.jobqueue.v1.JobService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1.ServerReflection"
REFLECTION_ALPHA = "grpc.reflection.v1alpha.ServerReflection"

Header = tuple[bytes, bytes]


def as_headers(items: Iterable[tuple[str | bytes, str | bytes]]) -> list[Header]:
    return [
        (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v) for k, v in items
    ]


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


def envelope(message: bytes, flags: int = 0, length: int | None = None) -> bytes:
    """A Connect/gRPC/gRPC-Web frame: flags, big-endian length, message."""
    return struct.pack(">BI", flags, len(message) if length is None else length) + message


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def frames(body: bytes) -> Iterator[tuple[int, bytes]]:
    """The complete envelopes at the start of a response body."""
    at = 0
    while len(body) - at >= 5:
        flags, length = struct.unpack(">BI", body[at : at + 5])
        if len(body) - at - 5 < length:
            return
        yield flags, body[at + 5 : at + 5 + length]
        at += 5 + length


@dataclass
class Reply:
    """What came back for one request; `status` None: no response at all."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None  # HTTP/2 RST_STREAM error code
    goaway: int | None = None  # HTTP/2 GOAWAY error code
    closed: bool = False  # the server closed the connection
    timed_out: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


def has_message(body: bytes) -> bool:
    return any(True for _ in frames(body))


# -- HTTP/1.1 ------------------------------------------------------------------------------


def h1(
    url: str,
    method: str,
    target: str,
    headers: Sequence[Header],
    body: bytes = b"",
    *,
    timeout: float = 20.0,
    enough: Callable[[bytes], bool] | None = None,
) -> Reply:
    """One request on a new connection. `enough`: stop reading once it holds for the body so far."""
    head = [f"{method} {target} HTTP/1.1".encode(), b"host: " + url.removeprefix("http://").encode()]
    head += [k + b": " + v for k, v in headers]
    if body or method == "POST":
        head.append(b"content-length: " + str(len(body)).encode())
    request = b"\r\n".join(head) + b"\r\n\r\n" + body
    reply = Reply()
    deadline = time.monotonic() + timeout
    with socket.create_connection(host_port(url), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:
            reply.closed = True  # the server answered early and closed; read what it said
        reader = _Reader(sock, deadline)
        try:
            _read_h1_response(reader, reply, method, enough)
        except TimeoutError:
            reply.timed_out = True
        except (ConnectionError, EOFError):
            reply.closed = True
    return reply


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""

    def _more(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectionError(str(exc)) from exc
        if not data:
            raise EOFError
        self.buffer += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._more()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._more()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def rest(self) -> bytes:
        try:
            while True:
                self._more()
        except EOFError:
            pass
        data, self.buffer = self.buffer, b""
        return data


def _read_h1_response(
    reader: _Reader, reply: Reply, method: str, enough: Callable[[bytes], bool] | None
) -> None:
    while True:
        status_line = reader.line()
        reply.status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while line := reader.line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if reply.status >= 200:
            break
    reply.headers = headers
    if method == "HEAD" or reply.status in (204, 304):
        return
    if "content-length" in headers:
        reply.body = reader.exactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int(reader.line().split(b";")[0], 16)
            if size == 0:
                while line := reader.line():  # trailers, if any
                    name, _, value = line.decode("latin-1").partition(":")
                    reply.trailers[name.strip().lower()] = value.strip()
                return
            reply.body += reader.exactly(size)
            reader.exactly(2)
            if enough is not None and enough(reply.body):
                return
    else:
        reply.body = reader.rest()


# -- HTTP/2 --------------------------------------------------------------------------------


class H2:
    """One HTTP/2 connection (prior knowledge), driven step by step."""

    def __init__(
        self, url: str, *, timeout: float = 20.0, settings: dict[int, int] | None = None, ack: bool = True
    ) -> None:
        """`ack=False`: a client that never makes room for more of the response."""
        self.url = url
        self.timeout = timeout
        self.ack = ack
        self.sock = socket.create_connection(host_port(url), timeout=timeout)
        # Headers and data go out in separate writes: without this, Nagle and the
        # server's delayed ACK add tens of milliseconds to each request.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.goaway: int | None = None
        self.closed = False
        self.flush()

    def __enter__(self) -> H2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def pump(self, deadline: float) -> list[h2.events.Event]:
        """Reads what the server sent (waits until `deadline` for something)."""
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            raise
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return []
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        for event in events:
            if isinstance(event, h2.events.DataReceived) and self.ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
        self.flush()
        return events

    def request(
        self,
        method: str,
        path: str,
        headers: Sequence[Header],
        body: bytes | Sequence[bytes] = b"",
        *,
        end: bool = True,
        enough: Callable[[bytes], bool] | None = None,
    ) -> Reply:
        """One request on this connection; `body` as one piece or as several DATA frames."""
        pieces = ([body] if body else []) if isinstance(body, bytes) else list(body)
        sid = self.start(method, path, headers, end_stream=not pieces and end)
        reply = Reply()
        deadline = time.monotonic() + self.timeout
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if not self.send_data(sid, piece, end_stream=last and end, deadline=deadline, reply=reply):
                return reply
        return self.response(sid, deadline, reply, enough)

    def start(self, method: str, path: str, headers: Sequence[Header], *, end_stream: bool) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        host = self.url.removeprefix("http://").encode()
        pseudo = [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", b"http")]
        self.conn.send_headers(sid, [*pseudo, (b":authority", host), *headers], end_stream=end_stream)
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes, *, end_stream: bool, deadline: float, reply: Reply) -> bool:
        """Sends `data` as flow control allows; False if the stream ended meanwhile."""
        while True:
            try:
                room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return self._settle(sid, deadline, reply)
            if len(data) <= room:
                self.conn.send_data(sid, data, end_stream=end_stream)
                self.flush()
                return True
            if room > 0:
                self.conn.send_data(sid, data[:room])
                data = data[room:]
                self.flush()
                continue
            try:
                events = self.pump(deadline)
            except TimeoutError:
                reply.timed_out = True
                return False
            if self._record(sid, events, reply) or self.closed:
                return False

    def _settle(self, sid: int, deadline: float, reply: Reply) -> bool:
        self.response(sid, deadline, reply, None)
        return False

    def response(
        self, sid: int, deadline: float, reply: Reply, enough: Callable[[bytes], bool] | None
    ) -> Reply:
        while reply.reset is None and not reply.trailers.get(":ended"):
            if enough is not None and reply.status is not None and enough(reply.body):
                break
            try:
                events = self.pump(deadline)
            except TimeoutError:
                reply.timed_out = True
                break
            if self._record(sid, events, reply) or self.closed:
                break
        reply.trailers.pop(":ended", None)
        reply.goaway = self.goaway
        reply.closed = self.closed
        return reply

    def _record(self, sid: int, events: list[h2.events.Event], reply: Reply) -> bool:
        """Adds the events of stream `sid` to `reply`; True when the stream is over."""
        over = False
        for event in events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
                reply.status = int(headers.pop(":status"))
                reply.headers = headers
            elif isinstance(event, h2.events.TrailersReceived):
                reply.trailers.update({k.decode(): v.decode("latin-1") for k, v in event.headers})
            elif isinstance(event, h2.events.DataReceived):
                reply.body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                reply.trailers[":ended"] = "1"
                over = True
            elif isinstance(event, h2.events.StreamReset):
                reply.reset = event.error_code
                over = True
        return over


def h2_request(
    url: str, method: str, path: str, headers: Sequence[Header], body: bytes = b"", **kw: Any
) -> Reply:
    with H2(url, timeout=kw.pop("timeout", 20.0)) as connection:
        return connection.request(method, path, headers, body, **kw)


# -- answers ---------------------------------------------------------------------------

# Every Connect error code this server may answer with, and its HTTP status (the
# Connect protocol's mapping). Never `unknown`; `internal` only for the protocol
# error below (gRPC and connect-go answer it so too) and, in the rest of the
# suite, for data corrupted on purpose.
CONNECT_STATUS = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "not_found": 404,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "deadline_exceeded": 504,
    "canceled": 499,
    "internal": 500,
}
GRPC_CODE = {
    "canceled": 1,
    "invalid_argument": 3,
    "deadline_exceeded": 4,
    "not_found": 5,
    "resource_exhausted": 8,
    "failed_precondition": 9,
    "unimplemented": 12,
    "internal": 13,
}
# The one `internal` a client can cause: a message flagged compressed with no
# compression in use.
INTERNAL_BY_CLIENT = "protocol error: sent compressed message without compression support"
# HTTP answers that are not Connect errors: no such service or method (404), a
# method other than POST, or GET for a method with side effects (405), a
# content type no protocol takes (415), headers too large (431, or 400 from
# Hypercorn's HTTP/1.1 parser).
PLAIN_STATUS = frozenset({400, 404, 405, 415, 431})

_LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/jobqueue/|Error\(|<class '|0x[0-9a-f]{6,}")


def assert_clean(message: str) -> None:
    """No traceback, Python internals or source path reaches a client."""
    assert not _LEAKS.search(message), message


def check_error(code: str, message: str) -> None:
    assert code in CONNECT_STATUS, (code, message)
    if code == "internal":
        assert message == INTERNAL_BY_CLIENT, message
    assert_clean(message)


# -- the server's log and memory --------------------------------------------------------

_ERROR_LINE = re.compile(
    r" (ERROR|CRITICAL) |Traceback \(most recent call last\)|\"level\":\"error\"|^request failed: "
    r"|exited unexpectedly|^Worker \[\d+\] (failed|killed)",
    re.MULTILINE,
)


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def error_lines(text: str, allowed: Sequence[str] = ()) -> list[str]:
    """The lines of a server log that say ERROR (or hold a traceback), less the
    records (a line and the traceback under it) that contain one of `allowed`."""
    found = []
    lines = text.splitlines()
    skipping = False
    for i, line in enumerate(lines):
        if _RECORD_START.match(line):
            skipping = any(a in line for a in allowed)
        if skipping or any(a in line for a in allowed):
            continue
        if _ERROR_LINE.search(line):
            found.append("\n".join(lines[i : i + 3]))
    return found


class LogWatch:
    """Reads what a server wrote to its log since the last mark."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.mark()

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def assert_quiet(self, allowed: Sequence[str] = ()) -> None:
        errors = error_lines(self.since(), allowed)
        assert not errors, "the server logged errors:\n" + "\n---\n".join(errors[:10])


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (h2corn's workers are its children)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants."""
    total = 0
    for each in process_tree(pid):
        try:
            text = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            total += int(match[1]) * 1024
    return total


def health_latency(url: str, attempts: int = 10) -> float:
    """The quickest of `attempts` Connect health checks, each on a new connection
    (a loaded machine may delay any one of them); fails unless one says SERVING."""
    best = float("inf")
    for _ in range(attempts):
        start = time.monotonic()
        reply = h1(url, "POST", f"/{HEALTH}/Check", as_headers([("content-type", "application/json")]), b"{}")
        if reply.status == 200 and reply.json() == {"status": "SERVING"}:
            best = min(best, time.monotonic() - start)
    assert best < float("inf"), "health never answered SERVING"
    return best


# -- reading an answer in each protocol -----------------------------------------------------

GRPC_NAMES = {number: name for name, number in GRPC_CODE.items()} | {0: "ok", 2: "unknown"}


@dataclass(frozen=True)
class Outcome:
    """A call's result as its protocol states it: code "ok" or a Connect code name."""

    code: str
    message: str = ""
    messages: int = 0  # response messages before the end


def connect_unary_outcome(reply: Reply) -> Outcome:
    if reply.status == 200:
        return Outcome("ok", messages=1)
    error = reply.json()
    return Outcome(error["code"], error.get("message", ""))


def connect_stream_outcome(reply: Reply) -> Outcome:
    if reply.status != 200:
        return connect_unary_outcome(reply)
    count = 0
    for flags, data in frames(reply.body):
        if flags & 0x02:
            error = json.loads(data).get("error")
            if error is None:
                return Outcome("ok", messages=count)
            return Outcome(error["code"], error.get("message", ""), count)
        count += 1
    return Outcome("incomplete", messages=count)


def _grpc_status(fields: dict[str, str], count: int) -> Outcome | None:
    if "grpc-status" not in fields:
        return None
    code = GRPC_NAMES.get(int(fields["grpc-status"]), f"grpc-{fields['grpc-status']}")
    return Outcome(code, urllib.parse.unquote(fields.get("grpc-message", "")), count)


def grpc_outcome(reply: Reply) -> Outcome:
    count = sum(1 for _ in frames(reply.body))
    for fields in (reply.trailers, reply.headers):
        found = _grpc_status(fields, count)
        if found:
            return found
    return Outcome("incomplete", messages=count)


def grpc_web_outcome(reply: Reply) -> Outcome:
    found = _grpc_status(reply.headers, 0)  # trailers-only answer
    if found:
        return found
    count = 0
    for flags, data in frames(reply.body):
        if flags & 0x80:
            fields = {}
            for line in data.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            return _grpc_status(fields, count) or Outcome("incomplete", messages=count)
        count += 1
    return Outcome("incomplete", messages=count)
