#!/usr/bin/env python3
"""Where the time of S2 and S3 goes: one worker's calls to Redis and its handler starts.

    python bench/timeline.py REDIS_URL s2 [--jobs 500] [--priorities 5,7]
    python bench/timeline.py REDIS_URL s3 [--jobs 200]
    (either with [--concurrency 10] [--prefetch 0]: the worker's settings)

S2 (jobs enqueued one by one at 100/s into an idle worker) splits each job's
enqueue→start latency into the enqueue call and the wake-up of the worker's blocking
pop, the claim (its round trip, with the fetcher's own work around it), and the start
of the handler after the claim's reply. S3 (jobs due at one instant) prints, relative
to the due time, the scheduler's promote, every call of the fetcher, and the starts of
the handlers, then how much of the burst the fetcher spent waiting on Redis.

S2 with --priorities gives the jobs those priorities in turn (5,7: every other job
is of priority 7) and splits the figures by priority, with the ratio of each to
the first's: a job of another priority than 5 waits in `prio` and wakes an idle
worker through the type's marker (docs/design.md, "Priorities"), one more round
trip. Alternating in one run, the priorities share the machine's load.

The worker is this file run by `jobqueue worker` with the harness's job body (one
RPUSH on `Worker.redis`). An observer of its events (jobqueue.events: its calls to
Redis, its handler starts) writes the trace when it stops. Loopback Redis only;
bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jobqueue import Producer, Settings
from jobqueue.events import Call, Event, JobLike
from jobqueue.model import JobOptions
from jobqueue.redis_server import is_loopback_url
from jobqueue.worker import Job, Worker

JOB_TYPE = "timeline"
STARTED = "timeline:started"  # the job body's one command: RPUSH of the job's id
Entry = tuple[float, float, str, Any]  # (start, end, what, detail)
FETCHER_CALLS = ("round", "claim")

TRACE: list[Entry] = []


def trace(event: Event, job: JobLike | None, detail: object) -> None:
    """An observer of the worker's events: its calls to Redis and its handler starts."""
    if event is Event.STARTED and job is not None:
        TRACE.append((time.time(), 0.0, "start", job.id))
    elif isinstance(detail, Call):
        end = detail.began + detail.seconds
        if event is Event.PROMOTED:
            TRACE.append((detail.began, end, "promote", detail.moved))
        elif event is Event.POPPED:
            TRACE.append((detail.began, end, "pop", list(detail.taken)))
        elif event is Event.ROUND:  # (runs recorded, ids taken, ids claimed)
            TRACE.append((detail.began, end, detail.name, (detail.recorded, detail.taken, detail.claimed)))


async def _body(job: Job) -> None:
    await worker.redis.rpush(STARTED, job.id)


_OUT = os.environ.get("TIMELINE_OUT")
worker = Worker(
    JOB_TYPE,
    _body,
    concurrency=int(os.environ.get("TIMELINE_CONCURRENCY", "10")),
    prefetch=int(os.environ.get("TIMELINE_PREFETCH", "0")),
    observers=[trace] if _OUT else [],
)
if _OUT:
    atexit.register(lambda: Path(_OUT).write_text(json.dumps(TRACE)))


# -- the driver ----------------------------------------------------------------------


async def _wait_for_starts(producer: Producer, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await producer.store.redis.llen(STARTED) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} jobs started within {timeout_s:g} s")
        await asyncio.sleep(0.005)


async def drive(
    url: str, scenario: str, jobs: int, priorities: list[int], priority_of: dict[str, int]
) -> dict[str, tuple[float, float]]:
    """Runs the scenario's jobs through the worker; returns {job id: (t_ref, enqueue call end)}
    and fills `priority_of` (S2's jobs take `priorities` in turn)."""
    enqueued: dict[str, tuple[float, float]] = {}
    options = [JobOptions(priority=p) for p in priorities]
    async with Producer.connect(Settings(redis_url=url)) as producer:
        await _wait_for_starts(producer, 1, 30)  # the warm-up job
        if scenario == "s2":
            first = time.monotonic()
            for i in range(jobs):
                await asyncio.sleep(max(0.0, first + i / 100 - time.monotonic()))  # 100/s, drift-corrected
                t_ref = time.time()
                job = await producer.enqueue(JOB_TYPE, b"", None, options[i % len(options)])
                enqueued[job.id] = (t_ref, time.time())
                priority_of[job.id] = priorities[i % len(priorities)]
        else:
            due = math.ceil(time.time() + 2)
            for _ in range(jobs):
                job = await producer.enqueue(JOB_TYPE, b"", due * 1000)
                enqueued[job.id] = (float(due), float(due))
        await _wait_for_starts(producer, jobs + 1, 60)
    return enqueued


def _rank(values: list[float], p: float) -> float:
    """The p-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _percentiles(values: list[float]) -> str:
    p50, p99, top = _rank(values, 0.5) * 1000, _rank(values, 0.99) * 1000, max(values) * 1000
    return f"p50 {p50:6.3f}  p99 {p99:6.3f}  max {top:6.3f} ms"


def report_s2(
    trace: list[Entry], enqueued: dict[str, tuple[float, float]], priority_of: dict[str, int]
) -> None:
    taken: dict[str, float] = {}  # job id -> when the worker had it (pop reply, or take)
    claimed: dict[str, float] = {}
    started: dict[str, float] = {}
    for start, end, what, detail in trace:
        if what == "pop":
            taken.update((job_id, end) for job_id in detail)
        elif what in FETCHER_CALLS:
            taken.update((job_id, end) for job_id in detail[1])
            claimed.update((job_id, end) for job_id in detail[2])
        elif what == "start":
            started[detail] = start
    ids = [i for i in enqueued if i in taken and i in claimed and i in started]
    segments = {
        "enqueue call": [enqueued[i][1] - enqueued[i][0] for i in ids],
        "enqueue -> worker has the id": [taken[i] - enqueued[i][0] for i in ids],
        "id -> claim replied": [claimed[i] - taken[i] for i in ids],
        "claim replied -> handler starts": [started[i] - claimed[i] for i in ids],
        "enqueue -> handler starts": [started[i] - enqueued[i][0] for i in ids],
    }
    print(f"S2, {len(ids)} jobs at 100/s into an idle worker:")
    for name, values in segments.items():
        print(f"  {name:33} {_percentiles(values)}")
    levels = sorted(set(priority_of.values()), key=list(priority_of.values()).index)
    if len(levels) > 1:
        total = dict(zip(ids, segments["enqueue -> handler starts"], strict=True))
        by_level = {p: sorted(total[i] for i in ids if priority_of[i] == p) for p in levels}
        base = by_level[levels[0]]
        print(f"  enqueue -> handler starts by priority (ratio to priority {levels[0]}'s, same run):")
        for p, values in by_level.items():
            p50, p99 = _rank(values, 0.5) / _rank(base, 0.5), _rank(values, 0.99) / _rank(base, 0.99)
            ratios = f"p50 x{p50:.2f}  p99 x{p99:.2f}"
            print(f"    priority {p}  {len(values):4} jobs  {_percentiles(values)}  {ratios}")


def _describe(what: str, detail: Any) -> str:
    if what == "promote":
        return f"moved {detail}"
    if what in FETCHER_CALLS:
        return f"recorded {detail[0]}, claimed {len(detail[2])}, took {len(detail[1])}"
    return f"{len(detail)} job(s)"


def report_s3(trace: list[Entry], due: float) -> None:
    events = sorted((e for e in trace if e[0] >= due - 0.5), key=lambda e: e[0])
    starts = [e[0] for e in events if e[2] == "start"]
    marks = {1, 2, 10, 11, 50, 100, 150, len(starts) - 2, len(starts)}
    print(f"S3, {len(starts)} jobs due at one instant (ms after it; a call: start, duration):")
    n = 0
    for start, end, what, detail in events:
        if what == "start":
            n += 1
            if n in marks:
                print(f"  {(start - due) * 1000:8.2f}            handler #{n} starts")
            continue
        if n < 12 or what == "promote":  # the first rounds; the rest repeat them
            at, took = (start - due) * 1000, (end - start) * 1000
            print(f"  {at:8.2f} {took:6.2f} ms  {what} {_describe(what, detail)}")
    burst = [e for e in events if e[2] in FETCHER_CALLS and starts[0] <= e[0] <= starts[-1]]
    span = starts[-1] - starts[0]
    waiting = sum(end - start for start, end, _, _ in burst)
    rounds = sum(1 for e in burst if e[3][2])  # rounds that claimed
    print(
        f"  from the first start to the last: {span * 1000:.1f} ms, {rounds} rounds of claims"
        f" ({span / max(1, rounds) * 1000:.2f} ms each); the fetcher waited on Redis"
        f" {waiting * 1000:.1f} ms of it ({waiting / span:.0%})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_url")
    parser.add_argument("scenario", choices=["s2", "s3"])
    parser.add_argument("--jobs", type=int, help="default: 500 (s2), 200 (s3)")
    parser.add_argument("--concurrency", type=int, default=10, help="the worker's (default 10, as in S2/S3)")
    parser.add_argument("--prefetch", type=int, default=0, help="the worker's (default 0)")
    parser.add_argument(
        "--priorities",
        default="5",
        help="s2: the jobs' priorities in turn, e.g. 5,7 (default 5: all default)",
    )
    args = parser.parse_args()
    priorities = [int(p) for p in args.priorities.split(",") if p]
    if not priorities or not all(1 <= p <= 9 for p in priorities):
        parser.error("--priorities: 1 to 9, comma-separated")
    if not is_loopback_url(args.redis_url):
        parser.error("only a loopback Redis may be targeted")
    jobs = args.jobs or (500 if args.scenario == "s2" else 200)
    if not 0 < jobs <= 10_000:
        parser.error("--jobs must be 1..10000")
    asyncio.run(_flush_and_warm_up(args.redis_url))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace.json")
        env = dict(
            os.environ,
            TIMELINE_OUT=out,
            JOBQUEUE_REDIS_URL=args.redis_url,
            TIMELINE_CONCURRENCY=str(args.concurrency),
            TIMELINE_PREFETCH=str(args.prefetch),
        )
        command = [sys.executable, "-m", "jobqueue.cli", "worker", __file__, "--processes", "1"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            priority_of: dict[str, int] = {}
            enqueued = asyncio.run(drive(args.redis_url, args.scenario, jobs, priorities, priority_of))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        trace: list[Entry] = [tuple(e) for e in json.loads(Path(out).read_text())]
    if args.scenario == "s2":
        report_s2(trace, enqueued, priority_of)
    else:
        report_s3(trace, statistics.mode(t for t, _ in enqueued.values()))
    return 0


async def _flush_and_warm_up(url: str) -> None:
    """An empty database, and one job waiting for the worker to warm up on."""
    async with Producer.connect(Settings(redis_url=url)) as producer:
        await producer.store.redis.flushdb()
        await producer.enqueue(JOB_TYPE, b"")


if __name__ == "__main__":
    sys.exit(main())
