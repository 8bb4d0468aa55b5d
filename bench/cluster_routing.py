#!/usr/bin/env python3
"""What a command costs the client on a Redis Cluster, next to one Redis.

    python bench/cluster_routing.py SINGLE_URL CLUSTER_URL [--commands N] [--runs R]

Sends N sequential commands (an INCR of one hash-tagged key, a round trip each) three
ways: the store's pooled client (`Store.open`: the command timeout, a bounded pool), a
worker's handlers' client (`connect(max_connections=None)`: no timeout, unbounded) and
an own connection (`Store.own_connection`), on the single Redis and on the cluster (the
cluster client's routing; `ClusterConnection`'s). Prints the client's CPU per command
(process time: steadier than wall time on a shared machine), the median of R runs.
Loopback Redis only; bounded by N and R.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from jobqueue.redis_server import is_loopback_url
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.store.client import connect

KEY = "{bench}:routing"


async def cpu_per_command(send: Callable[[], Awaitable[object]], n: int) -> float:
    await send()  # connected, slot map read
    start = time.process_time()
    for _ in range(n):
        await send()
    return (time.process_time() - start) / n * 1e6


async def measure(url: str, cluster: bool, n: int, runs: int) -> tuple[float, float, float]:
    store = Store.open(Settings(redis_url=url, redis_cluster=cluster))
    handlers = connect(url, max_connections=None, cluster=cluster)
    own = store.own_connection()
    try:
        pooled = [await cpu_per_command(lambda: store.redis.incr(KEY), n) for _ in range(runs)]
        unbounded = [await cpu_per_command(lambda: handlers.incr(KEY), n) for _ in range(runs)]
        owned = [await cpu_per_command(lambda: own.execute("INCR", KEY), n) for _ in range(runs)]
        await store.redis.delete(KEY)
    finally:
        await own.aclose()
        await handlers.aclose()
        await store.aclose()
    return statistics.median(pooled), statistics.median(unbounded), statistics.median(owned)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("single_url")
    parser.add_argument("cluster_url")
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (is_loopback_url(args.single_url) and is_loopback_url(args.cluster_url)):
        parser.error("only a loopback Redis may be targeted")
    for name, url, cluster in (("single", args.single_url, False), ("cluster", args.cluster_url, True)):
        pooled, unbounded, owned = asyncio.run(measure(url, cluster, args.commands, args.runs))
        print(
            f"{name}: store's client {pooled:.0f}, handlers' client {unbounded:.0f}, "
            f"own connection {owned:.0f} µs/command"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
