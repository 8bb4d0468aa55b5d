#!/usr/bin/env python3
"""ListJobs latency over a million stored jobs, through the real server.

    python bench/list_jobs.py [--jobs 1000000] [--completed 200000] [--pages 1000] [--runs 3]

Starts a Redis of its own (a temporary directory, a free loopback port) and a
`jobqueue server` on it, loads `--jobs` jobs of one type with
`Producer.enqueue_many` (script calls of 1,000 jobs: each call's jobs share one
created_at, the ties ListJobs' cursor has to resolve), then completes the oldest
`--completed` of them through the real transitions (round.lua: take, claim,
record, as a busy worker's rounds do, in this process). Then, `--runs` times,
it walks `--pages` pages of 100 with `SyncClient.list_jobs` (Connect, binary
protobuf over HTTP/1.1, one call at a time) in each selection and prints the
p50 and p99 of the calls' latencies, and the median of each over the runs.
Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.client import SyncClient
from jobqueue.model import Job, JobStatus
from jobqueue.redis_server import RedisServer
from jobqueue.selection import JobFilter, ListOrder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.conftest import jobqueue_server  # noqa: E402  (the suite's server subprocess helper)

JOB_TYPE = "bench-list"
OTHER_TYPE = "bench-list-other"
LOAD_BATCH = 10_000
ROUND = 1000


async def load(url: str, jobs: int, completed: int) -> dict[str, float]:
    """Stores the jobs, then completes the oldest `completed`: seconds each step took."""
    async with Producer.connect(Settings(redis_url=url)) as producer:
        started = time.perf_counter()
        for _ in range(jobs // LOAD_BATCH):
            await producer.enqueue_many([EnqueueRequest(JOB_TYPE, b"{}")] * LOAD_BATCH)
        # A second type, so that the every-type selection merges two indexes.
        await producer.enqueue_many([EnqueueRequest(OTHER_TYPE, b"{}")] * ROUND)
        loaded = time.perf_counter()
        transitions = producer.store.transitions
        _, _, taken = await transitions.round(JOB_TYPE, "bench", take=ROUND)
        done = 0
        while taken and done < completed:
            _, claims, _ = await transitions.round(JOB_TYPE, "bench", claim=taken, lease_ms=600_000)
            running = [c for c in claims if isinstance(c, Job)]
            more = ROUND if done + len(running) < completed else 0
            records, _, taken = await transitions.round(JOB_TYPE, "bench", running, take=more)
            done += len(records)
        return {"enqueue_s": loaded - started, "complete_s": time.perf_counter() - loaded, "completed": done}


def walk(client: SyncClient, job_filter: JobFilter, order: ListOrder, pages: int) -> list[float]:
    """The latencies (ms) of `pages` successive ListJobs calls of 100 jobs."""
    latencies = []
    token = ""
    for _ in range(pages):
        started = time.perf_counter()
        page = client.list_jobs(job_filter, order, 100, token)
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(page.jobs) == 100, len(page.jobs)
        token = page.next_page_token
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SELECTIONS = {
    "pending, newest first": (JobFilter(type=JOB_TYPE), ListOrder.NEWEST_FIRST),
    "pending, oldest first": (JobFilter(type=JOB_TYPE), ListOrder.OLDEST_FIRST),
    "completed, newest first": (JobFilter(type=JOB_TYPE, status=JobStatus.COMPLETED), ListOrder.NEWEST_FIRST),
    "every type, pending, newest first": (JobFilter(), ListOrder.NEWEST_FIRST),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--completed", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(tmp) as redis_server:
        loading = asyncio.run(load(redis_server.url, args.jobs, args.completed))
        print(json.dumps({"jobs": args.jobs, **loading}), flush=True)
        with jobqueue_server(redis_server.url, Path(tmp) / "server.log") as url, SyncClient(url) as client:
            walk(client, *SELECTIONS["pending, newest first"], 20)  # warm the connections
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in SELECTIONS}
            for run in range(args.runs):
                for name, (job_filter, order) in SELECTIONS.items():
                    latencies = walk(client, job_filter, order, args.pages)
                    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                    results[name].append((p50, p99))
                    print(f"run {run + 1} {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
            for name, runs in results.items():
                p50 = statistics.median(r[0] for r in runs)
                p99 = statistics.median(r[1] for r in runs)
                print(f"median of {args.runs} runs, {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
