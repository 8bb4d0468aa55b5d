#!/usr/bin/env python3
"""jobqueue's own scenarios, beside the shared peer harness (S1-S3, bench/peer_jobqueue.py).

    python bench/suite.py s4|s5|s5-cluster|s6 [--smoke] --out DIR

- S4 API: unary EnqueueJob over gRPC (h2c) and Connect JSON, and EnqueueJobs
  (100 jobs per call), with h2load at 4 connections x 16 streams, next to the
  same server stack with a trivial handler (the ceiling); on Hypercorn, and on
  h2corn when it is installed. Three runs each (server and ceiling alternating):
  the median rate with min-max, latency percentiles of the median run from
  h2load's per-request log; every run checks that Redis holds exactly the jobs sent.
- S5 scaling: drain of N no-op jobs with 1, 2 and 4 worker processes (one
  `jobqueue worker --processes N`), and Redis CPU time per job (INFO cpu, before
  and after).
- S5 on a Redis Cluster (`s5-cluster`, not in bench/run.sh): the same drain with 2
  processes on a local cluster of 3 masters with a replica each, and each master's
  Redis CPU per job (INFO cpu) with its costliest commands (INFO commandstats).
- S6 memory: worker RSS after 100k and 1M jobs (it must stay flat), and Redis
  bytes per pending and per finished job (INFO memory deltas over many jobs).

Each writes DIR/<scenario>.json; bench/report.py turns them into tables. Only
loopback is targeted; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from jobqueue import Producer, Settings  # noqa: E402
from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb  # noqa: E402
from jobqueue.model import EnqueueRequest  # noqa: E402
from jobqueue.redis_cluster import LocalCluster  # noqa: E402
from jobqueue.redis_server import HOST, RedisServer, free_port  # noqa: E402
from jobqueue.store.keys import Keyspace  # noqa: E402

SERVICE = "/mpataki.jobqueue.v1.JobService"


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A Redis configured like the peers' (no persistence)."""
    server = RedisServer(workdir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        p = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
    try:
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def wait_port(port: int, timeout: float = 30) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def pct(values: list[float], q: float) -> float:
    """Nearest rank, as the shared harness computes it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


# -- S4 ---------------------------------------------------------------------------------------


def grpc_body(message: Any) -> bytes:
    data = message.to_binary()
    return struct.pack(">BI", 0, len(data)) + data


def h2load(url: str, body: bytes, headers: list[str], n: int, workdir: Path) -> dict[str, Any]:
    body_file, log_file = workdir / "body.bin", workdir / "h2load.log"
    body_file.write_bytes(body)
    log_file.unlink(missing_ok=True)
    args = ["h2load", "-n", str(n), "-c", "4", "-m", "16", "-d", str(body_file), "--log-file", str(log_file)]
    for header in headers:
        args += ["-H", header]
    ran = subprocess.run([*args, url], capture_output=True, text=True, timeout=600, check=False)
    out = ran.stdout
    line = next((x for x in out.splitlines() if x.startswith("finished in")), "")
    rate = float(line.split(",")[1].split()[0]) if line else 0.0
    done = next((x for x in out.splitlines() if x.startswith("requests:")), "")
    succeeded = int(done.split(",")[3].split()[0]) if done else 0
    durations = [
        int(x.split("\t")[2]) / 1000 for x in log_file.read_text().splitlines() if x.count("\t") >= 2
    ]
    return {
        "requests": n,
        "succeeded": succeeded,
        "req_per_s": rate,
        "p50_ms": round(pct(durations, 50), 2) if durations else None,
        "p99_ms": round(pct(durations, 99), 2) if durations else None,
    }


def s4(out: Path, smoke: bool) -> dict[str, Any]:
    if shutil.which("h2load") is None:
        return {"skipped": "h2load not installed (apt install nghttp2-client)"}
    n = 2_000 if smoke else 20_000
    repeats = 1 if smoke else 3
    servers = ["hypercorn"] + (["h2corn"] if shutil.which("h2corn") else [])
    enqueue = pb.EnqueueJobRequest(type="bench", payload=b"noop")
    batch = pb.EnqueueJobsRequest(jobs=[enqueue] * 100)
    grpc_h = ["content-type: application/grpc", "te: trailers"]
    json_h = ["content-type: application/json"]
    cases = [
        ("EnqueueJob", "gRPC h2c", grpc_body(enqueue), grpc_h, 1),
        ("EnqueueJob", "Connect JSON h2c", enqueue.to_json().encode(), json_h, 1),
        ("EnqueueJobs x100", "gRPC h2c", grpc_body(batch), grpc_h, 100),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as rs:
        workdir = Path(tmp)
        client = redis.Redis.from_url(rs.url)
        for server in servers:
            port, ceiling_port = free_port(), free_port()
            env = dict(os.environ, JOBQUEUE_REDIS_URL=rs.url)
            real = [sys.executable, "-m", "jobqueue.cli", "server", "--server", server, "--host", "127.0.0.1"]
            trivial = [sys.executable, str(HERE / "trivial_app.py"), str(ceiling_port), server]
            with (
                process([*real, "--port", str(port)], workdir / f"{server}.log", env),
                process(trivial, workdir / f"{server}-trivial.log", env),
            ):
                wait_port(port)
                wait_port(ceiling_port)
                for rpc, protocol, body, headers, per_call in cases:
                    method = rpc.split()[0]
                    requests = n // per_call if per_call > 1 else n
                    runs, ceilings, stored = [], [], []
                    # Server and ceiling alternate, so a noisy moment hits both.
                    for _ in range(repeats):
                        client.flushdb()
                        url = f"http://127.0.0.1:{port}{SERVICE}/{method}"
                        runs.append(h2load(url, body, headers, requests, workdir))
                        stored.append(client.llen(Keyspace().queue("bench").ready))
                        if per_call == 1:
                            url = f"http://127.0.0.1:{ceiling_port}{SERVICE}/{method}"
                            ceilings.append(h2load(url, body, headers, requests, workdir)["req_per_s"])
                    rates = [r["req_per_s"] for r in runs]
                    middle = runs[rates.index(statistics.median_low(rates))]
                    ceiling = statistics.median(ceilings) if ceilings else None
                    expected = requests * per_call
                    wrong = [count for count in stored if count != expected]
                    row = {
                        "server": server,
                        "rpc": rpc,
                        "protocol": protocol,
                        **middle,
                        "req_per_s": round(statistics.median(rates), 1),
                        "min": round(min(rates), 1),
                        "max": round(max(rates), 1),
                        "runs": repeats,
                        "jobs_per_s": round(statistics.median(rates) * per_call),
                        "jobs_stored": wrong[0] if wrong else expected,  # any run that lost or added one
                        "jobs_expected": expected,
                        "ceiling_req_per_s": ceiling,
                        "of_ceiling": round(statistics.median(rates) / ceiling, 2) if ceiling else None,
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return {"rows": rows}


# -- S5 ---------------------------------------------------------------------------------------


def s5(out: Path, smoke: bool) -> dict[str, Any]:
    n = 2_000 if smoke else 20_000
    repeats = 1 if smoke else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as rs:
        client = redis.Redis.from_url(rs.url)
        env = dict(os.environ, BENCH_REDIS_URL=rs.url, PYTHONPATH=str(_peers_dir()))
        for workers in (1, 2, 4):
            rates, cpu = [], []
            for run in range(repeats):
                client.flushdb()
                asyncio.run(_enqueue(rs.url, n))
                cpu_before = _redis_cpu(client)
                rate, _ = _drain_with_processes(env, client, n, workers, Path(tmp) / f"w{workers}-{run}.log")
                rates.append(rate)
                cpu.append((_redis_cpu(client) - cpu_before) / n * 1e6)
            row = {
                "workers": workers,
                "jobs": n,
                "drain_jobs_per_s": round(statistics.median(rates)),
                "min": round(min(rates)),
                "max": round(max(rates)),
                "redis_cpu_us_per_job": round(statistics.median(cpu), 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"rows": rows}


def _drain_with_processes(
    env: dict[str, str], counter: redis.Redis | redis.RedisCluster, n: int, processes: int, log: Path
) -> tuple[float, int]:
    """Drains the n jobs enqueued with one `jobqueue worker --processes N` (a supervisor
    and its N children): the rate from the first job's start (the supervisor's start if
    the first job body did not record it) to the n-th job's end, and the job bodies'
    count once the supervisor has stopped (n, unless a body's INCR was applied twice)."""
    cmd = [sys.executable, "-m", "jobqueue.cli", "worker", str(HERE / "peer_jobqueue.py"),
           "--processes", str(processes)]  # fmt: skip
    started_at = time.time()
    supervisor = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 300
        while int(counter.get("bench:count") or 0) < n and time.monotonic() < deadline:
            if supervisor.poll() is not None:
                break
            time.sleep(0.005)
        done_at = time.time()
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)  # it stops its children gracefully
            supervisor.wait(90)
    count = int(counter.get("bench:count") or 0)
    if count < n:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{count} of {n} jobs ran, the supervisor exited {supervisor.returncode}:\n{tail}")
    if supervisor.returncode != 0:
        # Every job ran: a child stopped while it was still starting (a short drain) is
        # told, not fatal.
        warnings = [line for line in log.read_text().splitlines() if "WARNING" in line or "ERROR" in line]
        print(f"the supervisor exited {supervisor.returncode}: {warnings[-3:]}", file=sys.stderr, flush=True)
    # The first job body sets it when its INCR returns 1 (the shared harness's job body).
    first = float(counter.get("bench:t_first") or started_at)
    return n / (done_at - first), count


# -- S5 on a Redis Cluster ----------------------------------------------------------------------
CLUSTER_PROCESSES = 2
TOP_COMMANDS = 3  # per master, by Redis time


def s5_cluster(out: Path, smoke: bool) -> dict[str, Any]:
    """S5's drain of one type with `--processes 2` on a local Redis Cluster (3 masters
    with a replica each), and the Redis CPU each master spent on it per job (INFO cpu,
    before and after: the whole process, replication to its replica included) with its
    costliest commands (INFO commandstats, reset before the drain)."""
    n = 2_000 if smoke else 20_000
    repeats = 1 if smoke else 3
    rates: list[float] = []
    extra_incrs: list[int] = []
    per_run: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "cluster") as cluster:
        counter = redis.RedisCluster.from_url(cluster.url)
        masters = {f"{HOST}:{node.port}": redis.Redis(host=HOST, port=node.port) for node in cluster.masters}
        # The worker module's Settings come from BENCH_REDIS_URL (the supervisor checks
        # that deployment); the JOBQUEUE_* variables, for anything else the CLI starts.
        env = dict(
            os.environ,
            BENCH_REDIS_URL=cluster.url,
            JOBQUEUE_REDIS_URL=cluster.url,
            JOBQUEUE_REDIS_CLUSTER="1",
            PYTHONPATH=str(_peers_dir()),
        )
        for run in range(repeats):
            for master in masters.values():
                master.flushdb()
            asyncio.run(_enqueue(cluster.url, n, cluster=True))
            cpu_before = {name: _redis_cpu(master) for name, master in masters.items()}
            for master in masters.values():
                master.config_resetstat()
            log = Path(tmp) / f"cluster-{run}.log"
            rate, count = _drain_with_processes(env, counter, n, CLUSTER_PROCESSES, log)
            rates.append(rate)
            extra_incrs.append(count - n)
            per_run.append({
                name: {
                    "cpu_us_per_job": (_redis_cpu(master) - cpu_before[name]) / n * 1e6,
                    "top_commands": _top_commands(master, n),
                }
                for name, master in masters.items()
            })  # fmt: skip
    rows = []
    for name in per_run[0]:
        cpu = [run[name]["cpu_us_per_job"] for run in per_run]
        rows.append({
            "master": name,
            "redis_cpu_us_per_job": round(statistics.median(cpu), 1),
            "min": round(min(cpu), 1),
            "max": round(max(cpu), 1),
            "top_commands": per_run[-1][name]["top_commands"],
        })  # fmt: skip
    total = sum(row["redis_cpu_us_per_job"] for row in rows) or 1.0
    for row in rows:
        row["share"] = round(row["redis_cpu_us_per_job"] / total, 3)
    result = {
        "processes": CLUSTER_PROCESSES,
        "jobs": n,
        "runs": repeats,
        "drain_jobs_per_s": round(statistics.median(rates)),
        "min": round(min(rates)),
        "max": round(max(rates)),
        "redis_cpu_us_per_job": round(total, 1),
        # Job-body INCRs beyond one per job, per run (docs/performance.md, "S5 on a
        # Redis Cluster").
        "extra_job_body_incrs": extra_incrs,
        "masters": rows,
    }
    print(json.dumps(result), flush=True)
    return result


def _top_commands(client: redis.Redis, n: int) -> list[dict[str, Any]]:
    """The master's costliest commands since its stats were reset: calls and µs per job."""
    stats = client.info("commandstats")
    top = sorted(stats.items(), key=lambda item: -float(item[1]["usec"]))[:TOP_COMMANDS]
    return [
        {
            "command": name.removeprefix("cmdstat_"),
            "calls_per_job": round(float(entry["calls"]) / n, 2),
            "us_per_job": round(float(entry["usec"]) / n, 1),
        }
        for name, entry in top
    ]


def _peers_dir() -> Path:
    return Path(os.environ.get("BENCH_PEERS_DIR", ROOT.parent / "shared" / "bench-peers"))


async def _enqueue(
    url: str, n: int, job_type: str = "bench", payload: bytes = b"noop", cluster: bool = False
) -> None:
    async with Producer.connect(Settings(redis_url=url, redis_cluster=cluster)) as producer:
        for start in range(0, n, 50_000):
            await producer.enqueue_many([EnqueueRequest(job_type, payload)] * min(50_000, n - start))


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


# -- S6 ---------------------------------------------------------------------------------------


def s6(out: Path, smoke: bool) -> dict[str, Any]:
    marks = (2_000, 10_000) if smoke else (100_000, 1_000_000)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as rs:
        client = redis.Redis.from_url(rs.url)
        # Redis bytes per job: pending (in the ready list), and finished (kept for the retention, 24 h).
        sample = marks[0]
        base = client.info("memory")["used_memory"]
        asyncio.run(_enqueue(rs.url, sample))
        pending = client.info("memory")["used_memory"]
        result["redis_bytes_per_pending_job"] = round((pending - base) / sample)
        env = dict(
            os.environ, BENCH_REDIS_URL=rs.url, PYTHONPATH=str(_peers_dir()), BENCH_JQ_CONCURRENCY="50"
        )
        cmd = [sys.executable, "-m", "jobqueue.cli", "worker", str(HERE / "peer_jobqueue.py")]
        cmd += ["--processes", "1"]  # one process, as before the option
        with process(cmd, Path(tmp) / "worker.log", env) as worker:
            _wait_count(client, sample)
            rss = {f"{sample:,}": _rss_mb(worker.pid)}
            done = sample
            for mark in marks[1:]:
                asyncio.run(_enqueue(rs.url, mark - done))
                _wait_count(client, mark)
                done = mark
                rss[f"{mark:,}"] = _rss_mb(worker.pid)
            result["worker_rss_mb_after_jobs"] = rss
        # Measured with the worker gone, so that its connections' buffers do not count.
        finished = client.info("memory")["used_memory"] - base
        result["redis_bytes_per_finished_job"] = round(finished / done)
    print(json.dumps(result), flush=True)
    return result


def _wait_count(client: redis.Redis, n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while int(client.get("bench:count") or 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.get('bench:count')} of {n} jobs ran")
        time.sleep(0.1)
    time.sleep(0.5)  # let the completions of the last batch land


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("s4", "s5", "s5-cluster", "s6"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the scenario still works")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"s4": s4, "s5": s5, "s5-cluster": s5_cluster, "s6": s6}[args.scenario](args.out, args.smoke)
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    result["smoke"] = args.smoke
    (args.out / f"{args.scenario}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
