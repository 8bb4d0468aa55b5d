"""The benchmark suite still runs (tiny sizes): `bench/run.sh --smoke`. Numbers are not checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from jobqueue.redis_server import free_port

from .conftest import ROOT, _wait_port


@pytest.mark.timeout(600)
def test_benchmark_suite_smoke(tmp_path: Path) -> None:
    ran = subprocess.run(
        ["bash", "bench/run.sh", "--smoke"],
        cwd=ROOT, env={**os.environ, "BENCH_OUT": str(tmp_path)},
        capture_output=True, text=True, timeout=590, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    for section in ("## S1-S3", "## S5: scaling", "## S6: memory"):
        assert section in report
    for variant in ("sdk", "rpc"):  # enqueued through the SDK, and through the API
        ours = json.loads((tmp_path / "results" / f"jobqueue-{variant}.json").read_text())
        assert ours["s1"]["drain_jobs_per_s"]["median"] > 0, ours
        assert ours["s2"]["n"] == ours["s2"]["expected"] and ours["s3"]["n"] == ours["s3"]["expected"], ours
    scaling = json.loads((tmp_path / "s5.json").read_text())
    assert [row["workers"] for row in scaling["rows"]] == [1, 2, 4]
    s4 = json.loads((tmp_path / "s4.json").read_text())
    for row in s4.get("rows", []):  # S4 needs h2load; each run checks every job was stored
        assert row["jobs_stored"] == row["jobs_expected"], row


@pytest.mark.timeout(300)
def test_s5_on_a_cluster_reports_each_masters_redis_cpu(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/suite.py", "s5-cluster", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=290, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    result = json.loads((tmp_path / "s5-cluster.json").read_text())
    assert result["processes"] == 2 and result["drain_jobs_per_s"] > 0, result
    masters = result["masters"]
    assert len({m["master"] for m in masters}) == 3, masters
    assert all(m["redis_cpu_us_per_job"] > 0 for m in masters), masters
    assert abs(sum(m["share"] for m in masters) - 1) < 0.01, masters
    # One type is one partition: its scripts run on one master, the job body's INCR on another or the same.
    commands = {c["command"] for m in masters for c in m["top_commands"]}
    assert "evalsha" in commands, masters
    report = subprocess.run(
        [sys.executable, "bench/report.py", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "## S5 on a Redis Cluster" in report.stdout
    assert all(m["master"] in report.stdout for m in masters)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("network", [[], ["--one-way-delay-us", "100"]], ids=["loopback", "slow-network"])
def test_one_drain_for_profiling(redis_url: str, network: list[str]) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/drain_once.py", redis_url, "--jobs", "300", "--timeout", "60", *network],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert float(ran.stdout.split()[1]) > 0, ran.stdout


@pytest.mark.timeout(120)
def test_a_drains_cost_per_job_by_part(redis_url: str) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/drain_cost.py", redis_url, str(ROOT), "--jobs", "300", "--timeout", "60",
         "--no-syscalls", "--per-script"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "rounds/job" in ran.stdout, ran.stdout
    assert "scripts usec/job (calls/job): round " in ran.stdout, ran.stdout  # named from the tree's scripts
    assert "medians:" in ran.stdout, ran.stdout


@pytest.mark.timeout(120)
def test_a_workers_python_calls_per_job(redis_url: str) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/worker_calls.py", redis_url, str(ROOT), "--jobs", "200", "--timeout", "90"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert float(ran.stdout.split(": ")[1].split()[0]) > 0, ran.stdout  # "TREE: N Python calls per job"


@pytest.mark.timeout(120)
def test_one_drain_with_a_sync_handler(redis_url: str) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/drain_once.py", redis_url, "--jobs", "300", "--timeout", "60", "--sync"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert float(ran.stdout.split()[1]) > 0, ran.stdout


@pytest.mark.timeout(180)
def test_the_drain_with_metrics_off_and_on() -> None:
    ran = subprocess.run(
        [sys.executable, "bench/metrics_drain.py", "--pairs", "1", "--jobs", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "metrics on (300 started)" in ran.stdout  # the worker's own count, scraped
    assert "median drain: off" in ran.stdout, ran.stdout


@pytest.mark.timeout(60)
def test_the_network_delay_proxy_delays_a_round_trip(redis_url: str) -> None:
    port = urlsplit(redis_url).port
    listen = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "bench/net_delay.py", "--listen", str(listen), "--to", str(port),
         "--one-way-us", "5000", "--seconds", "50"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        _wait_port(listen, proxy)
        client = redis.Redis(port=listen, socket_timeout=10)
        client.ping()
        started = time.monotonic()
        assert client.ping() is True
        assert time.monotonic() - started >= 0.010  # 5 ms each way
        client.close()
    finally:
        proxy.kill()
        proxy.wait()


TIMELINES = {
    "s2": (["s2"], ["S2, 20 jobs", "claim replied -> handler starts"]),
    "s3": (["s3"], ["S3, 20 jobs", "handler #20 starts"]),
    "s2-priorities": (["s2", "--priorities", "5,7"], ["priority 5    10 jobs", "priority 7    10 jobs"]),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", TIMELINES)
def test_the_timeline_of_s2_and_s3(redis_url: str, scenario: str) -> None:
    args, expected = TIMELINES[scenario]
    ran = subprocess.run(
        [sys.executable, "bench/timeline.py", redis_url, *args, "--jobs", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for text in expected:
        assert text in ran.stdout, ran.stdout


@pytest.mark.timeout(120)
def test_the_cost_of_a_connection(redis_url: str) -> None:
    ran = subprocess.run(
        [sys.executable, "bench/connect_cost.py", redis_url],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "new connection:" in ran.stdout and "cold pool, 100 concurrent commands" in ran.stdout


@pytest.mark.timeout(180)
def test_list_pages_through_both_clients() -> None:
    """bench/list_jobs.py at tiny sizes, through SyncClient and the one-socket client: both
    walk every selection (each page's size is checked by the walk); numbers unchecked."""
    ran = subprocess.run(
        [sys.executable, "bench/list_jobs.py", "--jobs", "10000", "--completed", "1000",
         "--pages", "3", "--runs", "1", "--client", "sync", "socket"],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    for client in ("sync", "socket"):
        for call in ("GetJob (for scale)", "pending, oldest first", "every type, pending, newest first"):
            assert f"median of 1 runs, {client} client: {call}: p50" in ran.stdout, ran.stdout
