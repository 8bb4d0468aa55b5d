#!/usr/bin/env python3
"""The Python calls a worker makes per job, by function, for any checkout: what changed
in the worker's per-job path between two trees, counted rather than timed.

    python bench/worker_calls.py REDIS_URL TREE [TREE ...] [--jobs N] [--top K]

For each TREE it enqueues N no-op jobs with that tree's own Producer, runs that tree's
`jobqueue worker bench/peer_jobqueue.py` under cProfile until the harness's counter
says every job ran, stops it (SIGINT) and prints the calls per job of its busiest
functions; with two trees or more, the functions whose calls per job differ most from
the first tree's. cProfile slows the worker several times, so only the counts mean
something (a coroutine counts once per resumption; the event loop's own calls move a
little with the batches). Loopback Redis only; bounded in time.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from jobqueue.redis_server import is_loopback_url

COUNT_KEY = "bench:count"  # the harness's no-op job INCRs it
ENQUEUE = """
import asyncio, sys
from jobqueue import EnqueueRequest, Producer, Settings
async def main():
    async with Producer.connect(Settings(redis_url=sys.argv[1])) as producer:
        await producer.store.redis.flushdb()
        await producer.enqueue_many([EnqueueRequest("bench", b"noop")] * int(sys.argv[2]))
asyncio.run(main())
"""


def profile(tree: str, url: str, jobs: int, python: str, timeout_s: float) -> dict[str, float]:
    """Calls per job by function of the tree's worker draining `jobs` jobs."""
    env = dict(os.environ, PYTHONPATH=tree, BENCH_REDIS_URL=url)
    subprocess.run([python, "-c", ENQUEUE, url, str(jobs)], cwd=tree, env=env, check=True, timeout=timeout_s)
    out = Path(tempfile.mkdtemp()) / "worker.prof"
    command = [
        python,
        "-m",
        "cProfile",
        "-o",
        str(out),
        "-m",
        "jobqueue.cli",
        "worker",
        "bench/peer_jobqueue.py",
    ]
    if "--processes" in (Path(tree) / "jobqueue/cli/parser.py").read_text():
        command += ["--processes", "1"]  # one process, as before the option
    worker = subprocess.Popen(
        command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout_s
        while int(client.get(COUNT_KEY) or 0) < jobs:
            if time.monotonic() > deadline:
                raise SystemExit(f"{tree}: timed out after {timeout_s:g} s")
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(60)
        client.close()
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    return {
        f"{Path(file).name}:{function}": calls / jobs
        for (file, _, function), (_, calls, _, _, _) in stats.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_url")
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    if not is_loopback_url(args.redis_url):
        parser.error("only a loopback Redis may be targeted")
    python = os.environ.get("BENCH_PYTHON", sys.executable)
    counted = {tree: profile(tree, args.redis_url, args.jobs, python, args.timeout) for tree in args.trees}
    first, *others = args.trees
    for tree, calls in counted.items():
        print(f"{tree}: {sum(calls.values()):.1f} Python calls per job")
        if tree == first:
            for name, per_job in sorted(calls.items(), key=lambda item: -item[1])[: args.top]:
                print(f"  {per_job:8.2f}  {name}")
    for tree in others:
        base, calls = counted[first], counted[tree]
        changed = sorted(
            set(base) | set(calls), key=lambda name: -abs(calls.get(name, 0) - base.get(name, 0))
        )
        print(f"{tree} against {first} (calls per job):")
        for name in changed[: args.top]:
            before, after = base.get(name, 0.0), calls.get(name, 0.0)
            print(f"  {before:8.2f} {after:8.2f} {after - before:+8.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
