"""The API's error codes and health, through connectrpc's client in every protocol.

Each bad input must come back with the right code and a message that names the
field, and no error may leak a traceback. Health must follow Redis, and a Redis
outage must be `unavailable`, not `unknown` or `internal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from jobqueue._gen.grpc.health.v1 import health_pb
from jobqueue._gen.grpc.health.v1.health_connect import HealthClient
from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from jobqueue.model import MAX_TIME_MS, JobStatus
from jobqueue.redis_server import RedisServer

from .conftest import eventually, jobqueue_server
from .harness import Harness
from .test_api import (
    PROTOCOLS,
    SERVICE,
    UNKNOWN_ID,
    assert_clean,
    b64,
    claim,
    curl,
    finish,
    grpcurl,
    grpcurl_json,
    job_client,
    new_type,
    post_json,
    run,
    tool,
)

MiB = 1 << 20
SERVING = health_pb.HealthCheckResponse.ServingStatus.SERVING
NOT_SERVING = health_pb.HealthCheckResponse.ServingStatus.NOT_SERVING


@pytest.fixture(params=PROTOCOLS)
async def api(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[JobServiceClient]:
    async with job_client(server_url, request.param) as client:
        yield client


async def fails(call: Awaitable[Any], code: Code) -> str:
    with pytest.raises(ConnectError) as caught:
        await call
    assert caught.value.code == code, caught.value
    assert_clean(caught.value.message)
    return caught.value.message


def enqueue(client: JobServiceClient, job_type: str, payload: bytes = b"", at: int | None = None) -> Any:
    return client.enqueue_job(pb.EnqueueJobRequest(type=job_type, payload=payload, execution_time_ms=at))


# -- bad input -----------------------------------------------------------------------------

BAD_TYPES = [
    pytest.param("", id="empty"),
    pytest.param("a b", id="space"),
    pytest.param(" ab", id="leading-space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("ab\n", id="trailing-newline"),
    pytest.param("{tag}", id="braces"),
    pytest.param("a}", id="closing-brace"),
    pytest.param("a\x01b", id="control-char"),
    pytest.param("a\x7f", id="del"),
    pytest.param("t\u00ffpe", id="non-ascii"),
    pytest.param("a/b", id="slash"),
    pytest.param("a" * 129, id="129-chars"),
]


@pytest.mark.parametrize("job_type", BAD_TYPES)
async def test_bad_job_type(api: JobServiceClient, job_type: str) -> None:
    message = await fails(enqueue(api, job_type), Code.INVALID_ARGUMENT)
    assert message.startswith("type: ")


@pytest.mark.parametrize("job_type", ["a" * 128, "A", "Az09_.:-"])
async def test_job_type_limits_accepted(api: JobServiceClient, job_type: str) -> None:
    assert (await enqueue(api, job_type)).job.type == job_type


@pytest.mark.parametrize("at", [-1, -(2**63), MAX_TIME_MS + 1, 2**63 - 1])
async def test_execution_time_out_of_range(api: JobServiceClient, at: int) -> None:
    message = await fails(enqueue(api, "when", at=at), Code.INVALID_ARGUMENT)
    assert message.startswith("execution_time_ms: ")
    assert str(at) in message


BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("nope", id="word"),
    pytest.param(UNKNOWN_ID.replace("-", ""), id="no-dashes"),
    pytest.param("{" + UNKNOWN_ID + "}", id="braces"),
    pytest.param(UNKNOWN_ID + "0", id="too-long"),
    pytest.param("g" + UNKNOWN_ID[1:], id="not-hex"),
    pytest.param(" " + UNKNOWN_ID, id="space"),
]


@pytest.mark.parametrize("job_id", BAD_IDS)
@pytest.mark.parametrize("method", ["get", "cancel"])
async def test_malformed_id(api: JobServiceClient, method: str, job_id: str) -> None:
    call = (
        api.get_job(pb.GetJobRequest(id=job_id))
        if method == "get"
        else api.cancel_job(pb.CancelJobRequest(id=job_id))
    )
    message = await fails(call, Code.INVALID_ARGUMENT)
    assert message.startswith("id: ")


@pytest.mark.parametrize("method", ["get", "cancel"])
async def test_unknown_id(api: JobServiceClient, method: str) -> None:
    request_id = UNKNOWN_ID.upper()
    call = (
        api.get_job(pb.GetJobRequest(id=request_id))
        if method == "get"
        else api.cancel_job(pb.CancelJobRequest(id=request_id))
    )
    message = await fails(call, Code.NOT_FOUND)
    assert UNKNOWN_ID in message


# -- the codes as command-line clients show them -----------------------------------


@pytest.mark.parametrize(
    ("method", "data", "code", "exit_code"),
    [
        ("GetJob", {"id": UNKNOWN_ID}, "NotFound", 64 + 5),
        ("CancelJob", {"id": UNKNOWN_ID}, "NotFound", 64 + 5),
        ("GetJob", {"id": "nope"}, "InvalidArgument", 64 + 3),
        ("CancelJob", {"id": "nope"}, "InvalidArgument", 64 + 3),
        ("EnqueueJob", {"type": "no spaces"}, "InvalidArgument", 64 + 3),
    ],
)
async def test_grpcurl_error_codes(
    server_url: str, method: str, data: dict[str, str], code: str, exit_code: int
) -> None:
    ran = await grpcurl(server_url, f"{SERVICE}/{method}", data=data)
    assert ran.code == exit_code, ran
    assert f"Code: {code}\n" in ran.err
    assert_clean(ran.err)


async def test_grpcurl_cancel_completed_job_is_failed_precondition(
    server_url: str, store: Harness, redis_url: str
) -> None:
    job_type = new_type()
    job = grpcurl_json(await grpcurl(server_url, f"{SERVICE}/EnqueueJob", data={"type": job_type}))["job"]
    await finish(store, redis_url, job_type, job["id"], JobStatus.COMPLETED)
    ran = await grpcurl(server_url, f"{SERVICE}/CancelJob", data={"id": job["id"]})
    assert ran.code == 64 + 9, ran
    assert "Code: FailedPrecondition\n" in ran.err
    assert "COMPLETED" in ran.err


# The Connect protocol's HTTP status of each code.
HTTP_STATUS = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "not_found": 404,
    "resource_exhausted": 429,
    "internal": 500,
    "unavailable": 503,
}
JUST_TOO_BIG = json.dumps({"type": "x", "payload": b64(bytes((1 << 20) + 1))})


@pytest.mark.parametrize(
    ("method", "body", "code", "names"),
    [
        ("EnqueueJob", '{"type": "a b"}', "invalid_argument", "type:"),
        ("EnqueueJob", '{"type": "x", "executionTimeMs": "-1"}', "invalid_argument", "execution_time_ms:"),
        ("EnqueueJob", '{"type": ', "invalid_argument", "unmarshal"),
        ("EnqueueJob", '{"type": 5}', "invalid_argument", ".type"),
        ("EnqueueJob", '{"type": "x", "payload": "@@@"}', "invalid_argument", ".payload"),
        ("EnqueueJob", '{"type": "x", "executionTimeMs": 1.5}', "invalid_argument", ".execution_time_ms"),
        ("EnqueueJob", '{"type": "x", "executionTimeMs": "soon"}', "invalid_argument", ".execution_time_ms"),
        ("EnqueueJob", '{"type": "x", "executionTimeMs": "9223372036854775808"}', "invalid_argument",
         ".execution_time_ms"),
        ("GetJob", '{"id": "nope"}', "invalid_argument", "id:"),
        ("GetJob", json.dumps({"id": UNKNOWN_ID}), "not_found", UNKNOWN_ID),
        ("CancelJob", json.dumps({"id": UNKNOWN_ID}), "not_found", UNKNOWN_ID),
        ("EnqueueJob", JUST_TOO_BIG, "resource_exhausted", "payload:"),
    ],
)  # fmt: skip
async def test_curl_error_bodies(server_url: str, method: str, body: str, code: str, names: str) -> None:
    reply = await post_json(server_url, method, body)
    assert reply.status == HTTP_STATUS[code], reply
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()
    assert set(error) == {"code", "message"}
    assert error["code"] == code
    assert names in error["message"]
    assert_clean(error["message"])


async def test_curl_cancel_completed_job_is_400_failed_precondition(
    server_url: str, store: Harness, redis_url: str
) -> None:
    job_type = new_type()
    job = (await post_json(server_url, "EnqueueJob", json.dumps({"type": job_type}))).json()["job"]
    await finish(store, redis_url, job_type, job["id"], JobStatus.COMPLETED)
    reply = await post_json(server_url, "CancelJob", json.dumps({"id": job["id"]}))
    assert reply.status == HTTP_STATUS["failed_precondition"], reply
    assert reply.json()["code"] == "failed_precondition"


async def test_curl_unknown_method_and_content_type(server_url: str) -> None:
    assert (await post_json(server_url, "NoSuchMethod", "{}")).status == 404
    reply = await curl("-H", "Content-Type: text/plain", "-d", "{}", f"{server_url}/{SERVICE}/GetJob")
    assert reply.status == 415
    assert "application/json" in reply.body  # what is accepted (more in test_refusals.py)


# -- the payload limit (1 MiB by default) ----------------------------------------------------

# Incompressible, so that the client's gzip does not hide the size.
NOISE = random.Random(1).randbytes(3 * MiB)
FAR_OVER = NOISE * 4  # 12 MiB: still being sent when the server answers


async def test_payload_at_the_limit_is_accepted(api: JobServiceClient) -> None:
    job = (await enqueue(api, "big", NOISE[:MiB])).job
    assert job.payload == NOISE[:MiB]


async def test_payload_just_over_the_limit(api: JobServiceClient) -> None:
    message = await fails(enqueue(api, "big", NOISE[: MiB + 1]), Code.RESOURCE_EXHAUSTED)
    assert message.startswith("payload: ")
    assert {str(MiB + 1), str(MiB)} <= set(re.findall(r"\d+", message))  # the size and the limit


async def test_payload_far_over_the_limit(api: JobServiceClient) -> None:
    """Refused by connectrpc's read_max_bytes before the request is decoded, while
    the client is still sending. Unless the server reads the rest (server/drain.py),
    an HTTP/1.1 client meets a reset instead of the answer, and an HTTP/2
    connection stalls for good after a few such requests."""
    for _ in range(3):
        message = await fails(enqueue(api, "big", FAR_OVER), Code.RESOURCE_EXHAUSTED)
        assert message == f"payload: over the limit of {MiB} bytes (JOBQUEUE_MAX_PAYLOAD_BYTES)"
    assert (await enqueue(api, "small", b"after")).job.payload == b"after"


async def test_a_refused_http1_body_leaves_the_connection_open(server_url: str) -> None:
    """The rest of a refused body is read, so the next request reuses the connection."""
    url = f"{server_url}/{SERVICE}/EnqueueJob"
    body = json.dumps({"type": "big", "payload": b64(FAR_OVER)}).encode()
    json_type = "Content-Type: application/json"
    ran = await run(
        tool("curl"), "-sS", "--http1.1", "--max-time", "20", "-H", json_type, "-H", "Expect:",
        "--data-binary", "@-", url,
        "--next", "--http1.1", "-H", json_type, "-d", '{"type": "small"}', url,
        "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
        stdin=body,
    )  # fmt: skip
    assert ran.code == 0, ran
    refused, _, reused = ran.out.rpartition("}")
    assert '"code":"resource_exhausted"' in refused.replace(" ", "")
    assert reused.split() == ["200", "0"]  # no new connection for the second request


# -- cancel --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
async def test_cancel_finished_job_is_failed_precondition(
    api: JobServiceClient, store: Harness, redis_url: str, status: JobStatus
) -> None:
    job_type = new_type()
    job = (await enqueue(api, job_type)).job
    await finish(store, redis_url, job_type, job.id, status)
    message = await fails(api.cancel_job(pb.CancelJobRequest(id=job.id)), Code.FAILED_PRECONDITION)
    assert job.id in message
    assert status.name in message
    assert (await api.get_job(pb.GetJobRequest(id=job.id))).job.status == pb.JobStatus(int(status))


async def test_cancel_pending_job_twice(api: JobServiceClient) -> None:
    job = (await enqueue(api, "twice", at=4_102_444_800_000)).job
    await api.cancel_job(pb.CancelJobRequest(id=job.id))
    first = (await api.get_job(pb.GetJobRequest(id=job.id))).job
    assert first.status == pb.JobStatus.CANCELLED
    await api.cancel_job(pb.CancelJobRequest(id=job.id))
    assert (await api.get_job(pb.GetJobRequest(id=job.id))).job == first


async def test_cancel_running_job(api: JobServiceClient, store: Harness, redis_url: str) -> None:
    job_type = new_type()
    job = (await enqueue(api, job_type)).job
    assert (await claim(store, redis_url, job_type, job.id)).status == JobStatus.RUNNING
    await api.cancel_job(pb.CancelJobRequest(id=job.id))
    got = (await api.get_job(pb.GetJobRequest(id=job.id))).job
    assert (got.status, got.attempt, got.worker_id) == (pb.JobStatus.CANCELLED, 1, "test-worker")


async def test_unexpected_error_is_internal_and_generic(api: JobServiceClient, store: Harness) -> None:
    job = (await enqueue(api, "corrupt")).job
    await store.redis.hset(store.keys.job(job.id), "status", "garbage")
    message = await fails(api.get_job(pb.GetJobRequest(id=job.id)), Code.INTERNAL)
    assert "garbage" not in message
    assert "invalid literal" not in message


async def test_unexpected_error_over_http(server_url: str, store: Harness) -> None:
    job = (await post_json(server_url, "EnqueueJob", '{"type": "corrupt"}')).json()["job"]
    await store.redis.hset(store.keys.job(job["id"]), "status", "garbage")
    reply = await post_json(server_url, "GetJob", json.dumps({"id": job["id"]}))
    assert reply.status == HTTP_STATUS["internal"], reply
    assert reply.json()["code"] == "internal"
    assert_clean(reply.json()["message"])


# -- health ----------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_serving(server_url: str, service: str) -> None:
    ran = await grpcurl(server_url, "grpc.health.v1.Health/Check", data={"service": service})
    assert ran.code == 0, ran
    assert json.loads(ran.out) == {"status": "SERVING"}


async def test_health_unknown_service(server_url: str) -> None:
    ran = await grpcurl(server_url, "grpc.health.v1.Health/Check", data={"service": "no.Such"})
    assert ran.code == 64 + 5, ran
    assert "Code: NotFound\n" in ran.err
    async with HealthClient(server_url) as client:
        await fails(client.check(health_pb.HealthCheckRequest(service="no.Such")), Code.NOT_FOUND)


# -- a server of our own: its Redis goes down, its payload limit is configured --------------


class Restartable:
    """A private Redis (with an AOF, so jobs survive) that can stop and start again on one port.

    Start it from the main thread only: RedisServer children get SIGTERM when the
    thread that started them exits (PR_SET_PDEATHSIG), e.g. an asyncio.to_thread
    worker when the test's event loop closes.
    """

    def __init__(self, data_dir: Path) -> None:
        self.server = RedisServer(data_dir, appendonly=True)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def restart(self, attempts: int = 3) -> None:
        # Once in about 25 full runs on a busy machine, the new redis-server exited at
        # once without a log line (cause unknown); start it again on the same port.
        for attempt in range(attempts):
            self.server = RedisServer(self.server.data_dir, port=self.server.port, appendonly=True)
            try:
                self.server.start()
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
            else:
                return


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Restartable]:
    redis = Restartable(tmp_path / "redis")
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def private_server(private_redis: Restartable, tmp_path: Path) -> Iterator[str]:
    with jobqueue_server(private_redis.server.url, tmp_path / "server.log") as url:
        yield url


def health_is(health: HealthClient, status: Any) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: both the server ("") and JobService report `status`."""

    async def check() -> bool:
        statuses = {
            (await health.check(health_pb.HealthCheckRequest(service=service))).status
            for service in ("", SERVICE)
        }
        return statuses == {status}

    return check


async def test_health_and_errors_follow_redis(private_redis: Restartable, private_server: str) -> None:
    async with HealthClient(private_server, timeout_ms=20_000) as health:
        await eventually(health_is(health, SERVING), what="SERVING")
        await asyncio.to_thread(private_redis.stop)
        await eventually(health_is(health, NOT_SERVING), what="NOT_SERVING while Redis is down")

        for protocol in PROTOCOLS:
            async with job_client(private_server, protocol) as client:
                message = await fails(enqueue(client, "down"), Code.UNAVAILABLE)
                assert "unavailable" in message
                await fails(client.get_job(pb.GetJobRequest(id=UNKNOWN_ID)), Code.UNAVAILABLE)
                await fails(client.cancel_job(pb.CancelJobRequest(id=UNKNOWN_ID)), Code.UNAVAILABLE)
        reply = await post_json(private_server, "EnqueueJob", '{"type": "down"}')
        assert reply.status == HTTP_STATUS["unavailable"], reply
        assert reply.json()["code"] == "unavailable"

        private_redis.restart()  # in this thread: see Restartable
        await eventually(health_is(health, SERVING), what="SERVING after Redis is back")
        async with job_client(private_server, "grpc") as client:
            # Not the first call: a stale pooled connection may still fail once
            # (see test_burst_after_redis_restart).
            async def enqueued() -> Any:
                with contextlib.suppress(ConnectError):
                    return (await enqueue(client, "back")).job
                return None

            job = await eventually(enqueued, what="EnqueueJob to work again")
            assert (await client.get_job(pb.GetJobRequest(id=job.id))).job.status == pb.JobStatus.PENDING


async def test_burst_after_redis_restart(private_redis: Restartable, private_server: str) -> None:
    async with (
        HealthClient(private_server, timeout_ms=20_000) as health,
        job_client(private_server, "connect-proto") as api,
    ):
        await eventually(health_is(health, SERVING), what="SERVING")
        job = (await enqueue(api, "burst")).job
        request = pb.GetJobRequest(id=job.id)
        # Concurrent calls grow the server's Redis connection pool.
        await asyncio.gather(*(api.get_job(request) for _ in range(20)))
        await asyncio.to_thread(private_redis.stop)
        await eventually(health_is(health, NOT_SERVING), what="NOT_SERVING while Redis is down")
        private_redis.restart()  # in this thread: see Restartable
        await eventually(health_is(health, SERVING), what="SERVING after Redis is back")
        results = await asyncio.gather(*(api.get_job(request) for _ in range(20)), return_exceptions=True)
    failures = [f"{r.code.name}: {r.message}" for r in results if isinstance(r, ConnectError)]
    assert failures == []
    assert all(isinstance(r, pb.GetJobResponse) and r.job == job for r in results)


async def test_health_while_redis_hangs(private_redis: Restartable, private_server: str) -> None:
    """A frozen Redis (SIGSTOP) is NOT_SERVING within the ping timeout; the PING cut
    short by that timeout must not leave its late reply for the next command."""
    process = private_redis.server.process
    assert process is not None
    async with (
        HealthClient(private_server, timeout_ms=20_000) as health,
        job_client(private_server, "grpc") as api,
    ):
        job = (await enqueue(api, "frozen")).job
        await eventually(health_is(health, SERVING), what="SERVING")
        process.send_signal(signal.SIGSTOP)
        try:
            await eventually(health_is(health, NOT_SERVING), what="NOT_SERVING while Redis hangs")
        finally:
            process.send_signal(signal.SIGCONT)
        for _ in range(5):
            assert (await api.get_job(pb.GetJobRequest(id=job.id))).job == job
        await eventually(health_is(health, SERVING), what="SERVING after Redis resumes")


@pytest.fixture
def small_limit_server(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with jobqueue_server(redis_url, tmp_path / "server.log", JOBQUEUE_MAX_PAYLOAD_BYTES="1000") as url:
        yield url


async def test_configured_payload_limit(small_limit_server: str) -> None:
    async with job_client(small_limit_server, "grpc") as client:
        assert len((await enqueue(client, "small", NOISE[:1000])).job.payload) == 1000
        message = await fails(enqueue(client, "small", NOISE[:1001]), Code.RESOURCE_EXHAUSTED)
        assert message.startswith("payload: ")
        assert "1001 bytes is over the limit of 1000 bytes" in message
        # Far over: refused before it is decoded, with the same limit named.
        message = await fails(enqueue(client, "small", NOISE[: 100 * 1024]), Code.RESOURCE_EXHAUSTED)
        assert message == "payload: over the limit of 1000 bytes (JOBQUEUE_MAX_PAYLOAD_BYTES)"
