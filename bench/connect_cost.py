#!/usr/bin/env python3
"""What a new Redis connection of `jobqueue.store.client.connect` costs the event loop.

    python bench/connect_cost.py REDIS_URL

Prints the CPU and wall time per connection (median of 5 rounds of 200 sequential
connects) and the time a cold pool takes to serve a burst of 10 and of 100
concurrent commands, as a worker's handlers meet it on their first burst.
Loopback Redis only; bounded in count.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from jobqueue.redis_server import is_loopback_url
from jobqueue.store.client import connect


async def sequential_connects(url: str, n: int = 200, rounds: int = 5) -> tuple[float, float]:
    """Median µs of CPU and of wall time per connection."""
    client = connect(url, max_connections=None)
    cpu: list[float] = []
    wall: list[float] = []
    try:
        pool = client.connection_pool
        for _ in range(rounds):
            connections = []
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                connection = pool.make_connection()  # type: ignore[no-untyped-call]
                await connection.connect()
                connections.append(connection)
            cpu.append((time.process_time() - cpu0) / n * 1e6)
            wall.append((time.perf_counter() - wall0) / n * 1e6)
            for connection in connections:
                await connection.disconnect()
    finally:
        await client.aclose()
    return statistics.median(cpu), statistics.median(wall)


async def cold_burst(url: str, n: int) -> float:
    """ms for `n` concurrent commands on a pool with no connection yet."""
    client = connect(url, max_connections=None)
    try:
        start = time.perf_counter()
        await asyncio.gather(*(client.exists("connect-cost") for _ in range(n)))
        return (time.perf_counter() - start) * 1e3
    finally:
        await client.aclose()


async def main(url: str) -> None:
    cpu, wall = await sequential_connects(url)
    print(f"new connection: {cpu:.0f} µs CPU, {wall:.0f} µs wall (median of 5 x 200 sequential)")
    for n in (10, 100):
        print(f"cold pool, {n} concurrent commands: {await cold_burst(url, n):.1f} ms")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    if not is_loopback_url(sys.argv[1]):
        sys.exit("only a loopback Redis may be targeted")
    asyncio.run(main(sys.argv[1]))
