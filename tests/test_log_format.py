"""Log lines as text (the default) or JSON lines (--log-format json, JOBQUEUE_LOG_FORMAT):
every line about a job names its id and type, the handler's own lines included, and with
tracing on a line logged within a span carries its trace and span ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from jobqueue.client import SyncClient
from jobqueue.log_lines import RUNNING_JOB, JobFields, JsonLines, TextLines
from jobqueue.model import Job, JobStatus
from jobqueue.store.keys import Keyspace

from .conftest import ROOT, jobqueue_process, jobqueue_server_process, until


def _json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a process's output, each parsed as JSON (a line that is not fails the test)."""
    lines = log.read_text().splitlines()
    assert lines, f"{log.name} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{log.name}: not a JSON line: {line!r}")
    return parsed


@pytest.mark.parametrize("kind", ["hypercorn", "h2corn"])
async def test_json_lines_of_a_server_and_a_worker_name_the_job_and_its_trace(
    kind: str, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    if kind == "h2corn" and shutil.which("h2corn") is None:
        pytest.skip("h2corn is not installed")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    # Tracing on, exported nowhere: the ids are in the lines all the same.
    env = {"JOBQUEUE_PREFIX": prefix, "JOBQUEUE_TRACING": "1", "OTEL_TRACES_EXPORTER": "none"}
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    worker_args = ["worker", "tests/json_log_worker.py", "--log-format", "json", "--log-level", "debug"]
    with (
        jobqueue_server_process(redis_url, server_log, server=kind, JOBQUEUE_LOG_FORMAT="json", **env) as (
            url,
            _,
        ),
        jobqueue_process(worker_args, worker_log, REDIS_URL=redis_url, **env),
        SyncClient(url) as client,
    ):
        job = client.enqueue("json-logged", "hi")
        until(lambda: client.get(job.id).status is JobStatus.COMPLETED, "the job to complete, 2nd attempt")

    stored = await redis.hget(Keyspace(prefix).job(job.id), "trace_context")
    assert stored is not None
    trace_id = stored.decode().split("-")[1]  # the server's EnqueueJob span's trace
    server_lines, worker_lines = _json_lines(server_log), _json_lines(worker_log)
    assert any(line["message"].startswith("jobqueue server on") for line in server_lines)
    for line in server_lines + worker_lines:
        if "event" in line:  # h2corn's own record (its start, its workers)
            assert kind == "h2corn" and "level" in line, line
        else:
            assert {"time", "level", "logger", "message"} <= line.keys(), line
    about_the_job = [line for line in worker_lines if job.id in line["message"] or "job_id" in line]
    for line in about_the_job:
        assert (line["job_id"], line["job_type"]) == (job.id, "json-logged"), line
    # The lines logged during a run, within its span (not its claim, nor the record of its completion).
    in_a_run = [line for line in about_the_job if not line["message"].endswith(("claimed, attempt 1/2",
                "claimed, attempt 2/2", "completed, attempt 2/2"))]  # fmt: skip
    assert len(in_a_run) == 7, in_a_run  # started, handling, ran, failed; started, handling, ran
    for line in in_a_run:
        assert line["trace_id"] == trace_id, line
        assert len(line["span_id"]) == 16, line
    messages = [line["message"] for line in about_the_job]
    assert messages.count("handling 2 bytes") == 2, messages  # the handler's own line, each attempt
    [failed] = [line for line in about_the_job if "failed (attempt 1/2)" in line["message"]]
    assert failed["level"] == "WARNING"
    assert "ValueError: the first attempt fails" in failed["exception"]
    assert any("completed" in m for m in messages), messages  # a DEBUG routine step
    # The two attempts are two spans of one trace.
    assert len({line["span_id"] for line in about_the_job if line["message"] == "handling 2 bytes"}) == 2


def _lines_of(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(JobFields())
    logger = logging.getLogger(f"tests.log_format.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def _job() -> Job:
    return Job("0a1b2c3d-0000-4000-8000-000000000000", "email", b"", JobStatus.RUNNING, 0, 0, 0)


@pytest.fixture
def in_a_run() -> Iterator[Job]:
    """As while a worker runs the job's handler."""
    job = _job()
    token = RUNNING_JOB.set(job)
    yield job
    RUNNING_JOB.reset(token)


def test_a_text_line_logged_by_a_handler_ends_naming_its_job(in_a_run: Job) -> None:
    logger, out = _lines_of(TextLines())
    logger.info("sent %d mails", 3)
    logger.info("job %s (%s): told", "x", "y", extra={"job_id": "x", "job_type": "y"})  # names it itself
    first, second = out.getvalue().splitlines()
    assert first.endswith(f"INFO {logger.name}: sent 3 mails [job {in_a_run.id} email]")
    assert second.endswith(": job x (y): told")


def test_a_json_line_is_one_line_even_with_a_traceback(in_a_run: Job) -> None:
    logger, out = _lines_of(JsonLines())
    try:
        int("line one\nline two")
    except ValueError:
        logger.exception("it broke")
    [line] = out.getvalue().splitlines()
    fields = json.loads(line)
    assert fields["message"] == "it broke" and fields["level"] == "ERROR"
    assert (fields["job_id"], fields["job_type"]) == (in_a_run.id, "email")
    assert fields["exception"].startswith("Traceback") and "line two" in fields["exception"]
    assert fields["time"].endswith("Z")


async def test_lines_outside_a_run_name_no_job() -> None:
    logger, out = _lines_of(JsonLines())

    async def elsewhere() -> None:
        logger.info("not about a job")

    await asyncio.create_task(elsewhere())
    assert "job_id" not in json.loads(out.getvalue())


def test_an_unknown_log_format_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "worker", "x", "--log-format", "xml"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'xml' is not a log format (text, json)" in done.stderr
