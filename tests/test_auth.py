"""Auth with roles (docs/security.md) through real clients, against `jobqueue server`
subprocesses with a tokens file: every JobService RPC for every kind of caller over
gRPC (grpcio), Connect JSON and gRPC-Web; health and reflection; WhoAmI; the Python
client and the CLI with a token; the tokens file (malformed, rotation, re-read);
the /metrics gate; what a refusal stores and logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.auth import (
    ROLES,
    TokensFile,
    TokensFileError,
    file_line,
    methods_of,
    new_token,
    service_methods,
)
from jobqueue.auth.tokens import parse_tokens
from jobqueue.client import Client, SyncClient

from .conftest import ROOT, jobqueue_server, until
from .edge import error_lines
from .test_api import SERVICE, UNKNOWN_ID, Ran, curl, grpcurl_json, host_port, post_json, run, tool

# What the issue grants each role, written out here rather than read from
# jobqueue/auth/roles.py, so that a change of the code's table fails this test.
PRODUCER = {
    "EnqueueJob", "EnqueueJobs", "GetJob", "WaitJob", "CancelJob", "RetryJob", "WatchJob", "WatchJobs",
    "WhoAmI",
}  # fmt: skip
READER = {"GetJob", "WaitJob", "ListJobs", "GetQueueStats", "WatchJob", "WatchJobs", "ListWorkers", "WhoAmI"}
CALLERS = ("none", "wrong", "reader", "producer", "admin")
REFUSALS = ("unauthenticated", "permission_denied")
PREFIX = "auth-test"
STREAMS = {"WatchJob", "WatchJobs"}
REFLECTION_INFO = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


@dataclasses.dataclass(frozen=True)
class AuthServer:
    url: str
    tokens: dict[str, str]  # caller -> token ("none": no token)
    tokens_file: Path
    log: Path


def _write_tokens(path: Path, lines: list[str]) -> None:
    """Replaces the file in one rename, as an editor or a deployment tool would."""
    new = path.with_suffix(".new")
    new.write_text("# jobqueue tokens: ROLE sha256:HEX\n" + "\n".join(lines) + "\n")
    new.replace(path)


@contextlib.contextmanager
def _auth_server(
    redis_url: str, directory: Path, server: str = "hypercorn", **env: str
) -> Iterator[AuthServer]:
    tokens = {role: new_token() for role in ROLES}
    tokens["reader2"] = new_token()  # rotation: a second token of one role
    lines = [f"{file_line(role, tokens[role])}  # {role}" for role in ROLES]
    lines.append(file_line("reader", tokens["reader2"]))
    path = directory / "tokens"
    _write_tokens(path, lines)
    log = directory / "server.log"
    with jobqueue_server(
        redis_url, log, server=server, JOBQUEUE_AUTH_TOKENS_FILE=str(path), JOBQUEUE_PREFIX=PREFIX,
        JOBQUEUE_CORS_ORIGINS="https://app.example", **env,
    ) as url:  # fmt: skip
        yield AuthServer(url, {**tokens, "none": "", "wrong": new_token()}, path, log)
    text = log.read_text(errors="replace")
    assert not error_lines(text), text[-3000:]
    warnings = [line for line in text.splitlines() if " WARNING " in line and "tokens file" not in line]
    assert not warnings, warnings  # the reload test's malformed file is the one warned of
    leaked = [caller for caller, token in tokens.items() if token in text]
    assert not leaked, f"tokens of {leaked} in the server's log"


@pytest.fixture(scope="module")
def auth(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server with auth on and the default settings otherwise (reflection open)."""
    with _auth_server(redis_url, tmp_path_factory.mktemp("auth")) as server:
        yield server


@pytest.fixture(scope="module")
def closed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A server with auth on and reflection for valid tokens only; the reload test edits its file."""
    directory = tmp_path_factory.mktemp("auth-closed")
    with _auth_server(redis_url, directory, JOBQUEUE_AUTH_REFLECTION_OPEN="false") as server:
        yield server


async def grpcurl(
    url: str, *args: str, token: str = "", data: dict[str, Any] | None = None, options: Sequence[str] = ()
) -> Ran:
    """grpcurl, with `authorization: Bearer <token>` when given one; `options` go before the address."""
    header = ["-H", f"authorization: Bearer {token}"] if token else []
    data_args = ["-d", json.dumps(data)] if data is not None else []
    return await run(
        tool("grpcurl"), "-plaintext", "-max-time", "20", *header, *data_args, *options, host_port(url), *args
    )


def expected(caller: str, method: str) -> str:
    """'unauthenticated', 'permission_denied' or 'allowed'."""
    if caller in ("none", "wrong"):
        return "unauthenticated"
    allowed = {"admin": set(service_methods()), "producer": PRODUCER, "reader": READER}[caller]
    return "allowed" if method in allowed else "permission_denied"


def outcome(code: str) -> str:
    return code if code in REFUSALS else "allowed"


# -- the requests of the table: harmless ones, on a type of the table's own --------

TABLE_TYPE = f"auth-table-{uuid.uuid4().hex[:8]}"


def _requests(job_id: str) -> dict[str, Any]:
    """A request for each method; `job_id` is for the methods on one job."""
    job_filter = pb.JobFilter(type=TABLE_TYPE)
    return {
        "EnqueueJob": pb.EnqueueJobRequest(type=TABLE_TYPE, payload=b"x"),
        "EnqueueJobs": pb.EnqueueJobsRequest(jobs=[pb.EnqueueJobRequest(type=TABLE_TYPE)]),
        "GetJob": pb.GetJobRequest(id=job_id),
        "WaitJob": pb.WaitJobRequest(id=job_id),  # no timeout: it answers at once
        "CancelJob": pb.CancelJobRequest(id=job_id),
        "RetryJob": pb.RetryJobRequest(id=job_id),
        "ListJobs": pb.ListJobsRequest(filter=job_filter),
        "GetQueueStats": pb.GetQueueStatsRequest(type=TABLE_TYPE),
        "WatchJob": pb.WatchJobRequest(id=job_id),
        "WatchJobs": pb.WatchJobsRequest(type=TABLE_TYPE),
        "ListWorkers": pb.ListWorkersRequest(type=TABLE_TYPE),
        "PauseQueue": pb.PauseQueueRequest(type=TABLE_TYPE),
        "ResumeQueue": pb.ResumeQueueRequest(type=TABLE_TYPE),
        "SetQueuePartitions": pb.SetQueuePartitionsRequest(type=TABLE_TYPE, partitions=1),
        "RetryJobs": pb.RetryJobsRequest(filter=job_filter),
        "CancelJobs": pb.CancelJobsRequest(filter=job_filter),
        "DeleteJobs": pb.DeleteJobsRequest(
            filter=pb.JobFilter(type=TABLE_TYPE, status=pb.JobStatus.COMPLETED)
        ),
        "WhoAmI": pb.WhoAmIRequest(),
    }


REQUESTS = _requests(UNKNOWN_ID)
# Calls that every caller allowed them must get through whole (a stream: its first message).
ANSWERED = ("GetJob", "WaitJob", "WatchJob", "WatchJobs", "WhoAmI", "GetQueueStats", "EnqueueJob")


def test_the_table_covers_every_rpc() -> None:
    assert set(REQUESTS) == set(service_methods())
    assert len(service_methods()) == 18  # a new RPC must join the table


# -- three protocols, each call answering its code's name (or "ok") ---------------------


def _headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def call_grpc(channel: grpc.Channel, method: str, token: str, requests: dict[str, Any] = REQUESTS) -> str:
    """grpcio over h2c; a stream counts as open with its first message."""
    path = f"/{SERVICE}/{method}"
    metadata = tuple(_headers(token).items())
    body = requests[method].to_binary()
    try:
        if method in STREAMS:
            stream = channel.unary_stream(path)(body, metadata=metadata, timeout=20)
            try:
                next(stream)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(path)(body, metadata=metadata, timeout=20)
    except grpc.RpcError as error:
        return str(error.code().name).lower()  # type: ignore[attr-defined]
    return "ok"


def _post(url: str, method: str, content_type: str, body: bytes, token: str) -> http.client.HTTPResponse:
    """A POST to `method` (of JobService, or a full path)."""
    connection = http.client.HTTPConnection(host_port(url), timeout=20)
    headers = {"content-type": content_type, **_headers(token)}
    path = method if method.startswith("/") else f"/{SERVICE}/{method}"
    connection.request("POST", path, body=body, headers=headers)
    return connection.getresponse()


def _envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def _read_frame(response: http.client.HTTPResponse) -> tuple[int, bytes]:
    flags, length = struct.unpack(">BI", response.read(5))
    return flags, response.read(length)


def call_connect_json(url: str, method: str, token: str, requests: dict[str, Any] = REQUESTS) -> str:
    """Connect with JSON: unary as application/json, a stream as application/connect+json."""
    body = requests[method].to_json().encode()
    if method not in STREAMS:
        response = _post(url, method, "application/json", body, token)
        reply = json.loads(response.read() or b"{}")
        return "ok" if response.status == 200 else str(reply["code"])
    response = _post(url, method, "application/connect+json", _envelope(0, body), token)
    try:
        flags, data = _read_frame(response)
    finally:
        response.close()
    if flags & 0x02:  # end of stream: an error, or none
        error = json.loads(data).get("error")
        return str(error["code"]) if error else "ok"
    return "ok"  # a message: the stream is open


def call_grpc_web(url: str, method: str, token: str, requests: dict[str, Any] = REQUESTS) -> str:
    """gRPC-Web (binary): the status in the headers (trailers-only) or the trailer frame."""
    body = _envelope(0, requests[method].to_binary())
    response = _post(url, method, "application/grpc-web+proto", body, token)
    try:
        status = response.getheader("grpc-status")
        if status is None:
            flags, data = _read_frame(response)
            if not flags & 0x80:  # a message: the call went through
                return "ok"
            found = re.search(rb"grpc-status:\s*(\d+)", data)
            assert found, data
            status = found[1].decode()
    finally:
        response.close()
    return "ok" if status == "0" else _GRPC_CODES[int(status)]


# 16 -> "unauthenticated", 7 -> "permission_denied"...
_GRPC_CODES = {code.value[0]: code.name.lower() for code in grpc.StatusCode}


Call = Callable[[str, str, dict[str, Any]], str]  # method, token, requests -> code


def _run_table(server: AuthServer, call: Call) -> None:
    """Every method for every caller, 8 calls at a time, on a job of the table's own
    (due in an hour: no worker takes it; the callers allowed to may cancel and retry it)."""
    with SyncClient(server.url, token=server.tokens["admin"]) as admin:
        job = admin.enqueue(TABLE_TYPE, "x", int(time.time() * 1000) + 3_600_000)
    requests = _requests(job.id)
    cases = [(method, caller) for method in requests for caller in CALLERS]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda case: call(case[0], server.tokens[case[1]], requests), cases))
    wrong = [
        f"{method} as {caller}: {code} (expected {expected(caller, method)})"
        for (method, caller), code in zip(cases, codes, strict=True)
        if outcome(code) != expected(caller, method)
        or (method in ANSWERED and expected(caller, method) == "allowed" and code != "ok")
    ]
    assert not wrong, "\n".join(wrong)
    # Every call the check let through met a handler that knew it.
    assert not {"unknown", "internal", "unimplemented"} & set(codes), codes


def test_every_rpc_for_every_caller_over_grpc(auth: AuthServer) -> None:
    with grpc.insecure_channel(host_port(auth.url)) as channel:
        _run_table(auth, lambda method, token, requests: call_grpc(channel, method, token, requests))


def test_every_rpc_for_every_caller_over_connect_json(auth: AuthServer) -> None:
    _run_table(auth, lambda method, token, requests: call_connect_json(auth.url, method, token, requests))


def test_every_rpc_for_every_caller_over_grpc_web(auth: AuthServer) -> None:
    _run_table(auth, lambda method, token, requests: call_grpc_web(auth.url, method, token, requests))


@pytest.mark.skipif(shutil.which("h2corn") is None, reason="h2corn is not installed")
def test_the_same_checks_under_h2corn(redis_url: str, tmp_path: Path) -> None:
    """h2corn's process reads the settings from its environment: the same checks, unary and streams."""
    with _auth_server(redis_url, tmp_path, server="h2corn") as server:
        tokens = server.tokens
        with grpc.insecure_channel(host_port(server.url)) as channel:
            assert call_grpc(channel, "GetQueueStats", tokens["reader"]) == "ok"
            assert call_grpc(channel, "PauseQueue", tokens["reader"]) == "permission_denied"
            assert call_grpc(channel, "WatchJobs", tokens["producer"]) == "ok"
            assert call_grpc(channel, "WatchJobs", "") == "unauthenticated"
        assert call_connect_json(server.url, "WatchJob", tokens["wrong"]) == "unauthenticated"
        assert call_grpc_web(server.url, "ListJobs", tokens["producer"]) == "permission_denied"
        with SyncClient(server.url, token=tokens["admin"]) as client:
            assert client.who_am_i().role == "admin"


async def test_refusals_say_what_and_not_which_part(auth: AuthServer) -> None:
    none = await post_json(auth.url, "GetJob", json.dumps({"id": UNKNOWN_ID}))
    assert (none.status, none.json()) == (401, {"code": "unauthenticated", "message": "missing bearer token"})
    basic = await post_json(auth.url, "GetJob", "{}", "-H", "Authorization: Basic dXNlcjpwYXNz")
    assert basic.json()["message"] == "missing bearer token"
    # A wrong token, and one that differs from a listed one in its last character: the same answer.
    listed = auth.tokens["admin"]
    for token in (auth.tokens["wrong"], listed[:-1] + ("A" if listed[-1] != "A" else "B")):
        wrong = await post_json(auth.url, "GetJob", "{}", "-H", f"Authorization: Bearer {token}")
        assert (wrong.status, wrong.json()) == (401, {"code": "unauthenticated", "message": "invalid token"})
    denied = await post_json(
        auth.url, "PauseQueue", '{"type": "x"}', "-H", f"Authorization: Bearer {auth.tokens['reader']}"
    )
    assert (denied.status, denied.json()) == (
        403, {"code": "permission_denied", "message": "role reader may not call PauseQueue"},
    )  # fmt: skip
    over_grpc = await grpcurl(auth.url, f"{SERVICE}/DeleteJobs", token=auth.tokens["producer"], data={})
    assert over_grpc.code != 0
    assert "PermissionDenied" in over_grpc.err
    assert "role producer may not call DeleteJobs" in over_grpc.err


async def test_a_refused_call_stores_nothing(auth: AuthServer, redis_url: str) -> None:
    job_type = f"refused-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"type": job_type, "payload": "aGk="})
    for token in ("", auth.tokens["wrong"], auth.tokens["reader"]):
        reply = await post_json(
            auth.url, "EnqueueJob", body, *(["-H", f"Authorization: Bearer {token}"] if token else [])
        )
        assert reply.json()["code"] in REFUSALS
    for role in ("reader", "producer"):
        reply = await post_json(auth.url, "PauseQueue", json.dumps({"type": job_type}),
                                "-H", f"Authorization: Bearer {auth.tokens[role]}")  # fmt: skip
        assert reply.json()["code"] == "permission_denied"
    async with Redis.from_url(redis_url) as redis:
        assert not await redis.sismember(f"{PREFIX}:types", job_type)
        assert [key async for key in redis.scan_iter(match=f"{PREFIX}:*{job_type}*")] == []
    allowed = await post_json(
        auth.url, "EnqueueJob", body, "-H", f"Authorization: Bearer {auth.tokens['producer']}"
    )
    assert allowed.status == 200, allowed
    async with Redis.from_url(redis_url) as redis:
        assert await redis.sismember(f"{PREFIX}:types", job_type)


# -- health, reflection ---------------------------------------------------------------


@pytest.mark.parametrize("caller", ["none", "wrong"])
async def test_health_is_open(auth: AuthServer, closed: AuthServer, caller: str) -> None:
    for server in (auth, closed):
        # With reflection closed, grpcurl reads the service from its proto file.
        proto = [] if server is auth else ["-import-path", "proto", "-proto", "grpc/health/v1/health.proto"]
        ran = await grpcurl(
            server.url, "grpc.health.v1.Health/Check", token=server.tokens[caller], data={}, options=proto
        )
        assert grpcurl_json(ran) == {"status": "SERVING"}
        reply = await curl("-H", "Content-Type: application/json", "--data-binary", "{}",
                           f"{server.url}/grpc.health.v1.Health/Check")  # fmt: skip
        assert reply.json() == {"status": "SERVING"}


async def test_reflection_is_open_by_default(auth: AuthServer) -> None:
    listed = await grpcurl(auth.url, "list")
    assert listed.code == 0, listed
    assert SERVICE in listed.out.split()
    described = await grpcurl(auth.url, "describe", f"{SERVICE}.WhoAmI")
    assert described.code == 0, described


def reflection_over_connect(url: str, token: str) -> dict[str, Any]:
    """ServerReflectionInfo's first answer over Connect (JSON, the request body sent whole)."""
    body = b'{"listServices": ""}'
    response = _post(url, REFLECTION_INFO, "application/connect+json", _envelope(0, body), token)
    try:
        _, data = _read_frame(response)
    finally:
        response.close()
    reply: dict[str, Any] = json.loads(data)
    return reply


async def test_reflection_needs_a_token_when_closed(closed: AuthServer) -> None:
    # Over Connect: a refusal over gRPC waits for the client's end of the stream
    # (drain.py), which a gRPC reflection client never sends: it gives up after 5 s.
    assert reflection_over_connect(closed.url, "")["error"] == {
        "code": "unauthenticated", "message": "missing bearer token",
    }  # fmt: skip
    assert reflection_over_connect(closed.url, closed.tokens["wrong"])["error"]["code"] == "unauthenticated"
    services = reflection_over_connect(closed.url, closed.tokens["reader"])["listServicesResponse"]["service"]
    assert {"name": SERVICE} in services
    listed = await grpcurl(closed.url, "list", token=closed.tokens["reader"])
    assert listed.code == 0, listed
    assert SERVICE in listed.out.split()


# -- WhoAmI ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_who_am_i_per_role(auth: AuthServer, role: str) -> None:
    over_grpc = grpcurl_json(await grpcurl(auth.url, f"{SERVICE}/WhoAmI", token=auth.tokens[role], data={}))
    want = {"admin": set(service_methods()), "producer": PRODUCER, "reader": READER}[role]
    assert over_grpc["authEnabled"] is True
    assert over_grpc["role"] == role
    assert set(over_grpc["methods"]) == want
    async with Client(auth.url, token=auth.tokens[role]) as client:
        caller = await client.who_am_i()
    assert (caller.auth_enabled, caller.role, set(caller.methods)) == (True, role, want)


async def test_who_am_i_without_auth(server_url: str) -> None:
    with SyncClient(server_url) as client:
        caller = client.who_am_i()
    assert (caller.auth_enabled, caller.role, caller.methods) == (False, "admin", service_methods())


# -- the Python client and the CLI ----------------------------------------------------


async def test_python_clients_with_a_token(auth: AuthServer) -> None:
    async with Client(auth.url, token=auth.tokens["producer"]) as producer:
        job = await producer.enqueue("auth-client", "hi")
        assert (await producer.get(job.id)).payload == b"hi"
        async with await producer.watch_job(job.id) as events:  # a stream with the token
            await producer.cancel(job.id)
            statuses = [event.status.name async for event in events]
        assert statuses[-1] == "CANCELLED"
        with pytest.raises(ConnectError) as denied:
            await producer.stats()
        assert denied.value.code is Code.PERMISSION_DENIED
    with SyncClient(auth.url, token=auth.tokens["reader"], json=True) as reader:
        assert reader.get(job.id).id == job.id
        reader.watch_jobs("auth-client").close()
        with pytest.raises(ConnectError) as denied:
            reader.enqueue("auth-client")
        assert denied.value.code is Code.PERMISSION_DENIED
    for client in (SyncClient(auth.url), SyncClient(auth.url, token=auth.tokens["wrong"])):
        with client:
            with pytest.raises(ConnectError) as refused:
                client.get(job.id)
            assert refused.value.code is Code.UNAUTHENTICATED
            with pytest.raises(ConnectError) as refused:
                client.watch_job(job.id)
            assert refused.value.code is Code.UNAUTHENTICATED


@pytest.mark.parametrize("token", ["", "a b", "tok\nen", "\u00e9t\u00e9"])
def test_a_token_that_cannot_be_a_header_is_refused_before_any_call(token: str) -> None:
    with pytest.raises(ValueError, match="token must be printable ASCII") as refused:
        SyncClient("http://127.0.0.1:1", token=token)
    assert token not in str(refused.value) or not token


def jobqueue_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args], capture_output=True, text=True, timeout=60,
        cwd=ROOT, check=False, env={**os.environ, "JOBQUEUE_TOKEN": "", **env},
    )  # fmt: skip


def test_cli_with_a_token(auth: AuthServer) -> None:
    url = ["--url", auth.url]
    enqueued = jobqueue_cli("enqueue", "auth-cli", "hi", "-q", "--token", auth.tokens["producer"], *url)
    assert enqueued.returncode == 0, enqueued
    job_id = enqueued.stdout.strip()
    got = jobqueue_cli("get", job_id, "--json", *url, JOBQUEUE_TOKEN=auth.tokens["reader"])
    assert got.returncode == 0, got
    assert json.loads(got.stdout)["id"] == job_id
    whoami = jobqueue_cli("whoami", "--json", *url, JOBQUEUE_TOKEN=auth.tokens["reader"])
    assert json.loads(whoami.stdout) == {
        "auth_enabled": True,
        "role": "reader",
        "methods": list(methods_of("reader")),
    }
    missing = jobqueue_cli("get", job_id, *url)
    assert missing.returncode == 3, missing  # refused
    assert missing.stderr.strip() == (
        "jobqueue: unauthenticated: missing bearer token: "
        "set --token or JOBQUEUE_TOKEN (the server has auth on)"
    )
    denied = jobqueue_cli("pause", "auth-cli", *url, JOBQUEUE_TOKEN=auth.tokens["reader"])
    assert (denied.returncode, denied.stderr.strip()) == (
        3, "jobqueue: permission_denied: role reader may not call PauseQueue",
    )  # fmt: skip
    watch = jobqueue_cli("watch", job_id, *url, JOBQUEUE_TOKEN=auth.tokens["wrong"])
    assert (watch.returncode, "invalid token" in watch.stderr) == (3, True), watch


def test_cli_token_new_prints_a_token_and_its_line() -> None:
    made = jobqueue_cli("token", "new", "--role", "producer", "--json")
    assert made.returncode == 0, made
    token = json.loads(made.stdout)
    assert token["token"].startswith("jq_")
    assert len(token["token"]) >= 40  # 256 random bits
    assert token["line"] == file_line("producer", token["token"])
    (entry,) = parse_tokens(token["line"], "made")
    assert entry.role == "producer"
    human = jobqueue_cli("token", "new", "--role", "reader")
    assert "reader sha256:" in human.stdout
    bad = jobqueue_cli("token", "new", "--role", "writer")
    assert bad.returncode == 2  # usage


# -- the tokens file ------------------------------------------------------------------

HASH = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"admin {HASH}\nreader\n", "line 2: expected ROLE sha256:HEX"),
        (f"# ok\n\nwriter {HASH}\n", "line 3: the role is none of admin, producer, reader"),
        ("reader jq_pasted-the-token-itself\n", "line 1: the token's hash must be sha256: and 64 hex digits"),
        ("reader sha256:abc\n", "line 1: the token's hash must be sha256:"),
        (
            f"reader {HASH} extra\n",
            "line 1: expected ROLE sha256:HEX (the line `jobqueue token new` prints), found 3",
        ),
        (
            f"reader {HASH}\nadmin {HASH.upper().replace('SHA256', 'sha256')}\n",
            "line 2: the same token as line 1",
        ),
    ],
)
def test_a_malformed_tokens_file_names_the_line(text: str, error: str) -> None:
    with pytest.raises(TokensFileError, match=re.escape(f"tokens file tokens.txt, {error}")) as refused:
        parse_tokens(text, "tokens.txt")
    assert "jq_pasted" not in str(refused.value)  # never what the line holds


def test_comments_blank_lines_and_several_tokens_per_role() -> None:
    text = f"# who\n\nreader {HASH}  # ci\n  producer sha256:{'cd' * 32}\nreader sha256:{'ef' * 32}\n"
    assert [(e.role, e.line) for e in parse_tokens(text, "t")] == [
        ("reader", 3),
        ("producer", 4),
        ("reader", 5),
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (f"admin {HASH}\nreader nothash\n", "line 2: the token's hash must be"),
        ("# nothing yet\n", "lists no token"),
        (None, "no such file"),
    ],
)
def test_the_server_refuses_to_start_with_a_bad_tokens_file(
    tmp_path: Path, redis_url: str, content: str | None, error: str
) -> None:
    path = tmp_path / "tokens"
    if content is not None:
        path.write_text(content)
    ran = jobqueue_cli(
        "server", "--host", "127.0.0.1", "--port", "1", "--auth-tokens", str(path), REDIS_URL=redis_url
    )
    assert ran.returncode == 1, ran
    assert ran.stderr.startswith(f"jobqueue server: tokens file {path}"), ran.stderr
    assert error in ran.stderr
    assert "Traceback" not in ran.stderr


async def test_two_tokens_of_one_role_both_work(auth: AuthServer) -> None:
    for name in ("reader", "reader2"):
        async with Client(auth.url, token=auth.tokens[name]) as client:
            assert (await client.who_am_i()).role == "reader"


def test_the_tokens_file_is_read_again_when_it_changes(closed: AuthServer) -> None:
    """Rotation without a restart: a new reader token replaces an old one; a version
    that does not parse leaves the tokens in force."""

    def role(token: str) -> str:
        reply = SyncClient(closed.url, token=token)
        try:
            return reply.who_am_i().role
        except ConnectError as refused:
            return refused.code.value
        finally:
            reply.close()

    old, new = closed.tokens["reader2"], new_token()
    assert role(new) == "unauthenticated"
    lines = [file_line(role, closed.tokens[role]) for role in ROLES] + [file_line("reader", old)]
    _write_tokens(closed.tokens_file, [*lines, file_line("reader", new)])
    until(lambda: role(new) == "reader", "the new token to be accepted", timeout=10)
    _write_tokens(
        closed.tokens_file,
        [line for line in lines if line != file_line("reader", old)] + [file_line("reader", new)],
    )
    until(lambda: role(old) == "unauthenticated", "the old token to be refused", timeout=10)
    _write_tokens(closed.tokens_file, ["reader not-a-hash"])
    # Read again on a call (at most every second): the calls go on with the tokens read before.
    until(
        lambda: role(new) == "reader" and "line 2: the token's hash must be" in closed.log.read_text(),
        "the malformed version refused in the log",
        timeout=10,
    )
    assert role(closed.tokens["admin"]) == "admin"


# -- non-RPC paths, CORS, logs -------------------------------------------------------


async def test_metrics_needs_a_token_and_the_dashboard_does_not(auth: AuthServer, server_url: str) -> None:
    none = await curl(f"{auth.url}/metrics")
    assert none.status == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="jobqueue"'
    assert none.body == "missing bearer token\n"
    wrong = await curl("-H", f"Authorization: Bearer {auth.tokens['wrong']}", f"{auth.url}/metrics")
    assert (wrong.status, wrong.headers["www-authenticate"]) == (
        401,
        'Bearer realm="jobqueue", error="invalid_token"',
    )
    for role in ROLES:  # any role may scrape
        scraped = await curl("-H", f"Authorization: Bearer {auth.tokens[role]}", f"{auth.url}/metrics")
        assert scraped.status == 200 and "jobqueue_rpcs_total" in scraped.body, role
    for path in ("/metrics/", "/metrics/x"):
        assert (await curl(f"{auth.url}{path}")).status == 401, path
    for path in ("/", "/index.html", "/assets/app.js", "/metricsx"):
        assert (await curl(f"{auth.url}{path}")).status != 401, path
    assert (await curl(f"{server_url}/metrics")).status == 200  # auth off


async def test_cors_lets_browsers_send_the_token(auth: AuthServer) -> None:
    preflight = await curl(
        "-X", "OPTIONS", "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: POST",
        "-H", "Access-Control-Request-Headers: authorization, content-type", f"{auth.url}/{SERVICE}/WhoAmI",
    )  # fmt: skip
    assert preflight.status == 204
    allowed = [h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")]
    assert "authorization" in allowed
    refused = await post_json(auth.url, "WhoAmI", "{}", "-H", "Origin: https://app.example")
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == "https://app.example"  # the browser can read why


async def test_refusals_are_logged_below_error_without_the_token(auth: AuthServer) -> None:
    token = auth.tokens["wrong"]
    await post_json(auth.url, "GetJob", "{}", "-H", f"Authorization: Bearer {token}")
    until(lambda: "refused" in auth.log.read_text(), "a refusal in the log", timeout=10)
    text = auth.log.read_text()
    line = r" INFO jobqueue\.server\.auth: refused [\w/]+ from 127\.0\.0\.1:\d+: "
    assert re.search(line + r"(missing bearer token|invalid token|role \w+)", text), text[-2000:]
    assert token not in text
    assert not error_lines(text)


def test_the_docs_table_is_the_code_table() -> None:
    """docs/security.md's table: a row per method, a column per role, ✓ where it may call."""
    doc = (ROOT / "docs" / "security.md").read_text()
    header = re.search(r"^\| method \|(.*)\|$", doc, re.MULTILINE)
    assert header, "no roles table in docs/security.md"
    roles = [cell.strip().strip("`") for cell in header[1].split("|")]
    assert roles == list(ROLES)
    rows = re.findall(r"^\| `(\w+)` \|(.*)\|$", doc, re.MULTILINE)
    assert [method for method, _ in rows] == list(service_methods())
    for method, cells in rows:
        marks = [cell.strip() for cell in cells.split("|")]
        granted = {role for role, mark in zip(roles, marks, strict=True) if mark == "✓"}
        assert granted == {role for role in ROLES if method in methods_of(role)}, method


def test_the_auth_bench_runs() -> None:
    """bench/auth_cost.py at a tiny size (its figures are in docs/performance.md, not checked here)."""
    ran = subprocess.run(
        [sys.executable, "bench/auth_cost.py", "--calls", "64", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "on/off" in ran.stdout
    assert "Tokens.role_of, 100 tokens" in ran.stdout


def test_a_reread_follows_the_file_and_keeps_the_tokens_when_it_cannot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TokensFile on a clock of the test's: at most one look per check_every_s; a file
    emptied revokes every token; a file gone or malformed keeps the tokens read before."""
    path, now = tmp_path / "tokens", [0.0]
    first, second = new_token(), new_token()
    _write_tokens(path, [file_line("reader", first)])
    tokens = TokensFile(str(path), check_every_s=1.0, clock=lambda: now[0])
    _write_tokens(path, [file_line("admin", second)])
    assert tokens.current().role_of(second) is None  # not yet looked at again
    now[0] = 1.0
    assert (tokens.current().role_of(first), tokens.current().role_of(second)) == (None, "admin")
    path.unlink()
    now[0] = 2.0
    assert tokens.current().role_of(second) == "admin"
    assert "is gone; keeping the 1 token(s) read before" in caplog.text
    _write_tokens(path, ["admin sha256:nothex"])
    now[0] = 3.0
    assert tokens.current().role_of(second) == "admin"
    assert "line 2: the token's hash must be" in caplog.text
    assert "nothex" not in caplog.text
    _write_tokens(path, [])
    now[0] = 4.0
    assert tokens.current().role_of(second) is None
    assert tokens.current().entries == ()
