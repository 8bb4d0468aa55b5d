"""`jobqueue worker --processes N`: a supervisor of N worker processes (jobqueue/worker_processes.py).

The workers are tests/worker_apps.py's `sleepy` (concurrency 4, liveness 1 s): each run
RPUSHes "<id> <attempt> <pid>" to test:started, so the test sees which process ran it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobqueue.client import SyncClient
from jobqueue.model import JobStatus
from jobqueue.ports import port_free
from jobqueue.redis_server import free_port

from .conftest import ROOT, eventually, jobqueue_process, runs, status_is, until
from .edge import error_lines
from .harness import Harness

# The reaper timings of the suite's worker processes (conftest.spawn).
QUICK_REAPER = {
    "JOBQUEUE_REAPER_INTERVAL_S": "0.2",
    "JOBQUEUE_CLAIM_TIMEOUT_S": "1",
    "JOBQUEUE_RESTART_GRACE_S": "0",
}


def supervisor(
    redis_url: str, log: Path, processes: int = 2, *options: str
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`jobqueue worker tests/worker_apps.py --processes N`: it must exit 0 on SIGTERM."""
    args = ["worker", "tests/worker_apps.py", "--processes", str(processes), *options]
    return jobqueue_process(args, log, JOBQUEUE_REDIS_URL=redis_url, **QUICK_REAPER)


def children_of(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux's /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def jobs_started(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jobqueue_jobs_started_total"
    )


async def pids_that_ran(store: Harness) -> set[int]:
    return {pid for _, _, pid in await runs(store, "test:started")}


async def running_in_two(store: Harness) -> bool:
    return len(await pids_that_ran(store)) >= 2


async def test_two_processes_drain_the_jobs_and_both_take_work(
    tmp_path: Path, redis_url: str, store: Harness, server_url: str
) -> None:
    """Both children run jobs; ListWorkers shows two workers, of two processes; each
    serves its metrics on a port of its own, and together they count every job."""
    log, port = tmp_path / "supervisor.log", free_port()
    while not port_free("127.0.0.1", port + 1):
        port = free_port()
    with supervisor(redis_url, log, 2, "--metrics-port", str(port)) as process:
        # Long enough runs that one process (4 slots) cannot take them all at once.
        jobs = [await store.enqueue("sleepy", b"0.3") for _ in range(24)]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=60, what="the drain")
        with SyncClient(server_url) as client:
            workers = await asyncio.to_thread(client.workers, "sleepy")
        assert len({w.id for w in workers}) == 2 and len({w.pid for w in workers}) == 2, workers
        assert {w.pid for w in workers} == children_of(process.pid)
        assert {w.pid for w in workers} == await pids_that_ran(store)
        started = [await asyncio.to_thread(jobs_started, p) for p in (port, port + 1)]
        assert sum(started) == 24 and all(started), started
    text = log.read_text()
    assert not error_lines(text), text
    assert text.count("worker process") >= 2 and "supervising 2 worker processes" in text, text


async def test_a_killed_process_is_restarted_and_its_jobs_run_again(
    tmp_path: Path, redis_url: str, store: Harness
) -> None:
    """kill -9 of one child: the supervisor starts another; the jobs the dead one held come
    back (its liveness lapses) and every job completes."""
    log = tmp_path / "supervisor.log"
    with supervisor(redis_url, log) as process:
        jobs = [await store.enqueue("sleepy", b"2") for _ in range(8)]
        await eventually(lambda: running_in_two(store), timeout=30, what="both processes running jobs")
        victim = next(iter(await pids_that_ran(store)))
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            children = children_of(process.pid)
            return len(children) == 2 and victim not in children

        await eventually(replaced, timeout=30, what="a new child in place of the killed one")
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=60, what="every job done")
        started = await runs(store, "test:started")
        again = {job_id for job_id, attempt, _ in started if attempt == 2}
        assert again == {job_id for job_id, _, pid in started if pid == victim}, started
        assert again, "the killed process held no job"
    text = log.read_text()
    assert f"(pid {victim}) exited (killed by SIGKILL); restarting it" in text, text
    assert not error_lines(text), text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_stops_every_process_gracefully(
    tmp_path: Path, redis_url: str, store: Harness, stop_signal: signal.Signals
) -> None:
    """SIGTERM (or SIGINT) to the supervisor: each child releases its running jobs (back to PENDING,
    no attempt spent) and leaves; the supervisor exits 0 within the deadline; no ERROR."""
    log = tmp_path / "supervisor.log"
    with supervisor(redis_url, log) as process:
        jobs = [await store.enqueue("sleepy", b"60") for _ in range(8)]
        await eventually(lambda: running_in_two(store), timeout=30, what="both processes running jobs")
        children = children_of(process.pid)
        assert len(children) == 2
        process.send_signal(stop_signal)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0
    assert not any(alive(pid) for pid in children)
    for job in jobs:
        stored = await store.get(job.id)
        assert stored.status is JobStatus.PENDING, stored
    text = log.read_text()
    assert not error_lines(text), text
    assert "handed back" in text, text
    assert len(await store.store.registry.live("sleepy")) == 0


def test_processes_must_be_a_positive_number(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "worker", "tests/worker_apps.py", "--processes", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "'0' is not a number of processes (1 or more)" in result.stderr


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not Path("/proc/self/task").exists():
        pytest.skip("reads children from /proc")


def test_a_crash_loop_is_bounded(tmp_path: Path, redis_url: str) -> None:
    """Children that die as they start (the supervisor itself loads the module fine) are
    restarted with growing delays, then the supervisor gives up: exit 1, no child left."""
    module = tmp_path / "crashing_worker.py"
    module.write_text(
        "import sys\n"
        "from jobqueue.worker import Job, Worker\n"
        "if sys.argv[-2:] == ['--processes', '1']:  # a child\n"
        "    raise ValueError('crashing on purpose')\n"
        "async def noop(job: Job) -> None: ...\n"
        "worker = Worker('crashing', noop)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "worker", str(module), "--processes", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
        env={**os.environ, "JOBQUEUE_REDIS_URL": redis_url},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "exited (exit status 1), 5 times in a row within 30 s of starting: giving up" in result.stderr
    assert "restarting it in 4.0 s" in result.stderr  # the delays doubled: 0.5, 1, 2, 4 s
    assert result.stderr.count("crashing on purpose") >= 5


def test_a_stop_while_the_processes_start_is_a_clean_stop(tmp_path: Path, redis_url: str) -> None:
    """SIGTERM while the children are still starting (loading the module, before they
    handle the signal): they die of it, which is the stop asked for: exit 0."""
    module = tmp_path / "slow_start_worker.py"
    module.write_text(
        "import os, sys, time\n"
        "from jobqueue.worker import Job, Worker\n"
        "if sys.argv[-2:] == ['--processes', '1']:  # a child: it starts slowly\n"
        f"    open(os.path.join({str(tmp_path)!r}, f'started-{{os.getpid()}}'), 'w').close()\n"
        "    time.sleep(60)\n"
        "async def noop(job: Job) -> None: ...\n"
        "worker = Worker('slow_start', noop)\n"
    )
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "worker", str(module), "--processes", "2"],
            env={**os.environ, "JOBQUEUE_REDIS_URL": redis_url}, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        until(lambda: len(list(tmp_path.glob("started-*"))) == 2, "both children loading the module")
        children = children_of(process.pid)
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert code == 0, text
    assert not any(alive(pid) for pid in children)
    assert "stopped with" not in text and not error_lines(text), text


def test_an_unreachable_cluster_is_an_outage_for_the_supervisor(tmp_path: Path) -> None:
    """`--redis-cluster` with no node answering: the supervisor's check of the deployment
    sees an outage (as on a single Redis), starts its children, and stops cleanly."""
    from jobqueue.store import client  # noqa: PLC0415

    if not hasattr(client, "ClusterUnreachable"):
        pytest.skip("a cluster that does not answer is an outage once clusterops' branch is merged")
    log = tmp_path / "supervisor.log"
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    args = ["worker", "tests/worker_apps.py", "--processes", "2", "--redis-cluster", "--redis-url", nobody]
    with jobqueue_process(args, log) as process:
        until(lambda: "worker process 1 started" in log.read_text(), "both children started")
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    text = log.read_text()
    assert "unavailable" in text and "Traceback" not in text and not error_lines(text), text
