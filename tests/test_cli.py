"""The `jobqueue` command as a user runs it: client commands, worker loading, dev."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jobqueue.cli import parse_duration_s, parse_time_ms
from jobqueue.model import JobStatus
from jobqueue.redis_server import free_port

from .conftest import ROOT, eventually, status_is
from .harness import Harness


def jobqueue(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command", [[], ["server"], ["worker"], ["dev"], ["enqueue"], ["get"], ["cancel"], ["retry"]]
)
def test_help_everywhere(command: list[str]) -> None:
    result = jobqueue(*command, "--help")
    assert result.returncode == 0 and "usage: jobqueue" in result.stdout


def test_durations_and_times_parse() -> None:
    assert [parse_duration_s(t) for t in ("1500ms", "30s", "5m", "2h", "1d", "7")] == [
        1.5,
        30,
        300,
        7200,
        86400,
        7,
    ]
    assert parse_time_ms("1735689600000") == 1735689600000
    assert parse_time_ms("2025-01-01T00:00:00+00:00") == 1735689600000
    for bad in ("soon", "5 minutes"):
        with pytest.raises(Exception, match="duration"):
            parse_duration_s(bad)


async def test_enqueue_get_cancel_round_trip(server_url: str, store: Harness) -> None:
    enqueued = jobqueue("enqueue", "print", "hello", "--in", "1h", "--url", server_url)
    assert enqueued.returncode == 0, enqueued.stderr
    job = json.loads(enqueued.stdout)
    assert job["type"] == "print" and job["status"] == "JOB_STATUS_PENDING"
    assert int(job["executionTimeMs"]) - int(job["createdAt"]) > 3_500_000
    assert (await store.get(job["id"])).payload == b"hello"

    shown = jobqueue("get", job["id"], "--url", server_url)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job["id"]
    assert jobqueue("cancel", job["id"], "--url", server_url).returncode == 0
    assert (
        json.loads(jobqueue("get", job["id"], "--url", server_url).stdout)["status"] == "JOB_STATUS_CANCELLED"
    )


async def test_enqueue_payload_from_stdin_and_file(server_url: str, store: Harness, tmp_path: Path) -> None:
    blob = bytes(range(256))
    from_stdin = jobqueue("enqueue", "blob", "--file", "-", "--url", server_url, stdin=b"from stdin")
    assert (await store.get(json.loads(from_stdin.stdout)["id"])).payload == b"from stdin"
    (tmp_path / "blob.bin").write_bytes(blob)
    from_file = jobqueue("enqueue", "blob", "-f", str(tmp_path / "blob.bin"), "--url", server_url)
    assert (await store.get(json.loads(from_file.stdout)["id"])).payload == blob


def test_enqueue_at_a_time(server_url: str) -> None:
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    result = jobqueue("enqueue", "print", "--at", at.isoformat(), "--url", server_url)
    assert json.loads(result.stdout)["executionTimeMs"] == str(int(at.timestamp() * 1000))


def test_errors_print_their_code(server_url: str) -> None:
    missing = jobqueue("get", "00000000-0000-4000-8000-000000000000", "--url", server_url)
    assert missing.returncode == 2 and "not_found" in missing.stderr
    bad = jobqueue("enqueue", "bad type", "--url", server_url)
    assert bad.returncode == 2 and "invalid_argument" in bad.stderr and "type" in bad.stderr


def test_worker_with_a_bad_target_says_why() -> None:
    result = jobqueue("worker", "tests/no_such_file.py")
    assert result.returncode == 1 and "no such file" in result.stderr
    result = jobqueue("worker", "tests/worker_apps.py:nothing")
    assert result.returncode == 1 and "no attribute nothing" in result.stderr


async def test_a_worker_gets_its_settings_from_the_command_line(
    tmp_path: Path, redis_url: str, store: Harness
) -> None:
    """`--redis-url` and JOBQUEUE_PREFIX reach the module's Worker, built at import without
    settings of its own: the process's settings are passed down, not put in the environment."""
    module = tmp_path / "noop_worker.py"
    module.write_text(
        "from jobqueue.worker import Job, Worker\n"
        "async def noop(job: Job) -> None: ...\n"
        "worker = Worker('cli-settings', noop, heartbeat_s=0.2)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBQUEUE_REDIS_URL", "REDIS_ADDR")}
    env["JOBQUEUE_PREFIX"] = "cli-prefix"
    prefixed = Harness(store.redis, dataclasses.replace(store.settings, prefix="cli-prefix"))
    job = await prefixed.enqueue("cli-settings")
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
        [sys.executable, "-m", "jobqueue.cli", "worker", str(module), "--redis-url", redis_url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await eventually(status_is(prefixed, job.id, JobStatus.COMPLETED), timeout=30, what="the job done")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = (await asyncio.to_thread(worker.communicate, timeout=30))[0].decode()
    assert worker.returncode == 0, output
    assert "jobs: completed 1," in output


def test_dev_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = jobqueue("dev", env=env)
    assert result.returncode == 1
    assert "no Redis found" in result.stderr and "apt install redis-server" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _post_json(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_dev_runs_redis_server_and_example_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBQUEUE_REDIS_URL", "REDIS_ADDR")}
    env.update(XDG_DATA_HOME=str(tmp_path), HOME=str(tmp_path))
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.cli", "dev", "--port", str(port), "--redis-port", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _post_json(f"{base}/grpc.health.v1.Health/Check", {}).get("status") == "SERVING":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and dev.poll() is None, (tmp_path / "dev.log").read_text()
            time.sleep(0.1)
        service = f"{base}/mpataki.jobqueue.v1.JobService"
        job = _post_json(f"{service}/EnqueueJob", {"type": "print", "payload": "SGVsbG8gZGV2IQ=="})["job"]
        assert isinstance(job, dict)
        while _post_json(f"{service}/GetJob", {"id": job["id"]})["job"]["status"] != "JOB_STATUS_COMPLETED":  # type: ignore[index]
            assert time.monotonic() < deadline + 15, (tmp_path / "dev.log").read_text()
            time.sleep(0.1)
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(30)
    output = (tmp_path / "dev.log").read_text()
    assert code == 0, output
    assert "Hello dev!" in output  # logged by examples/print_worker.py
    data = tmp_path / "jobqueue" / "redis"
    assert any(p.name.startswith("appendonly") for p in data.iterdir()), "dev's Redis keeps an AOF"
    assert "Redis stopped" in output


async def test_enqueue_options_and_retry(server_url: str, store: Harness) -> None:
    args = ["enqueue", "opts", "x", "--max-attempts", "2", "--timeout", "90s", "--idempotency-key", "k1"]
    first = json.loads(jobqueue(*args, "--url", server_url).stdout)
    again = json.loads(jobqueue(*args, "--url", server_url).stdout)
    assert again["id"] == first["id"]
    assert (first["maxAttempts"], first["timeoutMs"], first["idempotencyKey"]) == (2, "90000", "k1")
    await store.cancel(first["id"])
    retried = jobqueue("retry", first["id"], "--url", server_url)
    assert retried.returncode == 0 and json.loads(retried.stdout)["status"] == "JOB_STATUS_PENDING"
    refused = jobqueue("retry", first["id"], "--url", server_url)
    assert refused.returncode == 2 and "failed_precondition" in refused.stderr
