"""Every file in examples/ runs as its docstring says, against a real Redis, server and workers.

The module starts a `jobqueue server` and two `jobqueue worker` processes (the
`print` type, as `jobqueue dev` serves it, and examples/retries.py), each on a
key prefix of the module's own; each example runs as a subprocess with
JOBQUEUE_URL and REDIS_URL in its environment, as a user would run it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobqueue.redis_server import free_port
from jobqueue.store.keys import Keyspace

from .conftest import ROOT, _wait_port, jobqueue_server

PREFIX = "examples"
EXAMPLES = ROOT / "examples"
# The worker `jobqueue dev` runs for the examples that enqueue `print` jobs.
PRINT_WORKER = """
from jobqueue.worker import Job, Worker

async def show(job: Job) -> None:
    print("ran", job.id, job.payload.decode(), flush=True)

worker = Worker("print", show)
"""


def wait_until(check: object, what: str, timeout_s: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment an example runs in; the server and workers run meanwhile."""
    tmp = tmp_path_factory.mktemp("examples")
    (tmp / "print_worker.py").write_text(PRINT_WORKER)
    base = dict(os.environ, REDIS_URL=redis_url, JOBQUEUE_PREFIX=PREFIX)
    keys = Keyspace(PREFIX)
    with (
        jobqueue_server(redis_url, tmp / "server.log", JOBQUEUE_PREFIX=PREFIX) as url,
        redis.Redis.from_url(redis_url) as client,
    ):
        workers = []
        try:
            for target, job_type in ((tmp / "print_worker.py", "print"), (EXAMPLES / "retries.py", "charge")):
                with (tmp / f"{job_type}.log").open("wb") as log:
                    workers.append(subprocess.Popen(
                        [sys.executable, "-m", "jobqueue.cli", "worker", str(target)],
                        env=base, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    ))  # fmt: skip
                wait_until(lambda t=job_type: client.zcard(keys.queue(t).workers), f"a {job_type} worker")
            yield dict(base, JOBQUEUE_URL=url)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(30) for worker in workers]
    assert codes == [0, 0], [(tmp / f"{t}.log").read_text()[-2000:] for t in ("print", "charge")]


def run_example(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_enqueue_and_wait(env: dict[str, str]) -> None:
    out = run_example("enqueue_and_wait.py", env)
    assert re.search(r"^enqueued job [0-9a-f-]{36} \(PENDING\)$", out, re.M), out
    assert re.search(r"^job [0-9a-f-]{36}: COMPLETED after 1 attempt\(s\)$", out, re.M), out


def test_schedule(env: dict[str, str]) -> None:
    out = run_example("schedule.py", env)
    due = re.search(r"is PENDING, due at (\S+)$", out, re.M)
    started = re.search(r": COMPLETED, started at (\S+)$", out, re.M)
    assert due and started, out
    assert dt.datetime.fromisoformat(started[1]) >= dt.datetime.fromisoformat(due[1])


def test_idempotency(env: dict[str, str]) -> None:
    out = run_example("idempotency.py", env)
    ids = re.findall(r"job ([0-9a-f-]{36})", out)
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2], out
    assert "!" not in out, out


def test_retries(env: dict[str, str]) -> None:
    out = run_example("retries.py", env)
    outcomes = dict(line.strip().split(": ", 1) for line in out.splitlines())
    # The FAILED ones end with their error (after the exception's name, say).
    assert outcomes.keys() == {"ok", "expired", "rate-limited", "flaky", "down"}, out
    assert outcomes["ok"] == "COMPLETED after 1 attempt(s)", out
    assert re.fullmatch(r"FAILED after 1 attempt\(s\): .*the card has expired", outcomes["expired"]), out
    assert outcomes["rate-limited"] == "COMPLETED after 2 attempt(s)", out
    assert outcomes["flaky"] == "COMPLETED after 3 attempt(s)", out
    assert re.fullmatch(r"FAILED after 3 attempt\(s\): .*the bank is down", outcomes["down"]), out


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_starlette_app(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        app = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
             "examples/starlette_app.py:app"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_port(port, app)
        status, reply = http("POST", f"http://127.0.0.1:{port}/signups", b"ada@example.com")
        assert status == 202, reply
        job_url = f"http://127.0.0.1:{port}/jobs/{reply['job_id']}"
        wait_until(lambda: http("GET", job_url)[1]["status"] == "COMPLETED", "the welcome email job")
        assert http("GET", job_url) == (200, {"status": "COMPLETED", "attempt": 1})
    finally:
        app.send_signal(signal.SIGTERM)
        code = app.wait(30)
    text = log.read_text()
    assert code == 0, text
    assert "welcome email sent to ada@example.com" in text, text
