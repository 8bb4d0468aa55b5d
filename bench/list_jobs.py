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
On a shared machine those wait for CPU time; two steadier figures go with
them: Redis' own time per call (its command stats: the scripts a page runs,
and SMEMBERS for every type) and the server process' CPU time per call
(/proc). GetJob, called as often at the same time, gives the scale: what the
machine makes of the cheapest call. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.client import SyncClient
from jobqueue.model import Job, JobStatus
from jobqueue.redis_server import RedisServer
from jobqueue.selection import JobFilter, ListOrder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.drain_once import cpu_seconds  # noqa: E402
from tests.conftest import jobqueue_server_process  # noqa: E402  (the suite's server subprocess)

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


@dataclasses.dataclass
class Walk:
    latencies_ms: list[float]
    redis_us: float  # Redis' time in commands per call
    server_cpu_ms: float  # the server process' CPU time per call


def walk(redis: Redis, server_pid: int, call: Callable[[str], str], *, calls: int) -> Walk:
    """`calls` successive calls, each given the token the previous one returned."""
    redis.config_resetstat()
    cpu = cpu_seconds(server_pid) or 0.0
    latencies = []
    token = ""
    for _ in range(calls):
        started = time.perf_counter()
        token = call(token)
        latencies.append((time.perf_counter() - started) * 1000)
    stats = redis.info("commandstats")
    # The scripts' time includes their commands'; the others run outside them.
    redis_us = sum(
        stats.get(k, {}).get("usec", 0) for k in ("cmdstat_evalsha", "cmdstat_smembers", "cmdstat_hgetall")
    )
    return Walk(latencies, redis_us / calls, ((cpu_seconds(server_pid) or 0.0) - cpu) * 1000 / calls)


def list_pages(client: SyncClient, selection: tuple[JobFilter, ListOrder]) -> Callable[[str], str]:
    """ListJobs of a page of 100 after the token: the next token."""

    def call(token: str) -> str:
        page = client.list_jobs(*selection, 100, token)
        assert len(page.jobs) == 100, len(page.jobs)
        return page.next_page_token

    return call


def summary(walks: list[Walk]) -> str:
    """The medians over the walks of each walk's p50, p99, Redis time and server CPU."""
    p50 = statistics.median(percentile(w.latencies_ms, 0.5) for w in walks)
    p99 = statistics.median(percentile(w.latencies_ms, 0.99) for w in walks)
    redis_us = statistics.median(w.redis_us for w in walks)
    cpu_ms = statistics.median(w.server_cpu_ms for w in walks)
    return (
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, Redis {redis_us:.0f} µs/call, server CPU {cpu_ms:.2f} ms/call"
    )


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
        log = Path(tmp) / "server.log"
        with (
            jobqueue_server_process(redis_server.url, log) as (url, server),
            SyncClient(url) as client,
            Redis.from_url(redis_server.url) as redis,
        ):
            some_job = client.list_jobs(JobFilter(type=JOB_TYPE), page_size=1).jobs[0].id
            calls: dict[str, Callable[[str], str]] = {
                # For scale: the cheapest call there is, one job by id, on the same machine at the same time.
                "GetJob (for scale)": lambda _: client.get(some_job).id,
                **{name: list_pages(client, selection) for name, selection in SELECTIONS.items()},
            }
            walk(redis, server.pid, calls["pending, newest first"], calls=20)  # warm up
            results: dict[str, list[Walk]] = {name: [] for name in calls}
            for run in range(args.runs):
                for name, call in calls.items():
                    done = walk(redis, server.pid, call, calls=args.pages)
                    results[name].append(done)
                    print(f"run {run + 1} {name}: {summary([done])}", flush=True)
            for name, walks in results.items():
                print(f"median of {args.runs} runs, {name}: {summary(walks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
