#!/usr/bin/env python3
"""GetQueueStats' latency through the server, with many types and one huge one.

    python bench/queue_stats.py [--redis-url URL] [--big-jobs 1000000] [--types 20]
                                [--calls 2000] [--runs 5] [--server hypercorn|h2corn]
                                [--json OUT]

Stores `--big-jobs` PENDING jobs of one type and 100 of each of the other types
(`--types` in all), starts a `jobqueue server` on loopback, then times `--calls`
sequential GetQueueStats calls of the SyncClient (Connect, binary protobuf,
HTTP/1.1 keep-alive), one type (the huge one) and every type, in each of
`--runs` runs; prints each run's p50 and p99 and their medians (docs/performance.md).
Also times GetJob on the same server and client (the floor: one HGETALL) and the
ratio of the two, run by run; the store's read alone (StatsReader: one round trip
to Redis); and Redis' own time per call of queue_stats.lua (INFO commandstats).
Without --redis-url, a redis-server of its own in a temporary directory. Loopback
only; every wait bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.client import SyncClient
from jobqueue.redis_server import RedisServer, free_port, is_loopback_url

PREFIX = "bench-stats"
BIG = "big"
SMALL_JOBS = 100
CHUNK = 10_000


async def fill(url: str, big_jobs: int, types: int) -> None:
    settings = Settings(redis_url=url, prefix=PREFIX)
    async with Producer.connect(settings) as producer:
        for i in range(types - 1):
            await producer.enqueue_many([EnqueueRequest(f"small-{i:02d}", b"x")] * SMALL_JOBS)
        for start in range(0, big_jobs, CHUNK):
            await producer.enqueue_many([EnqueueRequest(BIG, b"x")] * min(CHUNK, big_jobs - start))
        report = await producer.store.stats.read()
        assert report.total.pending == big_jobs + (types - 1) * SMALL_JOBS, report.total


@contextmanager
def server(url: str, kind: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "JOBQUEUE_REDIS_URL": url,
        "JOBQUEUE_PREFIX": PREFIX,
        "JOBQUEUE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.cli", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def timed_ms(call: Callable[[], object], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def _quantile(times: list[float], q: int) -> float:
    return statistics.median(times) if q == 50 else statistics.quantiles(times, n=100)[q - 1]


def summary(runs: list[list[float]]) -> dict[str, object]:
    p50 = [_quantile(run, 50) for run in runs]
    p99 = [_quantile(run, 99) for run in runs]
    return {
        "p50_ms_runs": [round(v, 3) for v in p50],
        "p99_ms_runs": [round(v, 3) for v in p99],
        "p50_ms_median": round(statistics.median(p50), 3),
        "p99_ms_median": round(statistics.median(p99), 3),
        "p99_ms_worst": round(max(p99), 3),
    }


async def store_read_ms(url: str, job_type: str, calls: int) -> list[float]:
    async with Producer.connect(Settings(redis_url=url, prefix=PREFIX)) as producer:
        stats = producer.store.stats
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            await stats.read(job_type)
            times.append((time.perf_counter() - began) * 1000)
        return times


async def redis_us_per_call(url: str, calls: int) -> float:
    """Redis' own time per queue_stats.lua call on the huge type (INFO commandstats):
    what each read costs the one thread every client of Redis shares."""
    async with Producer.connect(Settings(redis_url=url, prefix=PREFIX)) as producer:
        await producer.store.stats.read(BIG)
        await producer.store.redis.config_resetstat()
        for _ in range(calls):
            await producer.store.stats.read(BIG)
        info = await producer.store.redis.info("commandstats")
        return float(info["cmdstat_evalsha"]["usec_per_call"])


def measure(url: str, args: argparse.Namespace) -> dict[str, object]:
    began = time.monotonic()
    asyncio.run(fill(url, args.big_jobs, args.types))
    result: dict[str, object] = {
        "big_jobs": args.big_jobs, "types": args.types, "calls": args.calls, "runs": args.runs,
        "server": args.server, "fill_s": round(time.monotonic() - began, 1),
    }  # fmt: skip
    with server(url, args.server) as api, SyncClient(api) as client:
        job_id = client.enqueue("floor", "x").id
        timed_ms(lambda: client.stats(BIG), 100)  # warm: connections, script cache
        one, every, floor = [], [], []
        for _ in range(args.runs):
            one.append(timed_ms(lambda: client.stats(BIG), args.calls))
            every.append(timed_ms(lambda: client.stats(""), args.calls))
            # The floor: GetJob, one HGETALL behind the same server and client.
            floor.append(timed_ms(lambda: client.get(job_id), args.calls))
        result["server_one_type"] = summary(one)
        result["server_every_type"] = summary(every)
        result["server_get_job"] = summary(floor)
        # What GetQueueStats costs beyond the floor, run by run: steadier than the
        # times themselves on a shared machine.
        for q in (50, 99):
            ratios = [_quantile(a, q) / _quantile(b, q) for a, b in zip(one, floor, strict=True)]
            result[f"one_type_over_get_job_p{q}_median"] = round(statistics.median(ratios), 3)
    store = [asyncio.run(store_read_ms(url, BIG, args.calls)) for _ in range(args.runs)]
    result["store_one_type"] = summary(store)
    result["redis_us_per_script_call"] = asyncio.run(redis_us_per_call(url, args.calls))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a loopback Redis to fill (keys under the bench's own prefix)")
    parser.add_argument("--server", choices=("hypercorn", "h2corn"), default="hypercorn")
    parser.add_argument("--big-jobs", type=int, default=1_000_000)
    parser.add_argument("--types", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.redis_url:
        if not is_loopback_url(args.redis_url):
            raise SystemExit("--redis-url must be a loopback Redis")
        result = measure(args.redis_url, args)
    else:
        with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as redis_server:
            result = measure(redis_server.url, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
