"""The API server through real clients: grpcurl, grpcio, connectrpc, curl and buf curl.

Every test talks to conftest's `jobqueue server` subprocess (`server_url`).
The rules for bad input, health and Redis outages are in test_api_errors.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import grpc
import pyqwest
import pytest
from connectrpc.code import Code
from connectrpc.codec import proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from redis.asyncio import Redis

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from jobqueue.client import Client
from jobqueue.model import MAX_TIME_MS, Job, JobStatus
from jobqueue.store.outcomes import OK, Outcome, Result

from .conftest import ROOT, eventually
from .harness import Harness

pytestmark = pytest.mark.redis_targets

SERVICE = "mpataki.jobqueue.v1.JobService"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
BINARY = bytes(range(256))

# -- running the command-line clients -------------------------------------------


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def tool(name: str) -> str:
    """A client that comes with the dev extras (in the venv) or the system (curl)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed")
    return found


async def run(*argv: str, stdin: bytes | None = None, limit_s: float = 30.0) -> Ran:
    """Runs a command without blocking the event loop; kills its process group on timeout."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), limit_s)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        pytest.fail(f"{argv[0]} {argv[1:]} did not finish within {limit_s} s")
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def host_port(server_url: str) -> str:
    return server_url.removeprefix("http://")


async def grpcurl(server_url: str, *args: str, data: dict[str, Any] | None = None) -> Ran:
    data_args = ["-d", json.dumps(data)] if data is not None else []
    return await run(
        tool("grpcurl"), "-plaintext", "-max-time", "20", *data_args, host_port(server_url), *args
    )


def grpcurl_json(ran: Ran) -> dict[str, Any]:
    assert ran.code == 0, ran
    result: dict[str, Any] = json.loads(ran.out)
    return result


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


async def curl(*args: str, stdin: bytes | None = None) -> HttpReply:
    """curl with the response headers (-D -) before the body; 1xx responses are skipped."""
    ran = await run(tool("curl"), "-sS", "--max-time", "20", "-D", "-", *args, stdin=stdin)
    assert ran.code == 0, ran
    rest = ran.out
    while True:
        head, _, rest = rest.partition("\r\n\r\n")
        status_line, *lines = head.split("\r\n")
        status = int(status_line.split()[1])
        if status >= 200:
            break
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpReply(status, headers, rest)


async def post_json(server_url: str, method: str, body: str, *extra: str) -> HttpReply:
    """A Connect unary call the way curl's README examples send it."""
    url = f"{server_url}/{SERVICE}/{method}"
    return await curl(
        "-H", "Content-Type: application/json", "--data-binary", "@-", *extra, url, stdin=body.encode()
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_clean(message: str) -> None:
    """No traceback, exception class or source path reaches a client."""
    assert "Traceback" not in message
    assert not re.search(r'File "|\.py\b|site-packages|/jobqueue/|Error\(', message), message


def assert_job_id(job_id: str) -> None:
    assert str(uuid.UUID(job_id)) == job_id, f"{job_id!r} is not a canonical UUID string"


# -- connectrpc clients -----------------------------------------------------------------

PROTOCOLS = ("grpc", "grpc-web", "connect-json", "connect-proto")


@contextlib.asynccontextmanager
async def job_client(server_url: str, protocol: str) -> AsyncIterator[JobServiceClient]:
    """connectrpc's generated client; gRPC needs HTTP/2 (h2c, prior knowledge)."""
    version = pyqwest.HTTPVersion.HTTP2 if protocol in ("grpc", "connect-h2c") else pyqwest.HTTPVersion.HTTP1
    kind = {"grpc": ProtocolType.GRPC, "grpc-web": ProtocolType.GRPC_WEB}.get(protocol, ProtocolType.CONNECT)
    codec = proto_json_codec() if protocol == "connect-json" else None
    async with pyqwest.HTTPTransport(http_version=version) as transport:
        client = JobServiceClient(
            server_url, protocol=kind, codec=codec, http_client=pyqwest.Client(transport), timeout_ms=20_000
        )
        async with client:
            yield client


async def claim(store: Harness, redis_url: str, job_type: str, job_id: str) -> Job:
    """Pops and claims a ready job the way a worker would, without a worker process."""
    blocking = store.own_connection()
    try:
        popped = await store.pop(blocking, job_type, timeout_s=10)
    finally:
        await blocking.aclose()
    assert popped == job_id
    return await store.claimed(job_type, job_id, "test-worker", lease_ms=60_000)


async def finish(store: Harness, redis_url: str, job_type: str, job_id: str, status: JobStatus) -> None:
    """Runs a ready job to `status` (COMPLETED or FAILED)."""
    job = await claim(store, redis_url, job_type, job_id)
    if status is JobStatus.FAILED:
        assert await store.transitions.fail(job, "boom", None) == Result(Outcome.DEAD_LETTERED)
    else:
        assert await store.complete(job) == OK


def new_type() -> str:
    return f"api-{uuid.uuid4().hex[:12]}"


# -- grpcurl (reflection, no .proto) ---------------------------------------------


async def test_grpcurl_lists_all_services(server_url: str) -> None:
    ran = await grpcurl(server_url, "list")
    assert ran.code == 0, ran
    assert sorted(ran.out.split()) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE,
    ]


async def test_grpcurl_describes_job_service(server_url: str) -> None:
    ran = await grpcurl(server_url, "describe", SERVICE)
    assert ran.code == 0, ran
    rpcs = {line.split()[1]: line for line in ran.out.splitlines() if line.strip().startswith("rpc ")}
    assert set(rpcs) == {
        "EnqueueJob", "EnqueueJobs", "GetJob", "WaitJob", "CancelJob", "RetryJob",
        "ListJobs", "GetQueueStats", "WatchJob", "WatchJobs", "ListWorkers",
        "PauseQueue", "ResumeQueue", "SetQueuePartitions", "RetryJobs", "CancelJobs", "DeleteJobs", "WhoAmI",
    }  # fmt: skip
    assert "returns ( stream .mpataki.jobqueue.v1.WatchJobResponse )" in rpcs["WatchJob"]
    assert "returns ( .mpataki.jobqueue.v1.GetJobResponse )" in rpcs["GetJob"]
    assert "idempotency_level = NO_SIDE_EFFECTS" in ran.out
    assert "idempotency_level = IDEMPOTENT" in ran.out
    request = await grpcurl(server_url, "describe", "mpataki.jobqueue.v1.EnqueueJobRequest")
    assert "optional int64 execution_time_ms = 3;" in request.out, request


async def test_grpcurl_enqueue_get_cancel(server_url: str) -> None:
    created = grpcurl_json(
        await grpcurl(
            server_url, f"{SERVICE}/EnqueueJob",
            data={"type": "grpcurl", "payload": b64(b"hello world"), "execution_time_ms": 1500},
        )
    )["job"]  # fmt: skip
    assert_job_id(created["id"])
    assert created["type"] == "grpcurl"
    assert created["payload"] == b64(b"hello world")
    assert created["status"] == "JOB_STATUS_PENDING"
    assert created["executionTimeMs"] == "1500"

    got = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetJob", data={"id": created["id"]}))["job"]
    assert got == created

    assert grpcurl_json(await grpcurl(server_url, f"{SERVICE}/CancelJob", data={"id": created["id"]})) == {}
    got = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/GetJob", data={"id": created["id"]}))["job"]
    assert got["status"] == "JOB_STATUS_CANCELLED"


async def test_who_am_i_without_auth_is_an_admin_of_every_method(server_url: str) -> None:
    over_grpc = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/WhoAmI", data={}))
    reply = await post_json(server_url, "WhoAmI", "{}")
    assert reply.status == 200, reply
    assert json.loads(reply.body) == over_grpc
    assert over_grpc.get("authEnabled", False) is False
    assert over_grpc["role"] == "admin"
    assert {"EnqueueJob", "DeleteJobs", "WhoAmI"} <= set(over_grpc["methods"])
    assert len(over_grpc["methods"]) == 18


# -- grpcio over h2c ---------------------------------------------------------------


@pytest.fixture(scope="session")
def grpc_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """grpcio stubs of jobqueue.proto only: generating grpc/health here would shadow grpcio."""
    out = tmp_path_factory.mktemp("grpcio_stubs")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={out}", f"--pyi_out={out}",
         f"--grpc_python_out={out}", "proto/mpataki/jobqueue/v1/jobqueue.proto"],
        cwd=ROOT, check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    sys.path.append(str(out))
    try:
        pb2 = importlib.import_module("mpataki.jobqueue.v1.jobqueue_pb2")
        pb2_grpc = importlib.import_module("mpataki.jobqueue.v1.jobqueue_pb2_grpc")
        assert pb2.__file__ is not None
        assert pb2.__file__.startswith(str(out))
        yield pb2, pb2_grpc
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="session")
def grpc_channel(server_url: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(host_port(server_url)) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
        yield channel


@pytest.fixture
def grpc_stub(grpc_modules: tuple[ModuleType, ModuleType], grpc_channel: grpc.Channel) -> Any:
    return grpc_modules[1].JobServiceStub(grpc_channel)


@pytest.fixture
def pb2(grpc_modules: tuple[ModuleType, ModuleType]) -> ModuleType:
    return grpc_modules[0]


def test_grpcio_enqueue_get_cancel(grpc_stub: Any, pb2: ModuleType) -> None:
    created = grpc_stub.EnqueueJob(pb2.EnqueueJobRequest(type="grpcio", payload=b"hi"), timeout=20).job
    assert_job_id(created.id)
    assert (created.type, created.payload, created.status) == ("grpcio", b"hi", pb2.JOB_STATUS_PENDING)
    got = grpc_stub.GetJob(pb2.GetJobRequest(id=created.id), timeout=20).job
    assert got == created
    assert grpc_stub.CancelJob(pb2.CancelJobRequest(id=created.id), timeout=20) == pb2.CancelJobResponse()
    got = grpc_stub.GetJob(pb2.GetJobRequest(id=created.id), timeout=20).job
    assert got.status == pb2.JOB_STATUS_CANCELLED
    assert got.finished_at >= got.created_at > 0


@pytest.mark.parametrize("execution_time_ms", [1, 2**32 + 1, 2**40, MAX_TIME_MS])
def test_grpcio_binary_payload_and_int64_round_trip(
    grpc_stub: Any, pb2: ModuleType, execution_time_ms: int
) -> None:
    request = pb2.EnqueueJobRequest(type="grpcio.bin", payload=BINARY, execution_time_ms=execution_time_ms)
    created = grpc_stub.EnqueueJob(request, timeout=20).job
    assert created.payload == BINARY
    assert created.execution_time_ms == execution_time_ms
    got = grpc_stub.GetJob(pb2.GetJobRequest(id=created.id), timeout=20).job
    assert got.payload == BINARY
    assert got.execution_time_ms == execution_time_ms


@pytest.mark.parametrize(
    ("call", "value", "status"),
    [
        ("GetJob.id", UNKNOWN_ID, grpc.StatusCode.NOT_FOUND),
        ("CancelJob.id", UNKNOWN_ID, grpc.StatusCode.NOT_FOUND),
        ("GetJob.id", "not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        ("CancelJob.id", "", grpc.StatusCode.INVALID_ARGUMENT),
        ("EnqueueJob.type", "{braces}", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_grpcio_error_codes(
    grpc_stub: Any, pb2: ModuleType, call: str, value: str, status: grpc.StatusCode
) -> None:
    method, field = call.split(".")
    request = getattr(pb2, f"{method}Request")(**{field: value})
    with pytest.raises(grpc.RpcError) as caught:
        getattr(grpc_stub, method)(request, timeout=20)
    error: Any = caught.value
    assert error.code() == status
    details = error.details()
    assert_clean(details)
    assert (value in details) if status == grpc.StatusCode.NOT_FOUND else details.startswith(f"{field}:")


def test_grpcio_payload_over_limit_is_resource_exhausted(grpc_stub: Any, pb2: ModuleType) -> None:
    request = pb2.EnqueueJobRequest(type="grpcio.big", payload=b"\xff" * ((1 << 20) + 1))
    with pytest.raises(grpc.RpcError) as caught:
        grpc_stub.EnqueueJob(request, timeout=20)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details().startswith("payload:")


async def test_grpcio_cancel_finished_job_is_failed_precondition(
    grpc_stub: Any, pb2: ModuleType, store: Harness, redis_url: str
) -> None:
    job_type = new_type()
    created = (
        await asyncio.to_thread(grpc_stub.EnqueueJob, pb2.EnqueueJobRequest(type=job_type), timeout=20)
    ).job
    await finish(store, redis_url, job_type, created.id, JobStatus.FAILED)
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(grpc_stub.CancelJob, pb2.CancelJobRequest(id=created.id), timeout=20)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "FAILED" in error.details()


def test_grpcio_2500_sequential_calls_on_one_channel(
    server_url: str, grpc_modules: tuple[ModuleType, ModuleType]
) -> None:
    """Hypercorn's default keep_alive_max_requests=1000 ends a connection with GOAWAY (UNAVAILABLE)."""
    pb2, pb2_grpc = grpc_modules
    with grpc.insecure_channel(host_port(server_url)) as channel:
        stub = pb2_grpc.JobServiceStub(channel)
        job_id = stub.EnqueueJob(pb2.EnqueueJobRequest(type="grpcio.many"), timeout=20).job.id
        errors: list[tuple[int, grpc.StatusCode]] = []
        request = pb2.GetJobRequest(id=job_id)
        for i in range(2500):
            try:
                assert stub.GetJob(request, timeout=20).job.id == job_id
            except grpc.RpcError as exc:
                errors.append((i, exc.code()))  # type: ignore[attr-defined]
    assert errors == []


# -- connectrpc's client, every protocol ---------------------------------------------


@pytest.mark.parametrize("protocol", [*PROTOCOLS, "connect-h2c"])
async def test_connectrpc_client_round_trip(server_url: str, protocol: str) -> None:
    async with job_client(server_url, protocol) as client:
        request = pb.EnqueueJobRequest(type=f"connectrpc.{protocol}", payload=BINARY, execution_time_ms=2**40)
        created = (await client.enqueue_job(request)).job
        assert_job_id(created.id)
        assert created.payload == BINARY
        assert created.execution_time_ms == 2**40
        assert created.status == pb.JobStatus.PENDING
        # HTTP GET for NO_SIDE_EFFECTS methods (Connect only; the others ignore use_get).
        got = (await client.get_job(pb.GetJobRequest(id=created.id), use_get=True)).job
        assert got == created
        await client.cancel_job(pb.CancelJobRequest(id=created.id))
        assert (await client.get_job(pb.GetJobRequest(id=created.id))).job.status == pb.JobStatus.CANCELLED
        with pytest.raises(ConnectError) as caught:
            await client.get_job(pb.GetJobRequest(id=UNKNOWN_ID))
        assert caught.value.code == Code.NOT_FOUND
        assert UNKNOWN_ID in caught.value.message


@pytest.mark.parametrize("json_codec", [False, True])
async def test_jobqueue_client(server_url: str, json_codec: bool) -> None:
    async with Client(server_url, json=json_codec, timeout_s=20) as client:
        job = await client.enqueue("wrapper", BINARY, 1_234_567)
        assert (job.type, job.payload, job.status, job.execution_time_ms) == (
            "wrapper", BINARY, JobStatus.PENDING, 1_234_567
        )  # fmt: skip
        assert await client.get(job.id) == job
        await client.cancel(job.id)
        assert (await client.get(job.id)).status == JobStatus.CANCELLED
        with pytest.raises(ConnectError) as caught:
            await client.cancel("nope")
        assert caught.value.code == Code.INVALID_ARGUMENT


async def test_uppercase_id_is_the_same_job(server_url: str) -> None:
    async with Client(server_url, timeout_s=20) as client:
        job = await client.enqueue("upper")
        assert (await client.get(job.id.upper())).id == job.id
        await client.cancel(job.id.upper())
        assert (await client.get(job.id)).status == JobStatus.CANCELLED


# -- HTTP + JSON, the way curl sends it ------------------------------------------------


async def test_curl_enqueue_returns_the_job(server_url: str) -> None:
    before = int(time.time() * 1000)
    reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": "curl", "payload": b64(BINARY)}))
    after = int(time.time() * 1000)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/json"
    job = reply.json()["job"]
    assert_job_id(job["id"])
    assert job["type"] == "curl"
    assert base64.b64decode(job["payload"]) == BINARY
    assert job["status"] == "JOB_STATUS_PENDING"
    # int64 travels as a JSON string; absent execution time means "now" (server clock).
    assert isinstance(job["executionTimeMs"], str)
    assert job["executionTimeMs"] == job["createdAt"] == job["updatedAt"]
    assert before - 1000 <= int(job["executionTimeMs"]) <= after + 1000


@pytest.mark.parametrize("name", ["executionTimeMs", "execution_time_ms"])
@pytest.mark.parametrize("value", ["1795000000123", 1795000000123])
async def test_curl_field_spellings_and_int64_forms(server_url: str, name: str, value: str | int) -> None:
    reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": "curl.spell", name: value}))
    assert reply.status == 200, reply
    assert reply.json()["job"]["executionTimeMs"] == "1795000000123"


async def test_curl_get_job_over_http_get(server_url: str) -> None:
    created = (await post_json(server_url, "EnqueueJob", '{"type": "curl.get"}')).json()["job"]
    for query in (
        {"encoding": "json", "message": json.dumps({"id": created["id"]})},
        {"encoding": "json", "message": json.dumps({"id": created["id"]}), "connect": "v1"},
    ):
        reply = await curl(f"{server_url}/{SERVICE}/GetJob?{urlencode(query)}")
        assert reply.status == 200, reply
        assert reply.json()["job"] == created
    missing = await curl(f"{server_url}/{SERVICE}/GetJob?{urlencode({'encoding': 'json', 'message': '{}'})}")
    assert missing.status == 400
    assert missing.json()["code"] == "invalid_argument"
    # EnqueueJob has side effects: no GET.
    query = urlencode({"encoding": "json", "message": '{"type": "curl.get"}'})
    assert (await curl(f"{server_url}/{SERVICE}/EnqueueJob?{query}")).status == 405


# -- buf curl (reflection) ---------------------------------------------------------------

BUF_PROTOCOLS = {
    "grpc": ["--protocol", "grpc", "--http2-prior-knowledge"],
    "connect": ["--protocol", "connect"],
    "grpcweb": ["--protocol", "grpcweb"],
}


async def buf_curl(server_url: str, protocol: str, method: str, data: dict[str, Any]) -> Ran:
    return await run(
        tool("buf"), "curl", *BUF_PROTOCOLS[protocol], "--timeout", "20s",
        "-d", json.dumps(data), f"{server_url}/{SERVICE}/{method}",
    )  # fmt: skip


@pytest.mark.parametrize("protocol", BUF_PROTOCOLS)
async def test_buf_curl(server_url: str, protocol: str) -> None:
    listed = await run(tool("buf"), "curl", *BUF_PROTOCOLS[protocol], "--list-methods", server_url)
    assert listed.code == 0, listed
    assert {f"{SERVICE}/EnqueueJob", f"{SERVICE}/GetJob", f"{SERVICE}/CancelJob"} <= set(listed.out.split())

    data = {"type": f"buf.{protocol}", "payload": b64(BINARY), "executionTimeMs": "99"}
    ran = await buf_curl(server_url, protocol, "EnqueueJob", data)
    assert ran.code == 0, ran
    created = json.loads(ran.out)["job"]
    assert (created["payload"], created["executionTimeMs"]) == (b64(BINARY), "99")
    ran = await buf_curl(server_url, protocol, "GetJob", {"id": created["id"]})
    assert ran.code == 0, ran
    assert json.loads(ran.out)["job"] == created

    ran = await buf_curl(server_url, protocol, "GetJob", {"id": UNKNOWN_ID})
    assert ran.code == 5 * 8, ran  # buf curl exits with the code's number times 8
    assert json.loads(ran.err)["code"] == "not_found"


@pytest.mark.parametrize("reflection", ["grpc-v1", "grpc-v1alpha"])
async def test_buf_curl_both_reflection_versions(server_url: str, reflection: str) -> None:
    ran = await run(
        tool("buf"), "curl", *BUF_PROTOCOLS["grpc"], "--reflect-protocol", reflection,
        "-d", json.dumps({"service": SERVICE}), f"{server_url}/grpc.health.v1.Health/Check",
    )  # fmt: skip
    assert ran.code == 0, ran
    assert json.loads(ran.out) == {"status": "SERVING"}


# -- CORS ------------------------------------------------------------------------------------


async def preflight(server_url: str, origin: str) -> HttpReply:
    return await curl(
        "-X", "OPTIONS", "-H", f"Origin: {origin}", "-H", "Access-Control-Request-Method: POST",
        "-H", "Access-Control-Request-Headers: content-type,connect-protocol-version",
        f"{server_url}/{SERVICE}/EnqueueJob",
    )  # fmt: skip


async def test_cors_preflight_from_allowed_origin(server_url: str) -> None:
    reply = await preflight(server_url, "https://app.example")
    assert reply.status == 204, reply
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert {m.strip() for m in reply.headers["access-control-allow-methods"].split(",")} >= {"GET", "POST"}
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "connect-protocol-version", "x-grpc-web", "grpc-timeout"} <= allowed
    assert "origin" in reply.headers["vary"].lower()


async def test_cors_preflight_from_other_origin(server_url: str) -> None:
    reply = await preflight(server_url, "https://evil.example")
    assert "access-control-allow-origin" not in reply.headers
    assert reply.status != 204


async def test_cors_actual_request(server_url: str) -> None:
    reply = await post_json(server_url, "EnqueueJob", '{"type": "cors"}', "-H", "Origin: https://app.example")
    assert reply.status == 200, reply
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in reply.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message"} <= exposed
    # Browsers can read errors too.
    error = await post_json(server_url, "GetJob", '{"id": "nope"}', "-H", "Origin: https://app.example")
    assert error.status == 400, error
    assert error.headers["access-control-allow-origin"] == "https://app.example"
    other = await post_json(
        server_url, "EnqueueJob", '{"type": "cors"}', "-H", "Origin: https://evil.example"
    )
    assert other.status == 200
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-expose-headers" not in other.headers
    assert "origin" in other.headers["vary"].lower()  # caches must not reuse it for another origin


# -- execution-time semantics --------------------------------------------------------------


async def test_absent_execution_time_is_now_for_the_jobs_life(
    server_url: str, store: Harness, redis_url: str
) -> None:
    job_type = new_type()
    async with Client(server_url, timeout_s=20) as client:
        before = int(time.time() * 1000)
        job = await client.enqueue(job_type, b"x")
        after = int(time.time() * 1000)
        assert job.execution_time_ms == job.created_at
        assert before - 1000 <= job.execution_time_ms <= after + 1000
        assert (await client.get(job.id)).execution_time_ms == job.execution_time_ms

        await finish(store, redis_url, job_type, job.id, JobStatus.COMPLETED)
        done = await client.get(job.id)
        assert done.status == JobStatus.COMPLETED
        assert (done.execution_time_ms, done.created_at) == (job.execution_time_ms, job.created_at)
        assert done.attempt == 1
        assert done.finished_at >= done.started_at >= job.created_at


@pytest.mark.parametrize("execution_time_ms", [1, 1500, 4_102_444_800_000, MAX_TIME_MS])
async def test_given_execution_time_is_echoed_exactly(server_url: str, execution_time_ms: int) -> None:
    async with Client(server_url, timeout_s=20) as client:
        job = await client.enqueue("echo", execution_time_ms=execution_time_ms)
        assert job.execution_time_ms == execution_time_ms
        got = await client.get(job.id)
        assert (got.execution_time_ms, got.status) == (execution_time_ms, JobStatus.PENDING)


async def test_zero_execution_time_means_now(server_url: str) -> None:
    async with Client(server_url, timeout_s=20) as client:
        job = await client.enqueue("zero", execution_time_ms=0)
    assert job.execution_time_ms == job.created_at > 0


async def test_cancel_changes_updated_at(server_url: str, redis: Redis) -> None:
    async with Client(server_url, timeout_s=20) as client:
        job = await client.enqueue("later", execution_time_ms=4_102_444_800_000)

        async def redis_clock_passed() -> bool:
            seconds, micros = await redis.time()
            return seconds * 1000 + micros // 1000 > job.updated_at

        await eventually(redis_clock_passed, what="the Redis clock to pass updated_at")
        await client.cancel(job.id)
        cancelled = await client.get(job.id)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.updated_at > job.updated_at
    assert cancelled.finished_at == cancelled.updated_at
    assert (cancelled.created_at, cancelled.execution_time_ms) == (job.created_at, job.execution_time_ms)
