"""OpenTelemetry traces: one trace from the caller's span through the API to each run
of the job, spans exported to memory. The server (Hypercorn, the real app) and the
workers run in the test's process, on its TracerProvider; the client is the real
Python client, over HTTP. Tracing off stores nothing with the job; tracing on
without the extra or its exporter fails with a message, not a traceback."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.model import Job, JobStatus
from jobqueue.redis_server import free_port
from jobqueue.server import serve
from jobqueue.settings import Settings
from jobqueue.store.connection import OwnConnection
from jobqueue.store.keys import Keyspace
from jobqueue.worker import Worker

from .conftest import ROOT, eventually, jobqueue_server_process
from .harness import Harness
from .test_api import SERVICE, curl, grpcurl_json, host_port, run, tool

ENQUEUE = "mpataki.jobqueue.v1.JobService/EnqueueJob"
_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def provider() -> TracerProvider:
    """The process's TracerProvider (set once: OpenTelemetry allows no second), its
    spans kept in memory."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(_exporter))
    return current


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.fixture
def traced(settings: Settings) -> Settings:
    """Tracing on, a key prefix of the test's own (the suite's shared server works on
    the default one), the server on a free loopback port."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return dataclasses.replace(settings, prefix=prefix, tracing=True, host="127.0.0.1", port=free_port())


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
async def api(traced: Settings) -> AsyncIterator[str]:
    """The server in this process (Hypercorn on the real app), stopped at the end."""
    stop = asyncio.Event()
    server = asyncio.create_task(serve(traced, stop))

    async def up() -> bool:
        if server.done():
            server.result()  # its error, if it failed to start
        return _listening(traced.port)

    await eventually(up, what="the server to listen")
    yield f"http://127.0.0.1:{traced.port}"
    stop.set()
    await asyncio.wait_for(server, 30)


async def _fine(job: Job) -> None:
    pass


async def _broken(job: Job) -> None:
    raise ValueError("no such recipient")


def _one(spans: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def _parent_of(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.context is not None and parent.context is not None
    assert child.context.trace_id == parent.context.trace_id
    assert child.parent is not None and child.parent.span_id == parent.context.span_id


async def test_one_trace_from_the_callers_span_through_the_api_to_the_run(
    traced: Settings, api: str, spans: InMemorySpanExporter
) -> None:
    workers = [
        Worker("traced-fine", _fine, settings=traced, block_timeout_s=0.2),
        Worker("traced-broken", _broken, settings=traced, block_timeout_s=0.2, max_attempts=1),
    ]
    stop = asyncio.Event()
    serving = [asyncio.create_task(worker.serve(stop)) for worker in workers]
    tracer = trace.get_tracer("test")
    try:
        async with Client(api, tracing=True) as client:
            with tracer.start_as_current_span("caller"):
                fine = await client.enqueue("traced-fine", "hello")
            with tracer.start_as_current_span("caller of the broken one"):
                broken = await client.enqueue("traced-broken", "hello")

            async def finished() -> bool:
                states = {(await client.get(fine.id)).status, (await client.get(broken.id)).status}
                return states == {JobStatus.COMPLETED, JobStatus.FAILED}

            await eventually(finished, what="both jobs to finish")
    finally:
        stop.set()
        await asyncio.gather(*serving)

    def ran() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]

    async def both_ran() -> bool:
        return len(ran()) == 2

    await eventually(both_ran, what="the two runs' spans")
    finished_spans = list(spans.get_finished_spans())

    caller = _one(finished_spans, "caller", SpanKind.INTERNAL)
    sent = [s for s in finished_spans if s.name == ENQUEUE and s.kind is SpanKind.CLIENT]
    received = [s for s in finished_spans if s.name == ENQUEUE and s.kind is SpanKind.SERVER]
    client_span = next(s for s in sent if s.parent and s.parent.span_id == caller.context.span_id)
    _parent_of(client_span, caller)
    server_span = next(s for s in received if s.parent and s.parent.span_id == client_span.context.span_id)
    _parent_of(server_span, client_span)
    assert server_span.attributes is not None
    assert server_span.attributes["jobqueue.job.id"] == fine.id
    run = _one(finished_spans, "traced-fine", SpanKind.CONSUMER)
    _parent_of(run, server_span)
    assert run.attributes is not None
    assert run.attributes["jobqueue.job.id"] == fine.id
    assert run.attributes["jobqueue.job.type"] == "traced-fine"
    assert run.attributes["jobqueue.job.attempt"] == 1
    assert isinstance(run.attributes["jobqueue.job.wait_ms"], int)
    assert run.attributes["jobqueue.job.wait_ms"] >= 0
    assert run.status.status_code is StatusCode.UNSET

    other_caller = _one(finished_spans, "caller of the broken one", SpanKind.INTERNAL)
    failed_run = _one(finished_spans, "traced-broken", SpanKind.CONSUMER)
    assert failed_run.context is not None and other_caller.context is not None
    assert failed_run.context.trace_id == other_caller.context.trace_id
    assert failed_run.context.trace_id != run.context.trace_id
    assert failed_run.status.status_code is StatusCode.ERROR
    assert "ValueError: no such recipient" in (failed_run.status.description or "")
    assert [e.name for e in failed_run.events] == ["exception"]


async def test_an_enqueue_stores_the_callers_trace_context_only_with_tracing_on(
    redis: Redis, traced: Settings, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    on, off = Harness(redis, traced), Harness(redis, dataclasses.replace(traced, tracing=False))
    with tracer.start_as_current_span("caller") as caller:
        with_tracing = await on.enqueue("traced-store", "x")
        without = await off.enqueue("traced-store", "x")
    untraced = await on.enqueue("traced-store", "x")  # no span: nothing to continue

    context = caller.get_span_context()
    stored = await redis.hget(on.keys.job(with_tracing.id), "trace_context")
    flags = int(context.trace_flags)
    assert stored == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}".encode()
    assert b"trace_context" not in await redis.hkeys(off.keys.job(without.id))
    assert b"trace_context" not in await redis.hkeys(on.keys.job(untraced.id))


async def test_a_claim_returns_the_trace_context_only_to_a_tracing_worker(
    redis: Redis, blocking: OwnConnection, traced: Settings, spans: InMemorySpanExporter
) -> None:
    on, off = Harness(redis, traced), Harness(redis, dataclasses.replace(traced, tracing=False))
    kind = "traced-claim"
    with trace.get_tracer("test").start_as_current_span("caller"):
        jobs = [await on.enqueue(kind, "x") for _ in range(3)]
    stored = [(await redis.hget(on.keys.job(job.id), "trace_context")).decode() for job in jobs]
    assert all(stored)

    # An idle worker's claim (claim.lua), traced and not.
    popped = await on.pop(blocking, kind, 1)
    assert popped == jobs[0].id
    assert (await on.claimed(kind, popped, "w1", 30_000)).trace_context == stored[0]
    popped = await off.pop(blocking, kind, 1)
    assert (await off.claimed(kind, popped, "w2", 30_000)).trace_context == ""
    # A busy worker's (round.lua).
    _, _, taken = await on.transitions.round(kind, "w1", take=1)
    _, [claimed], _ = await on.transitions.round(kind, "w1", claim=taken, lease_ms=30_000)
    assert isinstance(claimed, Job) and claimed.id == jobs[2].id
    assert claimed.trace_context == stored[2]


@pytest.mark.parametrize("kind", ["hypercorn", "h2corn"])
async def test_a_server_continues_the_trace_of_a_w3c_caller_over_grpc_and_connect(
    kind: str, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """`jobqueue server` with JOBQUEUE_TRACING: the job stores the server's span, child of
    the `traceparent` grpcurl or curl sent."""
    if kind == "h2corn" and shutil.which("h2corn") is None:
        pytest.skip("h2corn is not installed")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {"JOBQUEUE_PREFIX": prefix, "JOBQUEUE_TRACING": "1", "OTEL_TRACES_EXPORTER": "none"}
    callers = {"grpcurl": uuid.uuid4().hex, "curl": uuid.uuid4().hex}  # a trace id each
    caller_span = "00f067aa0ba902b7"
    ids = {}
    with jobqueue_server_process(redis_url, tmp_path / "server.log", server=kind, **env) as (url, _):
        header = f"traceparent: 00-{callers['grpcurl']}-{caller_span}-01"
        ran = await run(
            tool("grpcurl"), "-plaintext", "-max-time", "20", "-H", header, "-d", '{"type": "traced-w3c"}',
            host_port(url), f"{SERVICE}/EnqueueJob",
        )  # fmt: skip
        ids["grpcurl"] = grpcurl_json(ran)["job"]["id"]
        reply = await curl(
            "-H", "Content-Type: application/json", "-d", '{"type": "traced-w3c"}',
            "-H", f"traceparent: 00-{callers['curl']}-{caller_span}-01", f"{url}/{SERVICE}/EnqueueJob",
        )  # fmt: skip
        assert reply.status == 200, reply
        ids["curl"] = reply.json()["job"]["id"]
    keys = Keyspace(prefix)
    for client, job_id in ids.items():
        stored = await redis.hget(keys.job(job_id), "trace_context")
        assert stored is not None, client
        version, trace_id, span_id, flags = stored.decode().split("-")
        assert (version, trace_id, flags) == ("00", callers[client], "01"), client
        assert span_id != caller_span  # the server's own span, the caller's child


_MAIN = "from jobqueue.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli(args: list[str], prelude: str = "pass", **env: str) -> subprocess.CompletedProcess[str]:
    """`jobqueue ARGS` in a new process, after `prelude` (Python)."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys; {prelude}; {_MAIN}", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def test_tracing_without_the_extra_is_a_message_not_a_traceback(redis_url: str) -> None:
    not_installed = "sys.modules['opentelemetry'] = None"  # its import fails, as when it is absent
    done = _cli(["worker", "tests/worker_apps.py", "--tracing"], not_installed, REDIS_URL=redis_url)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'jobqueue[otel]'" in done.stderr


def test_an_exporter_not_installed_is_a_message_not_a_traceback(redis_url: str) -> None:
    done = _cli(
        ["server", "--port", str(free_port()), "--host", "127.0.0.1"],
        REDIS_URL=redis_url, JOBQUEUE_TRACING="1", OTEL_TRACES_EXPORTER="zipkin",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "OTEL_TRACES_EXPORTER=zipkin: no such exporter is installed" in done.stderr
