#!/usr/bin/env python3
"""What `jobqueue rebuild` costs: its pace, and how long each of its script calls holds Redis.

    python bench/rebuild_cost.py [--jobs 200000] [--count 500] [--runs 3]

Stores `--jobs` PENDING jobs of one type (and as many of another type of the same
partition, which the pass over the job keys reads too), deletes the type's `stats`
and indexes, then runs the rebuild (store/rebuild.py, as the command does) `--runs`
times, the damage redone before each: the jobs rebuilt per second, and Redis' own
time per call of rebuild_jobs.lua (INFO commandstats: the mean) and the longest
call (SLOWLOG, every command logged): how long one step makes other clients wait.
A redis-server of its own in a temporary directory; loopback only; bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.model import partition_of_type
from jobqueue.redis_server import RedisServer
from jobqueue.store.rebuild import INDEXES, Rebuilder

PREFIX = "bench-rebuild"
TYPE = "rebuilt"
CHUNK = 10_000


def neighbour() -> str:
    """Another type of TYPE's partition: its jobs share the keys SCAN reads."""
    wanted = partition_of_type(TYPE)
    return next(f"n{i}" for i in range(10**6) if partition_of_type(f"n{i}") == wanted)


async def fill(producer: Producer, job_type: str, jobs: int) -> None:
    for start in range(0, jobs, CHUNK):
        await producer.enqueue_many([EnqueueRequest(job_type, b"x")] * min(CHUNK, jobs - start))


async def measure(url: str, jobs: int, count: int, runs: int) -> dict[str, Any]:
    settings = Settings(redis_url=url, prefix=PREFIX)
    async with Producer.connect(settings) as producer:
        await fill(producer, TYPE, jobs)
        await fill(producer, neighbour(), jobs)
        redis, keys = producer.store.redis, producer.store.keys
        queue = keys.queue(TYPE)
        rebuilder = Rebuilder(redis, keys)
        paces, means, longest = [], [], []
        for _ in range(runs):
            await redis.delete(queue.stats, *(getattr(queue, index) for index in INDEXES))
            await redis.config_set("slowlog-log-slower-than", 0)
            await redis.config_set("slowlog-max-len", 100_000)
            await redis.slowlog_reset()
            await redis.config_resetstat()
            started = time.perf_counter()
            report = await rebuilder.rebuild(TYPE, count=count)
            elapsed = time.perf_counter() - started
            assert report.counted == (jobs, 0) and report.added["live"] == jobs, report
            stats = (await redis.info("commandstats"))["cmdstat_evalsha"]
            slowlog = await redis.slowlog_get(100_000)
            paces.append(jobs / elapsed)
            means.append(float(stats["usec_per_call"]))
            longest.append(max(e["duration"] for e in slowlog if e["command"].startswith(b"EVALSHA")))
            await redis.config_set("slowlog-log-slower-than", 10_000)
    return {
        "jobs": jobs,
        "jobs_in_partition": 2 * jobs,
        "count": count,
        "runs": runs,
        "jobs_per_s": [round(p) for p in paces],
        "jobs_per_s_median": round(statistics.median(paces)),
        "script_call_mean_us": [round(m) for m in means],
        "script_call_longest_us": longest,
        "script_call_longest_us_median": statistics.median(longest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        result = asyncio.run(measure(server.url, args.jobs, args.count, args.runs))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
