#!/usr/bin/env python3
"""One S1 drain, for profiling and A/B comparisons of the worker's hot path.

    python bench/drain_once.py REDIS_URL [--jobs N] [--py-spy OUT | --instructions]
                               [--one-way-delay-us US] [--metrics] [--sync [thread|process]]
                               [--priorities 1,5,9]
                               [--progress [CALLS]]
                               [--cluster]

Enqueues N no-op jobs (the shared harness's job body, as in S1), starts one
`jobqueue worker bench/peer_jobqueue.py` process and prints its drain rate.
With --py-spy the worker runs under `py-spy record` (raw collapsed stacks in OUT).
With --instructions it runs under valgrind (cachegrind, no cache simulation) and
the instructions it executed are printed: a count that the machine's speed does
not move. Two drains of different sizes give the instructions per job, start-up
excluded: (I(5000) - I(1000)) / 4000.
With --one-way-delay-us, the worker and the enqueue reach Redis through
bench/net_delay.py: a round trip costs what it would over a network.
With --metrics the worker serves its Prometheus metrics (`--metrics-port`), scraped
once at the end (bench/metrics_drain.py alternates drains with and without).
With --sync the worker's handler is a plain function (run in its thread pool, or with
`--sync process` its process pool) doing the same no-op with a sync Redis client.
With --priorities the jobs get those priorities in turn (none: all of the default).
With --progress the handler calls `job.set_progress` CALLS times (default 100) in a
loop before its no-op (bench/metrics_drain.py --option progress alternates drains
with and without).
With --cluster, REDIS_URL names a node of a Redis Cluster (`python -m
jobqueue.redis_cluster` starts a local one) and every client is a cluster client.
To compare two versions, alternate runs of two checkouts on one Redis, e.g.
`cd OTHER && PYTHONPATH=$PWD python bench/drain_once.py URL`, several times each:
this machine is noisy, so compare medians. Loopback Redis only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import redis
from prometheus_client.parser import text_string_to_metric_families
from redis_cost import requests  # bench/, this script's folder

from jobqueue import Producer, Settings
from jobqueue.redis_server import free_port, is_loopback_url

HERE = Path(__file__).resolve().parent
COUNT_KEY = "bench:count"  # the harness's no-op job INCRs it


async def enqueue(url: str, n: int, cluster: bool, priorities: list[int]) -> None:
    async with Producer.connect(Settings(redis_url=url, redis_cluster=cluster)) as producer:
        await producer.store.redis.flushdb()
        await producer.enqueue_many(requests("bench", n, priorities))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc; None elsewhere). Per job, it
    is a steadier figure than the rate on a shared machine: A/B comparisons need fewer runs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_url")
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--py-spy", metavar="OUT", help="record the worker with py-spy into OUT")
    parser.add_argument("--instructions", action="store_true", help="count the worker's instructions")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--one-way-delay-us", type=float, help="through bench/net_delay.py")
    parser.add_argument("--metrics", action="store_true", help="the worker serves its metrics (a free port)")
    parser.add_argument("--sync", nargs="?", const="thread", choices=("thread", "process"))
    parser.add_argument("--priorities", default="", help="the jobs' priorities in turn, e.g. 1,5,9")
    parser.add_argument("--progress", nargs="?", const=100, type=int, metavar="CALLS")
    parser.add_argument("--cluster", action="store_true", help="REDIS_URL names a node of a Redis Cluster")
    args = parser.parse_args()
    if not is_loopback_url(args.redis_url):
        parser.error("only a loopback Redis may be targeted")
    if args.one_way_delay_us is None:
        return drain(args)
    url = urlsplit(args.redis_url)
    if url.scheme != "redis" or url.port is None:
        parser.error("--one-way-delay-us needs a redis://127.0.0.1:PORT URL")
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, str(HERE / "net_delay.py"), "--listen", str(port), "--to", str(url.port),
         "--one-way-us", str(args.one_way_delay_us), "--seconds", str(args.timeout + 120)],
    )  # fmt: skip
    try:
        wait_for_port(port, 10)
        args.redis_url = url._replace(netloc=f"{url.hostname}:{port}").geturl()
        return drain(args)
    finally:
        proxy.kill()
        proxy.wait()


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def started_by_metrics(port: int | None) -> str:
    """What the worker's metrics counted: proof that they were on."""
    if port is None:
        return ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    started = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jobqueue_jobs_started_total"
    )
    return f", metrics on ({started:.0f} started)"


def drain(args: argparse.Namespace) -> int:
    priorities = [int(p) for p in args.priorities.split(",") if p]
    asyncio.run(enqueue(args.redis_url, args.jobs, args.cluster, priorities))
    command = [sys.executable, "-m", "jobqueue.cli", "worker", str(HERE / "peer_jobqueue.py")]
    command += ["--processes", "1"]  # one process, as before the option
    metrics_port = free_port() if args.metrics else None
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port)]
    if args.py_spy:
        command = ["py-spy", "record", "-r", "200", "-f", "raw", "-o", args.py_spy, "--", *command]
    counted = Path(tempfile.mkdtemp()) / "cachegrind.out" if args.instructions else None
    if counted is not None:
        valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={counted}"]
        command = [*valgrind, *command]
    env = dict(os.environ, BENCH_REDIS_URL=args.redis_url, JOBQUEUE_REDIS_CLUSTER=str(int(args.cluster)))
    if args.sync:
        env["BENCH_JQ_SYNC"] = args.sync
    if args.progress:
        env["BENCH_JQ_PROGRESS"] = str(args.progress)
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counter = (redis.RedisCluster if args.cluster else redis.Redis).from_url(args.redis_url)
    try:
        started = first = cpu_at_first = None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            done = int(counter.get(COUNT_KEY) or 0)  # type: ignore[arg-type]
            if done and started is None:
                started, first, cpu_at_first = time.monotonic(), done, cpu_seconds(worker.pid)
            if done >= args.jobs:
                break
            time.sleep(0.005)
        else:
            print(f"timed out after {args.timeout:g} s", file=sys.stderr)
            return 1
        assert started is not None and first is not None
        rate = (args.jobs - first) / (time.monotonic() - started)
        cpu = cpu_seconds(worker.pid)
        per_job = ""
        if cpu is not None and cpu_at_first is not None:
            per_job = f", worker CPU {(cpu - cpu_at_first) / (args.jobs - first) * 1e6:.0f} µs/job"
        print(f"drain {rate:.0f} jobs/s{per_job}{started_by_metrics(metrics_port)}")
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(600 if args.instructions else 30)  # valgrind runs it ~40x slower
        except subprocess.TimeoutExpired:
            worker.kill()
        counter.close()
    if counted is not None:
        summary = next(line for line in counted.read_text().splitlines() if line.startswith("summary:"))
        print(f"worker instructions {int(summary.split()[1])}")
        shutil.rmtree(counted.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
