"""Servers keep no state: two `jobqueue server` processes on one Redis serve the same
clients; one is killed outright (SIGKILL) and the other carries on, including a watch
resumed from the killed server's cursor."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from jobqueue.client import SyncClient
from jobqueue.model import JobStatus
from jobqueue.redis_server import free_port
from jobqueue.selection import JobFilter

from .conftest import ROOT, _wait_port, jobqueue_process, jobqueue_server
from .edge import error_lines

PREFIX = "many-servers"  # a keyspace of the test's own: the suite's shared server reaps "jq"


@contextlib.contextmanager
def killable_server(redis_url: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `jobqueue server` the test may kill; killed at the end if it still runs."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "server", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "REDIS_URL": redis_url, "JOBQUEUE_PREFIX": PREFIX},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_port(port, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_two_servers_one_killed(tmp_path: Path, redis_url: str) -> None:
    worker_args = ["worker", "tests/worker_apps.py", "--processes", "1"]
    with (
        killable_server(redis_url, tmp_path / "a.log") as (url_a, server_a),
        jobqueue_server(redis_url, tmp_path / "b.log", JOBQUEUE_PREFIX=PREFIX) as url_b,
        jobqueue_process(
            worker_args, tmp_path / "worker.log", JOBQUEUE_REDIS_URL=redis_url, JOBQUEUE_PREFIX=PREFIX
        ),  # fmt: skip
        SyncClient(url_a) as a,
        SyncClient(url_b) as b,
    ):
        # Either server reads and waits for what the other enqueued.
        first = a.enqueue("sleepy", b"0")
        assert b.get(first.id).id == first.id
        assert b.wait(first.id, 30).status is JobStatus.COMPLETED
        second = b.enqueue("sleepy", b"0")
        assert a.wait(second.id, 30).status is JobStatus.COMPLETED

        # A watch on A, up to the job's start; then A dies while the job runs.
        slow = a.enqueue("sleepy", b"3")
        with a.watch_job(slow.id) as watch:
            seen = []
            for event in watch:
                seen.append(event)
                if event.status is JobStatus.RUNNING:
                    break
        cursor = seen[-1].cursor
        server_a.kill()
        server_a.wait(10)

        # B carries on: the watch resumed from A's cursor sees the rest, and new calls work.
        with b.watch_job(slow.id, cursor) as resumed:
            rest = list(resumed)
        assert rest and rest[-1].status is JobStatus.COMPLETED and not any(e.gap for e in rest), rest
        assert all(e.status is not JobStatus.PENDING for e in rest), rest  # nothing replayed from before
        assert b.wait(slow.id, 30).status is JobStatus.COMPLETED
        third = b.enqueue("sleepy", b"0")
        assert b.wait(third.id, 30).status is JobStatus.COMPLETED
        done = b.list_jobs(JobFilter(type="sleepy", status=JobStatus.COMPLETED)).jobs
        assert {j.id for j in done} == {first.id, second.id, slow.id, third.id}
    text = (tmp_path / "b.log").read_text()
    assert not error_lines(text), text
