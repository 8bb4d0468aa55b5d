"""The API's refusals and job views explain themselves (issue 15, point 5).

- A request no protocol takes gets a 415 whose body lists the content types that are.
- A request over the size limit, whatever its size, protocol and compression, names
  the payload limit in bytes and its setting.
- A job that completed after a failed attempt says which attempt its error is from.
- A pending job shows the attempts it will get: its own, or the default its type's
  workers registered.

Everything goes through the suite's `jobqueue server` and real clients (curl,
grpcurl, connectrpc) and, for the job views, a real `jobqueue worker` process.
"""

from __future__ import annotations

import contextlib
import json
import random
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyqwest
import pytest
from connectrpc.code import Code
from connectrpc.codec import proto_json_codec
from connectrpc.compression.gzip import GzipCompression
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from jobqueue.model import JobOptions, JobStatus
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Outcome, Result

from .conftest import Spawn, eventually
from .harness import Harness
from .test_api import PROTOCOLS, SERVICE, assert_clean, b64, curl, job_client, post_json, run, tool

MiB = 1 << 20
# Incompressible, so that a request's size on the wire is its size.
NOISE = random.Random(5).randbytes(3 * MiB)
# Compressible: a gzipped request of a few KiB that inflates far past the limit.
ZEROS = bytes(8 * MiB)
PAYLOAD_REFUSAL = f"payload: over the limit of {MiB} bytes (JOBQUEUE_MAX_PAYLOAD_BYTES)"
FAR_FUTURE_MS = 4_102_444_800_000  # 2100: a job that stays PENDING while a worker runs


# -- 415: which content types are accepted --------------------------------------------------

ACCEPTED = (
    "application/json",
    "application/proto",
    "application/grpc,",
    "application/grpc+proto",
    "application/grpc-web,",
    "application/grpc-web+proto",
    "application/grpc-web-text",
)


@pytest.mark.parametrize(
    ("curl_args", "named"),
    [
        pytest.param(["-d", "{}"], "'application/x-www-form-urlencoded'", id="curl-d"),
        pytest.param(["-X", "POST"], "no Content-Type", id="none"),
        pytest.param(["-H", "Content-Type: text/plain", "-d", "{}"], "'text/plain'", id="text-plain"),
    ],
)
async def test_unsupported_content_type_says_what_is_accepted(
    server_url: str, curl_args: list[str], named: str
) -> None:
    reply = await curl(*curl_args, f"{server_url}/{SERVICE}/GetJob")
    assert reply.status == 415, reply
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.headers["accept-post"] == "application/json, application/proto"
    assert named in reply.body
    for content_type in ACCEPTED:
        assert content_type in reply.body, content_type
    assert "-H 'Content-Type: application/json'" in reply.body


# -- a request over the size limit names the payload limit ----------------------------------


@contextlib.asynccontextmanager
async def client_of(server_url: str, protocol: str, *, gzip: bool) -> AsyncIterator[JobServiceClient]:
    """test_api.job_client, with the request compression chosen (connectrpc gzips by default)."""
    version = pyqwest.HTTPVersion.HTTP2 if protocol == "grpc" else pyqwest.HTTPVersion.HTTP1
    kind = {"grpc": ProtocolType.GRPC, "grpc-web": ProtocolType.GRPC_WEB}.get(protocol, ProtocolType.CONNECT)
    codec = proto_json_codec() if protocol == "connect-json" else None
    async with pyqwest.HTTPTransport(http_version=version) as transport:
        client = JobServiceClient(
            server_url,
            protocol=kind,
            codec=codec,
            send_compression=GzipCompression() if gzip else None,
            http_client=pyqwest.Client(transport),
            timeout_ms=30_000,
        )
        async with client:
            yield client


async def refused(call: Any) -> str:
    with pytest.raises(ConnectError) as caught:
        await call
    assert caught.value.code == Code.RESOURCE_EXHAUSTED, caught.value
    assert_clean(caught.value.message)
    return caught.value.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("gzip", "payload"), [(False, NOISE), (True, ZEROS)], ids=["identity", "gzip"])
async def test_oversized_enqueue_names_the_payload_limit(
    server_url: str, protocol: str, gzip: bool, payload: bytes
) -> None:
    async with client_of(server_url, protocol, gzip=gzip) as client:
        message = await refused(client.enqueue_job(pb.EnqueueJobRequest(type="big", payload=payload)))
        assert message == PAYLOAD_REFUSAL
        # The connection still serves (the refused body's rest was read: server/drain.py).
        assert (
            await client.enqueue_job(pb.EnqueueJobRequest(type="small", payload=b"ok"))
        ).job.payload == b"ok"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
async def test_oversized_enqueue_jobs_names_the_payload_limit(
    server_url: str, protocol: str, gzip: bool
) -> None:
    """Two payloads each under the limit, together over what one call may carry."""
    jobs = [pb.EnqueueJobRequest(type="big", payload=NOISE[i * MiB : (i + 1) * MiB]) for i in range(2)]
    async with client_of(server_url, protocol, gzip=gzip) as client:
        message = await refused(client.enqueue_jobs(pb.EnqueueJobsRequest(jobs=jobs)))
    assert message.startswith("jobs: the request is over the ")
    assert f"({MiB} bytes, JOBQUEUE_MAX_PAYLOAD_BYTES)" in message
    assert message.endswith("send fewer jobs per call")


async def test_oversized_enqueue_with_curl(server_url: str) -> None:
    reply = await post_json(server_url, "EnqueueJob", json.dumps({"type": "big", "payload": b64(NOISE)}))
    assert reply.status == 429, reply
    assert reply.json() == {"code": "resource_exhausted", "message": PAYLOAD_REFUSAL}


async def test_oversized_enqueue_with_grpcurl(server_url: str) -> None:
    body = json.dumps({"type": "big", "payload": b64(NOISE)}).encode()
    ran = await run(
        tool("grpcurl"), "-plaintext", "-max-time", "30", "-max-msg-sz", str(8 * MiB), "-d", "@",
        server_url.removeprefix("http://"), f"{SERVICE}/EnqueueJob",
        stdin=body,
    )  # fmt: skip
    assert ran.code == 64 + 8, ran  # grpcurl's exit code for ResourceExhausted
    assert "Code: ResourceExhausted\n" in ran.err
    assert f"Message: {PAYLOAD_REFUSAL}\n" in ran.err


async def test_other_methods_name_the_request_limit(server_url: str) -> None:
    """A method without payloads names the request's limit (it follows the payload limit)."""
    body = json.dumps({"id": "x" * (2 * MiB)}).encode()
    ran = await run(
        tool("grpcurl"), "-plaintext", "-max-time", "30", "-d", "@",
        server_url.removeprefix("http://"), f"{SERVICE}/GetJob",
        stdin=body,
    )  # fmt: skip
    assert "Code: ResourceExhausted\n" in ran.err, ran
    assert "Message: request: over the limit of " in ran.err
    assert "configured max" not in ran.err


# -- a completed job after a failed attempt; the attempts of a pending job ------------------


def worker_file(tmp_path: Path, job_type: str, max_attempts: int) -> str:
    """A worker of `job_type` whose handler fails a job's first attempt (permanently for
    the payload `permanent`) and completes the next."""
    path = tmp_path / f"worker_{uuid.uuid4().hex[:8]}.py"
    path.write_text(
        textwrap.dedent(f"""
        from jobqueue.worker import Job, PermanentError, Worker


        async def flaky(job: Job) -> None:
            if job.payload == b"permanent":
                raise PermanentError("cannot ever work")
            if job.attempt == 1:
                raise RuntimeError("the first attempt fails")


        worker = Worker({job_type!r}, flaky, max_attempts={max_attempts}, heartbeat_s=0.2)
        """)
    )
    return str(path)


def new_type() -> str:
    return f"refusals-{uuid.uuid4().hex[:12]}"


QUICK_RETRY = pb.Backoff(base_ms=10, factor=1.0, cap_ms=10)


async def settled(client: JobServiceClient, job_id: str, status: pb.JobStatus) -> pb.Job:
    async def check() -> pb.Job | None:
        job = (await client.get_job(pb.GetJobRequest(id=job_id))).job
        return job if job.status == status else None

    found: pb.Job = await eventually(check, timeout=60, what=f"job {job_id} to be {status.name}")
    return found


async def test_completed_job_says_which_attempt_its_error_is_from(
    server_url: str, spawn: Spawn, tmp_path: Path
) -> None:
    job_type = new_type()
    spawn(target=worker_file(tmp_path, job_type, max_attempts=3))
    async with job_client(server_url, "connect-proto") as client:
        request = pb.EnqueueJobRequest(type=job_type, payload=b"flaky", backoff=QUICK_RETRY)
        job_id = (await client.enqueue_job(request)).job.id
        done = await settled(client, job_id, pb.JobStatus.COMPLETED)
    assert (done.attempt, done.last_error_attempt) == (2, 1)
    assert "the first attempt fails" in done.last_error
    # As curl shows it (proto JSON: camelCase, int32 as a number).
    shown = (await post_json(server_url, "GetJob", json.dumps({"id": job_id}))).json()["job"]
    assert (shown["status"], shown["attempt"], shown["lastErrorAttempt"]) == ("JOB_STATUS_COMPLETED", 2, 1)


async def test_failed_job_says_its_error_is_from_its_last_attempt(
    server_url: str, spawn: Spawn, tmp_path: Path
) -> None:
    job_type = new_type()
    spawn(target=worker_file(tmp_path, job_type, max_attempts=3))
    async with job_client(server_url, "grpc") as client:
        job_id = (await client.enqueue_job(pb.EnqueueJobRequest(type=job_type, payload=b"permanent"))).job.id
        failed = await settled(client, job_id, pb.JobStatus.FAILED)
    assert (failed.attempt, failed.last_error_attempt, failed.max_attempts) == (1, 1, 3)
    assert "cannot ever work" in failed.last_error


async def test_pending_job_shows_the_attempts_it_will_get(
    server_url: str, spawn: Spawn, tmp_path: Path
) -> None:
    job_type = new_type()
    later = FAR_FUTURE_MS
    async with job_client(server_url, "connect-json") as client:

        async def get(job_id: str) -> pb.Job:
            return (await client.get_job(pb.GetJobRequest(id=job_id))).job

        default = (await client.enqueue_job(pb.EnqueueJobRequest(type=job_type, execution_time_ms=later))).job
        own_request = pb.EnqueueJobRequest(type=job_type, execution_time_ms=later, max_attempts=2)
        own = (await client.enqueue_job(own_request)).job
        assert (default.max_attempts, own.max_attempts) == (0, 2)  # EnqueueJob's reply: as stored
        # No worker of the type has started: nothing to show yet.
        assert (await get(default.id)).max_attempts == 0

        spawn(target=worker_file(tmp_path, job_type, max_attempts=7))

        async def shown() -> int:
            return (await get(default.id)).max_attempts

        assert await eventually(shown, timeout=60, what="the worker's default to show") == 7
        seen = await get(default.id)
        assert seen.status == pb.JobStatus.PENDING
        assert (await get(own.id)).max_attempts == 2  # its own wins


async def test_a_crashed_attempt_is_named_too(private_store: Harness, blocking: OwnConnection) -> None:
    """A recovered job (its worker died) records which attempt the crash ended, as a
    failure does; its last attempt's crash too."""
    store = private_store
    job = await store.enqueue("crashy", b"", None, JobOptions(max_attempts=2))
    for attempt, outcome, status in [
        (1, Outcome.RECOVERED, JobStatus.PENDING),
        (2, Outcome.DEAD_LETTERED, JobStatus.FAILED),
    ]:
        assert await store.pop(blocking, "crashy", 10) == job.id
        assert (await store.claimed("crashy", job.id, "gone", lease_ms=60_000)).attempt == attempt
        assert await store.transitions.recover("crashy", job.id, dead_worker="gone") == Result(outcome)
        seen = await store.get(job.id)
        assert (seen.status, seen.attempt, seen.last_error_attempt) == (status, attempt, attempt)
        assert "worker gone died" in seen.last_error
