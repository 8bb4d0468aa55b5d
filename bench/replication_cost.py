#!/usr/bin/env python3
"""What waiting for a replica costs an enqueue, and what a Sentinel failover costs a run.

    python bench/replication_cost.py acks [--runs 5] [--smoke]
    python bench/replication_cost.py failover [--runs 3] [--replica-acks auto|0|N] [--smoke]

`acks`: a master with one replica (loopback, private); a Producer enqueues with
replica_acks 0 and then 1, alternating, `--runs` times each: S2-like single
enqueues one after the other (the enqueue call's latency, p50 / p99) and EnqueueJobs
throughput (20,000 jobs in calls of 1,000: jobs/s). Medians of the runs, min-max.

`failover`: a master, a replica and three sentinels (jobqueue/redis_sentinel.py), a
`jobqueue server` and a `jobqueue worker` on the redis+sentinel:// URL; a client
enqueues (each with an idempotency key, retried while it answers `unavailable`)
before, during and after a SENTINEL FAILOVER, then waits for every acknowledged job:
lost (acknowledged, never completed), duplicates (jobs run more than once),
`unavailable` answers, and the time from the failover to the first enqueue the new
master acknowledged and to the old master serving as a replica.

Only loopback is targeted; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from jobqueue import JobOptions, Producer, Settings  # noqa: E402
from jobqueue.model import EnqueueRequest  # noqa: E402
from jobqueue.redis_sentinel import LocalSentinel  # noqa: E402
from jobqueue.redis_server import free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _acks_run(url: str, acks: str, singles: int, batch_jobs: int) -> dict[str, float]:
    settings = Settings(redis_url=url, replica_acks=acks)
    async with Producer.connect(settings) as producer:
        for _ in range(50):  # warm-up: connections, scripts
            await producer.enqueue("bench", b"noop")
        latencies = []
        for _ in range(singles):
            started = time.perf_counter()
            await producer.enqueue("bench", b"noop")
            latencies.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for _ in range(batch_jobs // 1000):
            await producer.enqueue_many([EnqueueRequest("bench", b"noop")] * 1000)
        rate = batch_jobs / (time.perf_counter() - started)
        await producer.store.redis.flushall()
    return {"p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "jobs_per_s": rate}


def acks(runs: int, smoke: bool) -> dict[str, Any]:
    singles, batch_jobs = (50, 2000) if smoke else (500, 20_000)
    results: dict[str, list[dict[str, float]]] = {"0": [], "1": []}
    with tempfile.TemporaryDirectory() as workdir:
        deployment = LocalSentinel(workdir, sentinels=1)  # the replica; its sentinel is idle
        with deployment:
            url = deployment.nodes[0].url
            for _ in range(runs):
                for setting in ("0", "1"):
                    results[setting].append(asyncio.run(_acks_run(url, setting, singles, batch_jobs)))
    summary: dict[str, Any] = {}
    for setting, rows in results.items():
        summary[f"replica_acks={setting}"] = {
            name: {
                "median": statistics.median(row[name] for row in rows),
                "min": min(row[name] for row in rows),
                "max": max(row[name] for row in rows),
            }
            for name in rows[0]
        }
    return summary


def _failover_run(smoke: bool, replica_acks: str) -> dict[str, Any]:
    from connectrpc.code import Code  # noqa: PLC0415
    from connectrpc.errors import ConnectError  # noqa: PLC0415

    from jobqueue.client import SyncClient  # noqa: PLC0415
    from jobqueue.model import JobStatus  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as workdir, LocalSentinel(workdir) as deployment:
        url = deployment.url
        env = {
            **os.environ,
            "JOBQUEUE_REDIS_URL": url,
            "JOBQUEUE_WORKER_PROCESSES": "1",
            "JOBQUEUE_REPLICA_ACKS": replica_acks,
        }
        port = free_port()
        logs = Path(workdir)
        commands = {
            "server.log": ["server", "--host", "127.0.0.1", "--port", str(port)],
            "worker.log": ["worker", "tests/worker_apps.py:quick"],
        }
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "jobqueue.cli", *args],
                env=env,
                cwd=ROOT,
                stdout=(logs / name).open("wb"),
                stderr=subprocess.STDOUT,
            )
            for name, args in commands.items()
        ]
        try:
            deadline = time.monotonic() + 120
            with SyncClient(f"http://127.0.0.1:{port}") as client:
                while True:  # the server's port
                    try:
                        client.stats()
                        break
                    except ConnectError:  # not listening yet
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                acked: list[str] = []
                refused = 0
                first_after: float | None = None

                def enqueue(key: str) -> None:
                    nonlocal refused
                    options = JobOptions(idempotency_key=key)
                    while True:
                        try:
                            job = client.enqueue("quick", b"", options=options)
                        except ConnectError as exc:  # `unavailable` while it switches
                            if exc.code is not Code.UNAVAILABLE or time.monotonic() > deadline:
                                raise
                            refused += 1
                            time.sleep(0.02)
                        else:
                            acked.append(job.id)
                            return

                for i in range(20 if smoke else 200):
                    enqueue(f"before-{i}")
                old = deployment.master_address()
                switched = time.monotonic()
                deployment.failover()
                while not deployment.failed_over(old) and time.monotonic() < deadline:
                    enqueue(f"during-{len(acked)}")
                    if first_after is None and deployment.master_address() != old:
                        _, new_port = deployment.master_address()
                        if _stored_on(new_port, acked[-1]):
                            first_after = time.monotonic() - switched
                rejoined = time.monotonic() - switched
                for i in range(20 if smoke else 200):
                    enqueue(f"after-{i}")
                lost = duplicates = 0
                for job_id in acked:
                    try:
                        job = client.wait(job_id, max(1.0, deadline - time.monotonic()))
                    except ConnectError as exc:
                        if exc.code is not Code.NOT_FOUND:
                            raise
                        lost += 1  # acknowledged by the old master, gone with it
                        continue
                    lost += job.status is not JobStatus.COMPLETED
                    duplicates += job.attempt > 1
            return {
                "acked": len(acked),
                "lost": lost,
                "duplicates": duplicates,
                "unavailable_answers": refused,
                "first_ack_on_new_master_s": first_after,
                "old_master_a_replica_s": rejoined,
            }
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)


def _stored_on(port: int, job_id: str) -> bool:
    import redis  # noqa: PLC0415

    from jobqueue.model import partition_of_type  # noqa: PLC0415
    from jobqueue.store.keys import Keyspace  # noqa: PLC0415

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
        return bool(client.exists(Keyspace("jq").job_key_prefix(partition_of_type("quick")) + job_id))


def failover(runs: int, smoke: bool, replica_acks: str) -> dict[str, Any]:
    return {"replica_acks": replica_acks, "runs": [_failover_run(smoke, replica_acks) for _ in range(runs)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("acks", "failover"))
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it still works")
    parser.add_argument("--replica-acks", default="auto", help="failover: the server's setting")
    args = parser.parse_args()
    if args.scenario == "acks":
        result = acks(args.runs or (1 if args.smoke else 5), args.smoke)
    else:
        result = failover(args.runs or (1 if args.smoke else 3), args.smoke, args.replica_acks)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
