#!/usr/bin/env python3
"""ListJobs' CPU per call in each process of a call, two trees in alternating blocks.

    python bench/list_cpu.py TREE_A TREE_B [--jobs 20000] [--completed 5000]
        [--pairs 20] [--calls 100] [--call "pending, newest first"]

Starts a Redis of its own, loads the jobs as bench/list_jobs.py does (a page's
cost does not grow with the jobs stored), and one `jobqueue server` per tree on
it (Hypercorn, this interpreter, the tree first on PYTHONPATH). Then `--pairs`
pairs of blocks, A then B, B then A, ...: each block walks `--calls` pages of
the selection (or GetJob) with this tree's SyncClient, one call at a time, and
records per call the client's CPU (this process, its HTTP threads included),
the server process' CPU and Redis' (their threads' schedstat), user and system time both:
a write to a loopback socket costs its writer the receiver's side of TCP too.
Prints per tree the medians over the blocks, and the median of the pairs'
B/A ratios with how many pairs B was cheaper. CPU time is what a loaded machine
moves least; latency is bench/list_jobs.py's. Loopback only; bounded loops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from jobqueue.client import SyncClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench.list_jobs import calls_names, calls_of, load, redis_server_of, server_under  # noqa: E402

PARTS = ("client", "server", "redis", "all")


def run_ns(pid: int) -> int:
    """The CPU time of a process' threads in ns, user and system (the scheduler's own
    count: finer than /proc's clock ticks, which a block of calls would round)."""
    return sum(int(stat.read_text().split()[0]) for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"))


def block(pids: dict[str, int], call: Callable[[str], str], calls: int) -> dict[str, float]:
    """CPU µs per call of each part (client, server, redis: their process ids) over
    `calls` successive calls."""
    before = {part: run_ns(pid) for part, pid in pids.items()}
    token = ""
    for _ in range(calls):
        token = call(token)
    per_call = {part: (run_ns(pid) - before[part]) / 1000 / calls for part, pid in pids.items()}
    per_call["all"] = sum(per_call.values())
    return per_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", type=Path, nargs=2, metavar="TREE")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--completed", type=int, default=5_000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--call", default="pending, newest first", choices=calls_names())
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server_of(Path(tmp), under_callgrind=False) as redis_server,
        contextlib.ExitStack() as stack,
    ):
        asyncio.run(load(redis_server.url, args.jobs, args.completed))
        assert redis_server.process is not None
        sides = []
        for i, tree in enumerate(trees):
            log = Path(tmp) / f"server-{i}.log"
            url, pid = stack.enter_context(server_under([], tree, redis_server.url, log))
            call = calls_of(stack.enter_context(SyncClient(url)))[args.call]
            pids = {"client": os.getpid(), "server": pid, "redis": redis_server.process.pid}
            block(pids, call, args.calls)  # warm-up
            sides.append((call, pids))
        results: list[list[dict[str, float]]] = [[], []]
        for pair in range(args.pairs):
            for side in (0, 1) if pair % 2 == 0 else (1, 0):
                call, pids = sides[side]
                results[side].append(block(pids, call, args.calls))
        print(f"{args.call}: CPU µs per call, medians of {args.pairs} blocks of {args.calls} calls")
        for tree, blocks in zip(trees, results, strict=True):
            figures = ", ".join(f"{part} {statistics.median(b[part] for b in blocks):,.0f}" for part in PARTS)
            print(f"  {tree}: {figures}")
        for part in PARTS:
            ratios = [b[part] / a[part] for a, b in zip(*results, strict=True) if a[part]]
            cheaper = sum(ratio < 1 for ratio in ratios)
            median = statistics.median(ratios)
            print(f"  B/A {part}: median {median:.3f}, B cheaper in {cheaper} of {len(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
