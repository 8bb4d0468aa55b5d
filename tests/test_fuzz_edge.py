"""Fuzzing the server's edge: Hypothesis builds requests (valid ones, then
mutated) in every protocol the server speaks, over HTTP/1.1 and HTTP/2, and
sends them to a running `jobqueue server` under Hypercorn and under h2corn
(conftest's edge_server: a Redis and key prefix of their own).

What varies: the method (every RPC of JobService, Health and reflection, and
paths that name none), the HTTP method, the protocol (Connect unary POST and
GET, Connect streaming, gRPC, gRPC-Web; JSON or binary), the message (valid,
wrong types, out of range, nested, truncated, bytes flipped, random), its
compression (none, gzip, corrupt gzip, a gzip bomb, an unknown name), the
envelopes (flags, lengths, several, junk after), and the headers (content type
variants, Connect and gRPC timeouts, protocol version, junk headers).

What must hold, for every request:
- the server answers, in time, and keeps running (no crash, no hang);
- every answer is documented (tests/edge.py): a Connect error code with its
  HTTP status, a gRPC status, or one of the plain HTTP statuses; never
  `unknown`; `internal` only for the one protocol error a client can cause;
  no traceback or Python internals in any message;
- a refused call stores nothing (no new job in Redis);
and after the run: memory within MEMORY_BOUND of what it was after a warm-up,
health answers within 100 ms, no ERROR line or traceback in the server's log.

Run size: JOBQUEUE_FUZZ_EXAMPLES per server (default DEFAULT_EXAMPLES, about
half a minute each here, with a fixed seed); any other value runs random
examples: `JOBQUEUE_FUZZ_EXAMPLES=100000 pytest tests/test_fuzz_edge.py -s`.
JOBQUEUE_FUZZ_REPORT=path writes the run's figures there as JSON.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobqueue._gen.grpc.health.v1 import health_pb
from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb

from .conftest import EdgeServer
from .edge import (
    CONNECT_STATUS,
    H2,
    HEALTH,
    PLAIN_STATUS,
    REFLECTION,
    REFLECTION_ALPHA,
    SERVICE,
    LogWatch,
    Outcome,
    Reply,
    as_headers,
    assert_clean,
    check_error,
    connect_stream_outcome,
    envelope,
    grpc_outcome,
    grpc_web_outcome,
    gzipped,
    h1,
    has_message,
    health_latency,
    rss_bytes,
)

DEFAULT_EXAMPLES = 3000
EXAMPLES = int(os.environ.get("JOBQUEUE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
# Requests are sent one at a time, and each is bounded by read_max_bytes (about
# 1.4 MiB for JobService, 64 KiB for the others) before and after inflating:
# what one request holds is a few MiB at most. The rest of the margin is the
# allocator keeping freed arenas and what a process still fills as it warms up.
# A leak of 10 KiB per request (or per connection: each case has its own) shows
# within the default run.
MEMORY_BOUND = 32 << 20
HEALTH_WITHIN_S = 0.1
REPLY_TIMEOUT_S = 15.0

# -- what is sent ---------------------------------------------------------------------------

STORING = {f"/{SERVICE}/EnqueueJob", f"/{SERVICE}/EnqueueJobs"}
MAX_JOBS = 4  # in one generated EnqueueJobs
METHODS = {
    f"/{SERVICE}/EnqueueJob": pb.EnqueueJobRequest,
    f"/{SERVICE}/EnqueueJobs": pb.EnqueueJobsRequest,
    f"/{SERVICE}/GetJob": pb.GetJobRequest,
    f"/{SERVICE}/CancelJob": pb.CancelJobRequest,
    f"/{SERVICE}/RetryJob": pb.RetryJobRequest,
    f"/{HEALTH}/Check": health_pb.HealthCheckRequest,
    f"/{HEALTH}/List": health_pb.HealthListRequest,
    f"/{HEALTH}/Watch": health_pb.HealthCheckRequest,
    f"/{REFLECTION}/ServerReflectionInfo": None,
    f"/{REFLECTION_ALPHA}/ServerReflectionInfo": None,
}
WATCH = f"/{HEALTH}/Watch"
JUNK_PATHS = ["/", "/nope", f"/{SERVICE}/Nope", f"/{SERVICE}", f"/{SERVICE}/", "/grpc.health.v1.Health/check",
              f"/{SERVICE}/GetJob/extra", "/%00", "/a.b.C/D"]  # fmt: skip

ID = st.one_of(st.uuids().map(str), st.just("00000000-0000-4000-8000-000000000000"), st.text(max_size=40))
JOB_TYPE = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,20}\Z"),
    st.text(max_size=140),
    st.sampled_from(["", "a b", "x" * 129]),
)
INT64 = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64),
    st.integers(min_value=0, max_value=4_102_444_800_000),
    st.sampled_from(["1.5", "soon", "9223372036854775808", "-0", "1e3", ""]),
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def enqueue_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": JOB_TYPE},
        optional={
            "payload": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
            | st.text(max_size=10),
            "executionTimeMs": INT64,
            "maxAttempts": st.integers(min_value=-5, max_value=2**33) | st.text(max_size=5),
            "timeoutMs": INT64,
            "idempotencyKey": st.text(max_size=30),
            "backoff": st.fixed_dictionaries(
                {}, optional={"baseMs": INT64, "factor": st.floats() | st.text(max_size=5), "capMs": INT64}
            ),
            "unknownField": ANY_JSON,
        },
    )


def message_fields(path: str) -> st.SearchStrategy[Any]:
    """A JSON value for `path`'s request: mostly of the right shape."""
    if path.endswith("/EnqueueJob"):
        fields = enqueue_fields()
    elif path.endswith("/EnqueueJobs"):
        fields = st.fixed_dictionaries({"jobs": st.lists(enqueue_fields(), max_size=MAX_JOBS)})
    elif path.endswith(("/GetJob", "/CancelJob", "/RetryJob")):
        fields = st.fixed_dictionaries({"id": ID})
    elif path.endswith(("/Check", "/Watch")):
        fields = st.fixed_dictionaries({}, optional={"service": st.sampled_from(["", SERVICE, "no.Such"])})
    elif path.endswith("ServerReflectionInfo"):
        fields = st.one_of(
            st.just({"listServices": ""}),
            st.builds(
                lambda s: {"fileContainingSymbol": s},
                st.sampled_from([SERVICE, "grpc.health.v1.Health", "x"]),
            ),
            st.builds(lambda s: {"fileByFilename": s}, st.text(max_size=30)),
            st.just({"fileContainingExtension": {"containingType": "x", "extensionNumber": 5}}),
        )
    else:
        fields = st.just({})
    return st.one_of(fields, fields, fields, ANY_JSON)


def to_binary(path: str, value: Any) -> bytes | None:
    """The binary form of a JSON request, if it is a valid one."""
    kind = METHODS.get(path)
    if kind is None:
        return None
    try:
        return bytes(kind.from_json(json.dumps(value), ignore_unknown_fields=True).to_binary())
    except Exception:  # noqa: BLE001 - not a valid message: the caller makes bytes up instead
        return None


@st.composite
def mutated(draw: st.DrawFn, data: bytes, json_text: bool) -> bytes:
    """`data`, as is or damaged."""
    how = draw(st.sampled_from(["keep"] * 4 + ["truncate", "flip", "insert", "random", "nest", "empty"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if how == "random":
        return draw(st.binary(max_size=200))
    if how == "nest":
        depth = draw(st.sampled_from([10, 63, 64, 65, 100, 1000, 14_000]))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        inner = opener * depth + b"1" + closer * depth
        if json_text:
            return b'{"type": ' + inner + b"}"
        return inner
    if how == "empty":
        return b""
    return data


@dataclass
class Case:
    transport: str  # h1 or h2
    protocol: str  # connect, connect-get, connect-stream, grpc, grpc-web
    codec: str  # json or proto
    http_method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    target: str  # path and query
    junk_headers: bool
    stores: bool  # a call that may store jobs, if accepted

    def describe(self) -> str:
        return f"{self.transport} {self.protocol}/{self.codec} {self.http_method} {self.target[:120]}"


COMPRESSIONS = ["none"] * 8 + ["gzip", "gzip", "corrupt-gzip", "bomb", "br", "junk"]
BOMB = gzipped(b"\0" * (3 << 20))


def compressed(how: str, data: bytes) -> tuple[bytes, str | None]:
    if how == "gzip":
        return gzipped(data), "gzip"
    if how == "corrupt-gzip":
        return gzipped(data)[:-5] + b"junk!", "gzip"
    if how == "bomb":
        return BOMB, "gzip"
    if how == "br":
        return data, "br"
    if how == "junk":
        return data, "x-junk"
    return data, None


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws (Hypothesis favours small integers, so
    not `== 0`)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def cases(draw: st.DrawFn) -> Case:
    protocol = draw(
        st.sampled_from(["connect", "connect", "connect-get", "connect-stream", "grpc", "grpc", "grpc-web"])
    )
    if rarely(draw, 10):
        path = draw(st.sampled_from(JUNK_PATHS))
    elif protocol == "connect-get" and not rarely(draw, 5):
        path = f"/{SERVICE}/GetJob"  # the one method that takes GET
    elif protocol == "connect-stream" and not rarely(draw, 5):
        path = draw(st.sampled_from([WATCH, f"/{REFLECTION}/ServerReflectionInfo"]))  # the streams
    else:
        path = draw(st.sampled_from(list(METHODS)))
    codec = draw(st.sampled_from(["json", "proto"]))
    transport = draw(st.sampled_from(["h1", "h2"]))
    if protocol == "grpc" and not rarely(draw, 10):
        transport = "h2"  # gRPC is HTTP/2; now and then over HTTP/1.1 all the same
    value = draw(message_fields(path))
    if codec == "json":
        message = json.dumps(value).encode()
    else:
        message = to_binary(path, value) or draw(st.binary(max_size=100))
    message = draw(mutated(message, codec == "json"))
    compression = draw(st.sampled_from(COMPRESSIONS))
    headers: list[tuple[str, str]] = []
    http_method = "GET" if protocol == "connect-get" else "POST"
    if rarely(draw, 20):
        http_method = draw(st.sampled_from(["GET", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"]))
    target = path
    body = b""
    if protocol == "connect-get":
        data, encoding = compressed(compression, message)
        query = {"connect": "v1", "encoding": codec, "message": data.decode("latin-1")}
        if codec == "proto" or compression != "none" or draw(st.booleans()):
            query["message"] = base64.urlsafe_b64encode(data).decode().rstrip("=")
            query["base64"] = "1"
        if encoding:
            query["compression"] = encoding
        if rarely(draw, 5):
            del query[draw(st.sampled_from(sorted(query)))]
        target = path + "?" + urllib.parse.urlencode(query)[:4000]
    elif protocol == "connect":
        headers.append(("content-type", draw(content_type(f"application/{codec}"))))
        body, encoding = compressed(compression, message)
        if encoding:
            headers.append(("content-encoding", encoding))
        if draw(st.booleans()):
            headers.append(("connect-protocol-version", draw(st.sampled_from(["1", "2", "x"]))))
    else:
        base = {
            "connect-stream": "application/connect",
            "grpc": "application/grpc",
            "grpc-web": "application/grpc-web",
        }
        default_codec = protocol != "connect-stream" and codec == "proto" and draw(st.booleans())
        kind = base[protocol] if default_codec else f"{base[protocol]}+{codec}"
        headers.append(("content-type", draw(content_type(kind))))
        data, encoding = compressed(compression, message)
        encoding_header = "connect-content-encoding" if protocol == "connect-stream" else "grpc-encoding"
        if encoding:
            headers.append((encoding_header, encoding))
        body = draw(envelopes(data, compressed_flag=encoding is not None))
        if protocol == "grpc" and not rarely(draw, 10):
            headers.append(("te", "trailers"))
        if protocol == "grpc-web":
            headers.append(("x-grpc-web", "1"))
    headers += draw(timeouts(protocol))
    junk = (
        draw(st.lists(st.tuples(TOKEN.map(lambda t: "x-" + t), VALUE), max_size=3)) if rarely(draw, 4) else []
    )
    odd = rarely(draw, 30)
    if odd:  # values a strict parser refuses
        junk.append(("x-odd", draw(st.text(alphabet="\x00\x01\x7f\t\xe9", min_size=1, max_size=5))))
    headers += junk
    return Case(
        transport, protocol, codec, http_method, path, as_headers(headers), body, target, odd, path in STORING
    )


def content_type(kind: str) -> st.SearchStrategy[str]:
    odd = [
        kind + "; charset=utf-8",
        kind.upper(),
        "text/plain",
        "application/json+x",
        "application/grpc+yaml",
        "",
    ]
    return st.sampled_from([kind] * 12 + [*odd, "application/"])


@st.composite
def envelopes(draw: st.DrawFn, data: bytes, *, compressed_flag: bool) -> bytes:
    flags = 1 if compressed_flag else 0
    if rarely(draw, 6):
        flags = draw(st.sampled_from([0, 1, 2, 3, 0x80, 0xFF]))
    length = None
    if rarely(draw, 8):
        length = max(0, len(data) + draw(st.sampled_from([-3, -1, 1, 5, 1 << 20, 2**32 - 1 - len(data)])))
    body = envelope(data, flags, length)
    extra = draw(st.sampled_from(["none"] * 6 + ["again", "end", "junk", "many"]))
    if extra == "again":
        body += envelope(data, flags)
    elif extra == "end":
        body += envelope(b"{}", 2)
    elif extra == "junk":
        body += draw(st.binary(min_size=1, max_size=6))
    elif extra == "many":
        body += envelope(data, flags) * draw(st.integers(2, 50))
    return body


def timeouts(protocol: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    if protocol.startswith("connect"):
        name, values = "connect-timeout-ms", ["5000", "1", "0", "-5", "abc", "99999999999999999999", "1.5"]
    else:
        name, values = (
            "grpc-timeout",
            ["5S", "100m", "1n", "0n", "99999999H", "abc", "10", "-1S", "5000000000u"],
        )
    return st.sampled_from([[]] * 3 + [[(name, value)] for value in values])


# -- what comes back -------------------------------------------------------------------------


def send(server: EdgeServer, case: Case) -> Reply:
    transport = case.transport
    if case.path == WATCH and server.kind == "h2corn":
        # h2corn notices an HTTP/1.1 client gone only when the app sends: an
        # abandoned Watch there would run until the server stops.
        transport = "h2"
    enough = has_message if case.path == WATCH else None
    if transport == "h1":
        return h1(server.url, case.http_method, case.target, case.headers, case.body,
                  timeout=REPLY_TIMEOUT_S, enough=enough)  # fmt: skip
    try:
        with H2(server.url, timeout=REPLY_TIMEOUT_S) as client:
            return client.request(case.http_method, case.target, case.headers, case.body, enough=enough)
    except Exception as exc:
        if case.junk_headers:
            return Reply(closed=True)
        raise AssertionError(f"the h2 client could not send {case.describe()}: {exc!r}") from exc


def judge(case: Case, reply: Reply) -> str:
    """Checks `reply` against the documented answers; returns its label for the tally."""
    if reply.timed_out and not (case.path == WATCH and reply.status == 200):
        raise AssertionError(f"no answer within {REPLY_TIMEOUT_S} s")
    if reply.status is None:
        # A request the HTTP layer refuses outright: junk header values or, over
        # HTTP/2, a stream the server resets.
        if case.junk_headers or reply.reset is not None or reply.goaway is not None:
            return f"refused by HTTP ({reply.reset=}, {reply.goaway=})"
        raise AssertionError(f"no response: {reply}")
    content_type = reply.headers.get("content-type", "")
    if case.http_method == "HEAD":  # no body: the status, or a gRPC status in the headers
        if "grpc-status" in reply.headers:
            outcome = grpc_outcome(reply)
            check_error(outcome.code, outcome.message)
            return f"HEAD {outcome.code}"
        page = case.path == "/" and reply.status == 200  # the dashboard (server/dashboard.py)
        assert page or reply.status in PLAIN_STATUS or reply.status in CONNECT_STATUS.values(), reply
        return f"HEAD {reply.status}"
    if reply.status != 200 and not content_type.startswith("application/json"):
        assert reply.status in PLAIN_STATUS, reply
        assert_clean(reply.body.decode(errors="replace"))
        return f"HTTP {reply.status}"
    outcome = parse(case, reply, content_type)
    if outcome.code not in ("ok", "incomplete"):
        check_error(outcome.code, outcome.message)
    if outcome.code == "incomplete":
        assert case.path == WATCH or reply.reset is not None or reply.closed, reply
    return outcome.code


def parse(case: Case, reply: Reply, content_type: str) -> Outcome:
    if content_type.startswith("application/json") and reply.status != 200:
        try:
            error = reply.json()
        except ValueError:
            raise AssertionError(f"an error that is not JSON: {reply}") from None
        assert reply.status == CONNECT_STATUS.get(error["code"]), (reply.status, error)
        assert set(error) <= {"code", "message", "details"}, error
        return Outcome(error["code"], error.get("message", ""))
    if content_type.startswith("application/grpc-web"):
        return grpc_web_outcome(reply)
    if content_type.startswith("application/grpc"):
        return grpc_outcome(reply)
    if content_type.startswith("application/connect+"):
        return connect_stream_outcome(reply)
    assert reply.status == 200, reply
    return Outcome("ok", messages=1)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Run:
    server: EdgeServer
    redis: redis.Redis
    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: collections.Counter[str] = field(default_factory=collections.Counter)
    cases: int = 0
    accepted_jobs: int = 0
    uncertain_jobs: int = 0  # at most this many stored by calls cut short by their deadline
    late_jobs: int = 0  # of those, how many were seen while a refused call ran

    def job_keys(self) -> int:
        return sum(1 for _ in self.redis.scan_iter(match=f"{self.server.prefix}:*:job:*", count=1000))

    def one(self, case: Case) -> None:
        self.cases += 1
        before = self.job_keys() if case.stores else 0
        started = time.monotonic()
        reply = send(self.server, case)
        took = time.monotonic() - started
        try:
            label = judge(case, reply)
            assert_alive(self.server)
            if case.stores:
                added = self.job_keys() - before
                if label == "ok":
                    self.accepted_jobs += added
                elif label in ("deadline_exceeded", "canceled"):
                    # Its jobs may be stored, even after the answer: the store's
                    # script may reach Redis as the deadline cuts the call short.
                    self.uncertain_jobs += MAX_JOBS
                else:
                    # Refused: nothing stored (but what such a call may store late).
                    assert added <= self.uncertain_jobs - self.late_jobs, (
                        f"a refused call ({label}) stored {added} jobs"
                    )
                    self.late_jobs += added
        except AssertionError as exc:
            raise AssertionError(
                f"{case.describe()}\n{case.headers}\nbody {case.body[:300]!r}\n{exc}"
            ) from exc
        self.tally[f"{case.protocol}: {label}"] += 1
        self.seconds[f"{case.transport} {case.protocol}: {label}"] += took


def assert_alive(server: EdgeServer) -> None:
    os.kill(server.pid, 0)


def warm_up(server: EdgeServer) -> None:
    """Valid calls of every kind, so that memory is measured from a process that
    has imported, compiled and cached what serving takes."""
    json_type = as_headers([("content-type", "application/json")])
    for _ in range(30):
        h1(server.url, "POST", f"/{SERVICE}/EnqueueJob", json_type, b'{"type": "warm"}')
        h1(
            server.url,
            "POST",
            f"/{SERVICE}/GetJob",
            json_type,
            json.dumps({"id": str(uuid.uuid4())}).encode(),
        )
        with H2(server.url) as client:
            grpc = as_headers([("content-type", "application/grpc"), ("te", "trailers")])
            client.request("POST", f"/{HEALTH}/Check", grpc, envelope(b""))
            grpc_json = as_headers([("content-type", "application/grpc+json"), ("te", "trailers")])
            client.request(
                "POST", f"/{REFLECTION}/ServerReflectionInfo", grpc_json, envelope(b'{"listServices": ""}')
            )
        h1(server.url, "POST", f"/{SERVICE}/EnqueueJob", [*json_type, (b"content-encoding", b"gzip")], BOMB)


def fuzz_settings() -> Callable[[Any], Any]:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=EXAMPLES == DEFAULT_EXAMPLES,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# A long run (JOBQUEUE_FUZZ_EXAMPLES) outlasts the suite's per-test timeout.
@pytest.mark.timeout(180 + EXAMPLES // 20)
def test_fuzz_edge(edge_server: EdgeServer) -> None:
    client = redis.Redis.from_url(edge_server.redis_url)
    run = Run(edge_server, client)
    watch = LogWatch(edge_server.log)
    warm_up(edge_server)
    rss_before = rss_bytes(edge_server.pid)
    keys_before = sum(1 for _ in client.scan_iter(match=f"{edge_server.prefix}:*", count=1000))
    jobs_before = run.job_keys()
    started = time.monotonic()

    @fuzz_settings()
    @given(case=cases())
    def one(case: Case) -> None:
        run.one(case)

    try:
        one()
    finally:
        client.close()
    took = time.monotonic() - started
    rss_after = rss_bytes(edge_server.pid)
    latency = health_latency(edge_server.url)
    with redis.Redis.from_url(edge_server.redis_url) as again:
        keys_after = sum(1 for _ in again.scan_iter(match=f"{edge_server.prefix}:*", count=1000))
        jobs_after = sum(1 for _ in again.scan_iter(match=f"{edge_server.prefix}:*:job:*", count=1000))
    figures = {
        "server": edge_server.kind,
        "cases": run.cases,
        "seconds": round(took, 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "health_s": round(latency, 4),
        "redis_keys_before": keys_before,
        "redis_keys_after": keys_after,
        "jobs_stored": jobs_after - jobs_before,
        "jobs_accepted": run.accepted_jobs,
        "jobs_maybe_cut_short": run.uncertain_jobs,
        "answers": dict(sorted(run.tally.items())),
        "slowest": {label: round(s, 1) for label, s in run.seconds.most_common(5)},
    }
    print(json.dumps(figures, indent=1))
    report = os.environ.get("JOBQUEUE_FUZZ_REPORT")
    if report:
        with contextlib.suppress(OSError), Path(report).open("a") as out:
            out.write(json.dumps(figures) + "\n")
    assert run.tally.get("connect: ok", 0) + run.tally.get("grpc: ok", 0) > 0  # the fuzz reached the handlers
    assert not any(label.endswith(": unknown") for label in run.tally), run.tally
    assert rss_after - rss_before < MEMORY_BOUND, figures
    assert latency < HEALTH_WITHIN_S, figures
    assert jobs_after - jobs_before <= run.accepted_jobs + run.uncertain_jobs, figures
    watch.assert_quiet()


def test_case_strategy_builds_requests() -> None:
    """The strategy itself: it yields requests of every protocol (cheap, no server)."""
    seen = set()

    @settings(max_examples=200, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def collect(case: Case) -> None:
        seen.add(case.protocol)

    collect()
    assert seen == {"connect", "connect-get", "connect-stream", "grpc", "grpc-web"}
