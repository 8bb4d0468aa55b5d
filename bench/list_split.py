#!/usr/bin/env python3
"""Where one ListJobs call's time goes: the client, the server's fixed cost, the page's
own server work, Redis (docs/performance.md, "ListJobs: one call, part by part").

    python bench/list_split.py [--jobs 20000] [--completed 5000] [--calls 500] [--rounds 5]

Starts a Redis of its own and a `jobqueue server` of this tree on it, loads the jobs
as bench/list_jobs.py does (a page's cost does not grow with the jobs stored), then:

- **Through the server**, `--rounds` rounds of `--calls` calls of each kind, the kinds
  alternating: WhoAmI (no Redis: the server's fixed cost of a call, edge, ASGI and
  connectrpc), GetJob (one Redis call), a ListJobs page of 100 pending jobs newest
  first with the client's default (no compression), and the same page with a client
  that sends and accepts gzip (`gzip=True`, the default before). Per kind: latency
  p50 and p99, the client's CPU per call (this process, pyqwest's threads included),
  the server process' CPU per call (/proc) and Redis' time per call (its command stats).
- **In process**, no HTTP, the parts of a page, each timed alone over the same page
  (median of the rounds): on the server's side the store's read (token, page.lua's
  call, decoding 100 jobs; its Redis time subtracted), of it the decoding alone,
  building the reply's messages, encoding them, and gzip at connectrpc's level; on the
  client's side building and encoding the request, gunzip, decoding the reply, and
  building the client's 100 Jobs; and Redis' time for page.lua's parts (EVAL of the
  index alone, then with a HGET of one field a job, a HMGET of the listed fields with
  the values dropped, returned as tables, and returned packed as page.lua returns them).

What the parts do not explain of a call's latency is the wake-ups and the loopback
writes between three processes on a shared machine. Loopback only; bounded loops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from connectrpc.codec import proto_binary_codec
from redis import Redis

from jobqueue import Producer, Settings
from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.client import SyncClient
from jobqueue.redis_server import RedisServer
from jobqueue.selection import JobFilter, ListOrder
from jobqueue.store.codec import LISTED_FIELDS, LISTED_MARKERS, decode_listed
from jobqueue.wire import job_from_proto, job_to_proto, list_jobs_request

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench.drain_once import cpu_seconds  # noqa: E402
from bench.list_jobs import JOB_TYPE, load  # noqa: E402
from tests.conftest import jobqueue_server_process  # noqa: E402

PAGE = (JobFilter(type=JOB_TYPE), ListOrder.NEWEST_FIRST)


def timed(work: Callable[[], object], *, calls: int, rounds: int) -> float:
    """Median over `rounds` of the µs per call of `calls` calls of `work`."""
    per_call = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        per_call.append((time.perf_counter() - started) * 1e6 / calls)
    return statistics.median(per_call)


async def store_parts(redis_url: str, *, calls: int, rounds: int) -> dict[str, float]:
    """The server's parts of a page, in this process (µs per page)."""
    parts: dict[str, float] = {}
    async with Producer.connect(Settings(redis_url=redis_url)) as producer:
        first = await producer.list_jobs(*PAGE, 100)
        token = first.next_page_token
        redis = producer.store.redis
        # The store's read: CPU (redis-py, the page's decoding) and wall time, Redis' time apart.
        cpu, redis_us = [], []
        for _ in range(rounds):
            await redis.config_resetstat()
            started = time.process_time()
            for _ in range(calls):
                page = await producer.list_jobs(*PAGE, 100, token)
            cpu.append((time.process_time() - started) * 1e6 / calls)
            stats = await redis.info("commandstats")
            redis_us.append(stats.get("cmdstat_evalsha", {}).get("usec", 0) / calls)
        parts["server: the store's read, CPU (page.lua's call, decoding, token)"] = statistics.median(cpu)
        parts["Redis: page.lua"] = statistics.median(redis_us)
        # The page's raw values, as page.lua returns them, to time their decoding alone.
        lister = producer.store.lister
        captured: list[Any] = []
        script = lister._page

        class Capturing:
            """page.lua, keeping its replies."""

            def __getattr__(self, name: str) -> Any:
                return getattr(script, name)

            async def run(self, *args: Any) -> Any:
                captured.append(await script.run(*args))
                return captured[-1]

        lister._page = Capturing()  # type: ignore[assignment]
        await producer.list_jobs(*PAGE, 100, token)
        lister._page = script
        _, *flat = msgpack.unpackb(captured[0], raw=True, use_list=False)
        entries = [(m.decode(), v) for m, v in zip(flat[::3], flat[2::3], strict=True)]
        parts["server: decoding 100 jobs (decode_listed)"] = timed(
            lambda: [decode_listed(i, JOB_TYPE, v) for i, v in entries], calls=calls, rounds=rounds
        )
        parts |= await redis_parts(producer, calls=calls, rounds=rounds)
    jobs = page.jobs

    def build() -> pb.ListJobsResponse:
        return pb.ListJobsResponse(
            jobs=[job_to_proto(job, with_payload=False) for job in jobs], next_page_token=page.next_page_token
        )

    reply = build()
    data = reply.to_binary()
    parts["server: building the reply (job_to_proto x100)"] = timed(build, calls=calls, rounds=rounds)
    parts["server: encoding the reply (to_binary)"] = timed(reply.to_binary, calls=calls, rounds=rounds)
    parts["server: gzip level 6"] = timed(lambda: gzip.compress(data, 6), calls=calls, rounds=rounds)
    gzipped = gzip.compress(data, 6)
    codec = proto_binary_codec()
    request = list_jobs_request(*PAGE, 100, page.next_page_token, False)
    parts["client: the request (build, encode, gzip)"] = timed(
        lambda: gzip.compress(codec.encode(list_jobs_request(*PAGE, 100, page.next_page_token, False)), 6),
        calls=calls,
        rounds=rounds,
    )
    del request
    parts["client: gunzip"] = timed(lambda: gzip.decompress(gzipped), calls=calls, rounds=rounds)
    parts["client: decoding the reply (from_binary)"] = timed(
        lambda: pb.ListJobsResponse.from_binary(data), calls=calls, rounds=rounds
    )
    decoded = pb.ListJobsResponse.from_binary(data)
    parts["client: its 100 Jobs (job_from_proto)"] = timed(
        lambda: [job_from_proto(job) for job in decoded.jobs], calls=calls, rounds=rounds
    )
    print(f"reply: {len(data):,} bytes, {len(gzipped):,} gzipped", flush=True)
    return parts


# page.lua's work on the first 100 entries of the index, in parts: the index alone, each
# job's HMGET with its values dropped, and the same returning them (page.lua's reply).
_REDIS_PARTS = {
    "Redis: the index alone (ZRANGE of 100)": "return #redis.call('ZRANGE', KEYS[1], 0, 99)",
    "Redis: the index, a HGET of one field a job": """
local ids = redis.call('ZRANGE', KEYS[1], 0, 99)
for _, id in ipairs(ids) do redis.call('HGET', ARGV[1] .. id, 'status') end
return #ids""",
    "Redis: the index, a HMGET of the listed fields a job, values dropped": """
local ids = redis.call('ZRANGE', KEYS[1], 0, 99)
local fields = {unpack(ARGV, 2)}
for _, id in ipairs(ids) do redis.call('HMGET', ARGV[1] .. id, unpack(fields)) end
return #ids""",
    "Redis: the index, a HMGET of the listed fields a job, values returned": """
local ids = redis.call('ZRANGE', KEYS[1], 0, 99)
local fields, reply = {unpack(ARGV, 2)}, {}
for i, id in ipairs(ids) do reply[i] = redis.call('HMGET', ARGV[1] .. id, unpack(fields)) end
return reply""",
    "Redis: the same, returned packed (cmsgpack, as page.lua)": """
local ids = redis.call('ZRANGE', KEYS[1], 0, 99)
local fields, reply = {unpack(ARGV, 2)}, {}
for i, id in ipairs(ids) do reply[i] = redis.call('HMGET', ARGV[1] .. id, unpack(fields)) end
return cmsgpack.pack(reply)""",
}


async def redis_parts(producer: Producer, *, calls: int, rounds: int) -> dict[str, float]:
    """Redis' µs per page of each of _REDIS_PARTS (EVAL, its command stats)."""
    redis, keys = producer.store.redis, producer.store.keys
    [partition] = await producer.store.partitions.covered(JOB_TYPE)
    index = keys.queue(JOB_TYPE, partition).live
    args = [keys.job_key_prefix(partition), *LISTED_FIELDS, *LISTED_MARKERS]
    parts = {}
    for name, script in _REDIS_PARTS.items():
        per_call = []
        for _ in range(rounds):
            await redis.config_resetstat()
            for _ in range(calls):
                await redis.eval(script, 1, index, *args)  # type: ignore[misc]
            stats = await redis.info("commandstats")
            per_call.append(stats["cmdstat_eval"]["usec"] / calls)
        parts[name] = statistics.median(per_call)
    return parts


def through_server(
    redis: Redis, server_pid: int, url: str, *, calls: int, rounds: int
) -> dict[str, dict[str, float]]:
    with SyncClient(url) as client, SyncClient(url, gzip=True) as gzipping:
        some_job = client.list_jobs(*PAGE, page_size=1).jobs[0].id
        first = client.list_jobs(*PAGE, 100).next_page_token
        kinds: dict[str, Callable[[], object]] = {
            "WhoAmI (no Redis)": client.who_am_i,
            "GetJob": lambda: client.get(some_job),
            "ListJobs page (the client's default: no compression)": lambda: client.list_jobs(
                *PAGE, 100, first
            ),
            "ListJobs page, gzip": lambda: gzipping.list_jobs(*PAGE, 100, first),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
        for call in kinds.values():  # warm up
            for _ in range(20):
                call()
        for _ in range(rounds):
            for name, call in kinds.items():
                redis.config_resetstat()
                server_cpu = cpu_seconds(server_pid) or 0.0
                client_cpu = time.process_time()
                latencies = []
                for _ in range(calls):
                    started = time.perf_counter()
                    call()
                    latencies.append((time.perf_counter() - started) * 1000)
                client_ms = (time.process_time() - client_cpu) * 1000 / calls
                server_ms = ((cpu_seconds(server_pid) or 0.0) - server_cpu) * 1000 / calls
                stats = redis.info("commandstats")
                redis_us = sum(v.get("usec", 0) for k, v in stats.items() if k.startswith("cmdstat_")) / calls
                latencies.sort()
                samples[name].append({
                    "p50 ms": latencies[len(latencies) // 2],
                    "p99 ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
                    "client CPU ms": client_ms,
                    "server CPU ms": server_ms,
                    "Redis ms": redis_us / 1000,
                })  # fmt: skip
    return {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--completed", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp))
        redis_server.start(timeout=120)
        try:
            asyncio.run(load(redis_server.url, args.jobs, args.completed))
            with (
                Redis.from_url(redis_server.url) as redis,
                jobqueue_server_process(redis_server.url, Path(tmp) / "server.log") as (url, process),
            ):
                calls = through_server(redis, process.pid, url, calls=args.calls, rounds=args.rounds)
            parts = asyncio.run(store_parts(redis_server.url, calls=args.calls // 5, rounds=args.rounds))
        finally:
            redis_server.stop()
    print(f"through the server, medians of {args.rounds} rounds of {args.calls} calls:")
    for name, figures in calls.items():
        print(f"  {name}: " + ", ".join(f"{key} {value:.3f}" for key, value in figures.items()))
    print(f"in process, a page of 100 (µs, medians of {args.rounds} rounds):")
    for name, us in parts.items():
        print(f"  {name}: {us:,.0f}")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
