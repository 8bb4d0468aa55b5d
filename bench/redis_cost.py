#!/usr/bin/env python3
"""What the hot path's scripts cost Redis, counted in instructions: a figure that the
machine's speed and load do not move.

    python bench/redis_cost.py [--jobs 1000,5000] [--batch 5] [--result-bytes N] [--progress]
                               [--priorities 1,5,9] [--reports N]

For each size N it starts a private redis-server under valgrind (cachegrind, no
cache simulation), enqueues N jobs and drives them through the scripts as a busy
worker does, with a fixed batch (each round records the batch the last one claimed,
claims the ids the one before took, and takes the next `batch`), then prints the
instructions Redis executed. Two sizes give the instructions per job, start-up
excluded: (I(5000) - I(1000)) / 4000. With --result-bytes each run returns a
result of that size (stored by round.lua); with --progress each run's completion
carries a last progress report, as a worker's does for a run that reported one (round.lua
writes it in the completion's HSET). With --priorities the jobs get those priorities in
turn (none: all of the default). With --reports each run first writes N progress
reports (progress.lua, one call each: its HSET, and its entry in the events stream
that watches read), as a run longer than `progress_interval_s` does. A real drain's
batches follow its timing, so its per-job figure moves with the load; these do not.
To compare two versions, run it from each checkout (`cd OTHER && PYTHONPATH=$PWD
python bench/redis_cost.py`). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.model import Job, JobOptions
from jobqueue.redis_server import find_server_binary, free_port

JOB_TYPE = "bench"


async def drive(
    url: str,
    jobs: int,
    batch: int,
    result: bytes = b"",
    *,
    progress: bool = False,
    priorities: Sequence[int] = (),
    reports: int = 0,
) -> int:
    """Enqueues `jobs` jobs (of `priorities` in turn) and completes them in rounds of
    `batch`, each with `result`; returns how many completed."""
    # Generous timeouts: Redis runs under valgrind, tens of times slower.
    async with Producer.connect(Settings(redis_url=url, redis_timeout_s=300)) as producer:
        await producer.enqueue_many(requests(JOB_TYPE, jobs, priorities))
        transitions = producer.store.transitions
        taken: list[str] = []
        running: list[Job] = []
        completed = 0
        while True:
            _, claims, taken_now = await transitions.round(
                JOB_TYPE, "w1", running, claim=taken, take=batch, lease_ms=600_000, default_max_attempts=3
            )
            completed += len(running)
            running = [claim for claim in claims if isinstance(claim, Job)]
            for job in running:
                for i in range(reports):
                    await transitions.progress(job, (i + 1) / (reports + 1), f"step {i + 1}")
                job.result = result
                if progress:  # as worker/progress.py's hand_over puts it
                    job.progress, job.progress_message, job.progress_at = 0.5, "working", 1
            taken = taken_now
            if not running and not taken:
                return completed


def requests(job_type: str, jobs: int, priorities: Sequence[int]) -> list[EnqueueRequest]:
    """`jobs` no-op jobs, of `priorities` in turn (none: the default)."""
    if not priorities:
        return [EnqueueRequest(job_type, b"noop")] * jobs
    options = [JobOptions(priority=p) for p in priorities]
    return [EnqueueRequest(job_type, b"noop", None, options[i % len(options)]) for i in range(jobs)]


def count(
    jobs: int,
    batch: int,
    result: bytes = b"",
    progress: bool = False,
    priorities: Sequence[int] = (),
    *,
    reports: int = 0,
) -> int:
    """Redis' instructions for enqueueing and completing `jobs` jobs."""
    binary = find_server_binary()
    if binary is None:
        sys.exit("no redis-server on PATH")
    workdir = Path(tempfile.mkdtemp())
    out = workdir / "cachegrind.out"
    port = free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
         binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        completed = asyncio.run(
            drive(
                f"redis://127.0.0.1:{port}/0",
                jobs,
                batch,
                result,
                progress=progress,
                priorities=priorities,
                reports=reports,
            )
        )
        assert completed == jobs, (completed, jobs)
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the shutdown closes the connection
    finally:
        client.close()
        server.wait(120)
    summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
    shutil.rmtree(workdir)
    return int(summary.split()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1000,5000", help="two sizes, comma-separated")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument(
        "--result-bytes", type=int, default=0, help="each run's result, in bytes (default 0: none)"
    )
    parser.add_argument("--progress", action="store_true", help="each completion carries a progress report")
    parser.add_argument("--priorities", default="", help="the jobs' priorities in turn, e.g. 1,5,9")
    parser.add_argument(
        "--reports",
        type=int,
        default=0,
        help="progress reports each run writes (progress.lua) before it ends",
    )
    args = parser.parse_args()
    small, large = (int(n) for n in args.jobs.split(","))
    result = b"r" * args.result_bytes
    priorities = [int(p) for p in args.priorities.split(",") if p]
    counted = {
        n: count(n, args.batch, result, args.progress, priorities, reports=args.reports)
        for n in (small, large)
    }
    for n, instructions in counted.items():
        print(f"{n} jobs: {instructions:,} instructions")
    print(f"Redis instructions per job: {(counted[large] - counted[small]) / (large - small):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
