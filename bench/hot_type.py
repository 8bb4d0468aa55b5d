#!/usr/bin/env python3
"""One hot type over several partitions on a local Redis Cluster: Redis CPU per master.

    python bench/hot_type.py [--masters 3] [--partitions N] [--jobs 20000] [--runs 3]
    python bench/hot_type.py --idle [--samples 200]

Starts a local cluster (`jobqueue.redis_cluster`, no replicas), gives the benchmark's
type ("bench") N partitions (default: the smallest N >= masters whose tags' slots put
the same number of partitions on every master; the tags are fixed by the type's name,
model.partitions_of_type, so N is what chooses where they land), enqueues the jobs
(Producer.enqueue_many: each script call's worth to the next partition; give a
multiple of N x 1,000 jobs for equal partitions) and drains them with one worker of
CONCURRENCY slots and a no-op handler (in this process: the harness's job body INCRs
one key, which would load one master). Per master
it reads INFO's main-thread CPU and INFO commandstats before and after the drain, and
prints each master's commands' time (commandstats' usec) as a multiple of a fair
share, the drain's rate, and jobs per Redis core-second (jobs / the masters' summed
main-thread CPU).

With --idle (on a single local Redis) it measures what partitions cost an idle
worker: one job enqueued at a time, the time from the enqueue to its handler's start,
with 1 and with 4 partitions, in alternation; medians and p99 per count.
Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis
from redis_cost import requests  # bench/, this script's folder

from jobqueue import Producer, Settings
from jobqueue.model import Job, partitions_of_type
from jobqueue.redis_cluster import LocalCluster
from jobqueue.redis_server import RedisServer
from jobqueue.worker import Worker

JOB_TYPE = "bench"  # peer_jobqueue.py's
CONCURRENCY = 32


def master_of(slot_ranges: list[tuple[int, int, int]], tag: str) -> int:
    slot = redis.crc.key_slot(f"{{{tag}}}".encode())
    return next(port for first, last, port in slot_ranges if first <= slot <= last)


def balanced_count(slot_ranges: list[tuple[int, int, int]], masters: int) -> int:
    for count in range(masters, 65):
        ports = [master_of(slot_ranges, tag) for tag in partitions_of_type(JOB_TYPE, count)]
        if len({ports.count(port) for port in {p for _, _, p in slot_ranges}}) == 1:
            return count
    raise SystemExit("no partition count up to 64 puts as many partitions on every master")


def usage(port: int) -> tuple[float, float]:
    """(main-thread CPU s, its commands' time in s) of one master."""
    node = redis.Redis(port=port)
    try:
        cpu = node.info("cpu")
        stats = node.info("commandstats")
    finally:
        node.close()
    main = float(cpu["used_cpu_sys_main_thread"]) + float(cpu["used_cpu_user_main_thread"])
    queue = sum(float(v["usec"]) for v in stats.values())
    return main, queue / 1e6


async def drain_once(url: str, partitions: int, jobs: int, ports: list[int], timeout_s: float) -> str:
    """Loads the jobs, then drains them with one worker (a no-op handler, in this
    process) while the masters' counters run."""
    settings = Settings(redis_url=url, redis_cluster=True)
    async with Producer.connect(settings) as producer:
        await producer.store.partitions.set(JOB_TYPE, partitions)
        await producer.enqueue_many(requests(JOB_TYPE, jobs, ()))
        before = {port: usage(port) for port in ports}

        ran = 0
        all_ran = asyncio.Event()

        async def noop(job: Job) -> None:
            nonlocal ran
            ran += 1
            if ran >= jobs:
                all_ran.set()

        stop = asyncio.Event()
        worker = Worker(JOB_TYPE, noop, settings=settings, concurrency=CONCURRENCY)
        serving = asyncio.create_task(worker.serve(stop))
        began = time.monotonic()
        try:
            await asyncio.wait_for(all_ran.wait(), timeout_s)
            seconds = time.monotonic() - began
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)
    after = {port: usage(port) for port in ports}
    main = {port: after[port][0] - before[port][0] for port in ports}
    queue = {port: after[port][1] - before[port][1] for port in ports}
    total_main, total_queue = sum(main.values()), sum(queue.values())
    shares = " ".join(f"{queue[p] / total_queue * len(ports):.2f}" for p in ports)
    cpu = " ".join(f"{main[p]:.2f}" for p in ports)
    return (
        f"drain {jobs / seconds:.0f} jobs/s; per master, its commands' time as a multiple of a "
        f"third: {shares}; main-thread CPU s: {cpu}; {jobs / total_main:.0f} jobs per Redis core-second"
    )


def drain(ports: list[int], url: str, partitions: int, jobs: int, timeout_s: float) -> str:
    for port in ports:
        node = redis.Redis(port=port)
        node.flushall()
        node.config_resetstat()
        node.close()
    return asyncio.run(drain_once(url, partitions, jobs, ports, timeout_s))


def hot(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as data,
        LocalCluster(data, masters=args.masters, replicas=0) as cluster,
    ):
        ports = [node.port for node in cluster.masters]
        client = redis.Redis(port=ports[0])
        owners = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        slot_ranges = [(int(r[0]), int(r[1]), int(r[2][1])) for r in owners]
        client.close()
        partitions = args.partitions or balanced_count(slot_ranges, args.masters)
        tags = partitions_of_type(JOB_TYPE, partitions)
        placed = ", ".join(f"{tag}->{ports.index(master_of(slot_ranges, tag))}" for tag in tags)
        print(f"{args.masters} masters, {partitions} partitions of {JOB_TYPE!r} (tag->master: {placed})")
        for _ in range(args.runs):
            print(drain(ports, cluster.url, partitions, args.jobs, args.timeout), flush=True)


async def idle_latency(url: str, partitions: int, samples: int) -> list[float]:
    settings = Settings(redis_url=url)
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()

    async with Producer.connect(settings) as producer:
        await producer.store.redis.flushdb()
        await producer.store.partitions.set("idle", partitions)
        stop = asyncio.Event()
        worker = Worker("idle", handler, settings=settings, concurrency=1)
        serving = asyncio.create_task(worker.serve(stop))
        try:
            await producer.enqueue("idle", b"")  # the first: connections made
            await asyncio.wait_for(started.wait(), 10)
            latencies = []
            before = await producer.store.redis.info("commandstats")
            for _ in range(samples):
                started.clear()
                await asyncio.sleep(0.01)  # idle: every lane blocked on its pop
                began = time.perf_counter()
                await producer.enqueue("idle", b"")
                await asyncio.wait_for(started.wait(), 10)
                latencies.append((time.perf_counter() - began) * 1000)
            after = await producer.store.redis.info("commandstats")
            calls = {k: v["calls"] - before.get(k, {"calls": 0})["calls"] for k, v in after.items()}
            print(
                f"{partitions} partition(s), Redis commands per job: "
                + ", ".join(
                    f"{k.removeprefix('cmdstat_')} {n / samples:.2f}" for k, n in sorted(calls.items()) if n
                )
            )
            return latencies
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)


def idle(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(Path(data))
        server.start()
        try:
            found: dict[int, list[float]] = {1: [], 4: []}
            for _ in range(args.runs):
                for count in found:
                    found[count] += asyncio.run(idle_latency(server.url, count, args.samples))
            for count, latencies in found.items():
                latencies.sort()
                p99 = latencies[int(len(latencies) * 0.99) - 1]
                median = statistics.median(latencies)
                print(f"{count} partition(s): enqueue to start median {median:.2f} ms, p99 {p99:.2f} ms")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=0, help="default: the smallest balanced count")
    parser.add_argument("--jobs", type=int, default=24_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--idle", action="store_true", help="an idle worker's latency, 1 vs 4 partitions")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    if args.idle:
        idle(args)
    else:
        hot(args)


if __name__ == "__main__":
    main()
