#!/usr/bin/env python3
"""ListJobs latency over a million stored jobs, through the real server.

    python bench/list_jobs.py [--jobs 1000000] [--completed 200000] [--pages 1000] [--runs 3]
        [--client sync socket]
    python bench/list_jobs.py --trees TREE_A TREE_B [--runs 4] [--pages 500] [--gzip-trees TREE_A]
    python bench/list_jobs.py --instructions TREE [TREE...] [--jobs 20000] [--completed 5000]
        [--pages 200] [--call "pending, newest first"]
    python bench/list_jobs.py --redis-instructions TREE [TREE...] [--jobs 20000] [--completed 5000]
        [--pages 200] [--call "pending, newest first"]

Starts a Redis of its own (a temporary directory, a free loopback port) and a
`jobqueue server` on it, loads `--jobs` jobs of one type with
`Producer.enqueue_many` (script calls of 1,000 jobs: each call's jobs share one
created_at, the ties ListJobs' cursor has to resolve), then completes the oldest
`--completed` of them through the real transitions (round.lua: take, claim,
record, as a busy worker's rounds do, in this process). Then, `--runs` times,
it walks `--pages` pages of 100 with `SyncClient.list_jobs` (Connect, binary
protobuf over HTTP/1.1, one call at a time) in each selection and prints the
p50 and p99 of the calls' latencies, and the median of each over the runs.
On a shared machine those wait for CPU time; two steadier figures go with
them: Redis' own time per call (its command stats: the scripts a page runs,
and SMEMBERS for every type) and the server process' CPU time per call
(/proc). GetJob, called as often at the same time, gives the scale: what the
machine makes of the cheapest call. Loopback only; every loop is bounded.

With `--client socket` (or `--client sync socket`, walked in turn), the pages are
also, or only, read through bench/socket_client.py: Connect over one blocking HTTP/1.1
socket, the reply decoded as SyncClient decodes it, without pyqwest's threads and
connectrpc's client around it: what the server takes to answer, with the least a
client adds on cores it shares with the server and Redis.

With `--trees`, one server per tree (a checkout, e.g. a `git worktree` of another
commit, its code first on PYTHONPATH) on the same Redis and jobs, walked in
turn, each first in every other run: an A/B at the same moment of a shared
machine's load.

The bench's clients are this tree's `SyncClient`, whatever the server's tree; they ask
for no compression (the client's default since listp99) unless `--gzip` (all of them)
or `--gzip-trees` (those of these trees' servers) says so, as the client did before.
`--server h2corn` serves this tree's pages with h2corn instead of Hypercorn (the
server's CPU then counts its serving child too).

With `--instructions`, the figure the machine's load does not move: each tree
(a checkout, e.g. a `git worktree` of another commit) runs its `jobqueue server`
under valgrind (cachegrind, no cache simulation), once with a warm-up of
`--warmup` pages and once with the warm-up and `--pages` more, of one selection
(`--call`, or GetJob); the difference over the pages is the server's
instructions per call (start-up and shutdown excluded). A page's cost does not
grow with the jobs stored, so a small store will do (`--jobs 20000 --completed 5000`).

With `--redis-instructions`, the same for Redis: it runs under valgrind
(callgrind, counting only then), and per tree, after the warm-up of a server of
that tree, its counters are zeroed, `--pages` calls made and the counters dumped: Redis'
instructions per call (its background work meanwhile included: a few seconds'
worth of its 10 Hz timer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from redis import Redis

from jobqueue import EnqueueRequest, Producer, Settings
from jobqueue.client import SyncClient
from jobqueue.model import Job, JobStatus
from jobqueue.redis_server import RedisServer
from jobqueue.selection import JobFilter, ListOrder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.drain_once import cpu_seconds  # noqa: E402
from bench.edge_ab import _free_port, _wait_listening  # noqa: E402
from bench.edge_ab import _instructions as cachegrind_instructions  # noqa: E402
from bench.socket_client import SocketClient  # noqa: E402
from tests.conftest import jobqueue_server_process  # noqa: E402  (the suite's server subprocess)

Client = SyncClient | SocketClient

JOB_TYPE = "bench-list"
OTHER_TYPE = "bench-list-other"
LOAD_BATCH = 10_000
ROUND = 1000


async def load(url: str, jobs: int, completed: int) -> dict[str, float]:
    """Stores the jobs, then completes the oldest `completed`: seconds each step took."""
    async with Producer.connect(Settings(redis_url=url)) as producer:
        started = time.perf_counter()
        for _ in range(jobs // LOAD_BATCH):
            await producer.enqueue_many([EnqueueRequest(JOB_TYPE, b"{}")] * LOAD_BATCH)
        # A second type, so that the every-type selection merges two indexes.
        await producer.enqueue_many([EnqueueRequest(OTHER_TYPE, b"{}")] * ROUND)
        loaded = time.perf_counter()
        transitions = producer.store.transitions
        _, _, taken = await transitions.round(JOB_TYPE, "bench", take=ROUND)
        done = 0
        while taken and done < completed:
            _, claims, _ = await transitions.round(JOB_TYPE, "bench", claim=taken, lease_ms=600_000)
            running = [c for c in claims if isinstance(c, Job)]
            more = ROUND if done + len(running) < completed else 0
            records, _, taken = await transitions.round(JOB_TYPE, "bench", running, take=more)
            done += len(records)
        return {"enqueue_s": loaded - started, "complete_s": time.perf_counter() - loaded, "completed": done}


@dataclasses.dataclass
class Walk:
    latencies_ms: list[float]
    redis_us: float  # Redis' time in commands per call
    server_cpu_ms: float  # the server process' CPU time per call


def walk(redis: Redis, server_pid: int, call: Callable[[str], str], *, calls: int) -> Walk:
    """`calls` successive calls, each given the token the previous one returned."""
    redis.config_resetstat()
    cpu = tree_cpu_seconds(server_pid)
    latencies = []
    token = ""
    for _ in range(calls):
        started = time.perf_counter()
        token = call(token)
        latencies.append((time.perf_counter() - started) * 1000)
    stats = redis.info("commandstats")
    # The scripts' time includes their commands'; the others run outside them.
    redis_us = sum(
        stats.get(k, {}).get("usec", 0) for k in ("cmdstat_evalsha", "cmdstat_smembers", "cmdstat_hgetall")
    )
    return Walk(latencies, redis_us / calls, (tree_cpu_seconds(server_pid) - cpu) * 1000 / calls)


def tree_cpu_seconds(pid: int) -> float:
    """The CPU time of a process and its live descendants: h2corn serves from a child."""
    total = cpu_seconds(pid) or 0.0
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            total += tree_cpu_seconds(int(child))
    return total


def list_pages(client: Client, selection: tuple[JobFilter, ListOrder]) -> Callable[[str], str]:
    """ListJobs of a page of 100 after the token: the next token."""

    def call(token: str) -> str:
        page = client.list_jobs(*selection, 100, token)
        assert len(page.jobs) == 100, len(page.jobs)
        return page.next_page_token

    return call


def summary(walks: list[Walk]) -> str:
    """The medians over the walks of each walk's p50, p99, Redis time and server CPU."""
    p50 = statistics.median(percentile(w.latencies_ms, 0.5) for w in walks)
    p99 = statistics.median(percentile(w.latencies_ms, 0.99) for w in walks)
    redis_us = statistics.median(w.redis_us for w in walks)
    cpu_ms = statistics.median(w.server_cpu_ms for w in walks)
    return (
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, Redis {redis_us:.0f} µs/call, server CPU {cpu_ms:.2f} ms/call"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SELECTIONS = {
    "pending, newest first": (JobFilter(type=JOB_TYPE), ListOrder.NEWEST_FIRST),
    "pending, oldest first": (JobFilter(type=JOB_TYPE), ListOrder.OLDEST_FIRST),
    "completed, newest first": (JobFilter(type=JOB_TYPE, status=JobStatus.COMPLETED), ListOrder.NEWEST_FIRST),
    "every type, pending, newest first": (JobFilter(), ListOrder.NEWEST_FIRST),
}


def calls_names() -> list[str]:
    return ["GetJob (for scale)", *SELECTIONS]


def calls_of(client: Client) -> dict[str, Callable[[str], str]]:
    """What is walked: GetJob (for scale: the cheapest call there is, one job by id),
    then each selection page by page."""
    some_job = client.list_jobs(JobFilter(type=JOB_TYPE), page_size=1).jobs[0].id
    return {
        "GetJob (for scale)": lambda _: client.get(some_job).id,
        **{name: list_pages(client, selection) for name, selection in SELECTIONS.items()},
    }


def instructions(
    trees: list[Path], redis_url: str, work: Path, *, name: str, pages: int, warmup: int, gzip: set[Path]
) -> None:
    """Per tree: the server's instructions per call of `name` under cachegrind."""
    for tree in trees:
        counts = []
        for count in (warmup, warmup + pages):
            out = work / f"cachegrind-{len(counts)}.out"
            valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
            with (
                server_under(valgrind, tree, redis_url, work / "server.log") as (url, _),
                SyncClient(url, timeout_s=120, gzip=tree in gzip) as client,
            ):
                call = calls_of(client)[name]
                token = ""
                for _ in range(count):
                    token = call(token)
            counts.append(cachegrind_instructions(out))
        per_call = (counts[1] - counts[0]) / pages
        print(f"{tree} {name}: {per_call:,.0f} instructions per call", flush=True)


def redis_instructions(
    trees: list[Path], redis: RedisServer, work: Path, *, name: str, pages: int, warmup: int, gzip: set[Path]
) -> None:
    """Per tree: Redis' instructions per call of `name`, Redis running under callgrind."""
    assert redis.process is not None
    pid = str(redis.process.pid)
    for i, tree in enumerate(trees):
        with (
            server_under([], tree, redis.url, work / f"server-{i}.log") as (url, _),
            SyncClient(url, timeout_s=120, gzip=tree in gzip) as client,
        ):
            call = calls_of(client)[name]
            token = ""
            for _ in range(warmup):
                token = call(token)
            control(["--instr=on"], pid)
            control(["--zero"], pid)
            for _ in range(pages):
                token = call(token)
            before = set(work.glob("redis.out*"))
            control(["--dump"], pid)
            control(["--instr=off"], pid)
            [dump] = set(work.glob("redis.out*")) - before
        per_call = _callgrind_total(dump) / pages
        print(f"{tree} {name}: Redis {per_call:,.0f} instructions per call", flush=True)


def control(command: list[str], pid: str) -> None:
    subprocess.run(["callgrind_control", *command, pid], check=True, capture_output=True, timeout=60)


def _callgrind_total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {dump}")


@contextlib.contextmanager
def redis_server_of(work: Path, *, under_callgrind: bool) -> Iterator[RedisServer]:
    """The bench's Redis, run by callgrind (its dumps in `work`, redis.out.N) if asked."""
    binary = None
    if under_callgrind:
        wrapper = work / "redis-under-callgrind"
        real = shutil.which("redis-server") or "redis-server"
        out = work / "redis.out"
        # Counting from the first call only: loading the jobs runs at a fraction of the cost.
        valgrind = f"valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={out}"
        wrapper.write_text(f'#!/bin/sh\nexec {valgrind} {real} "$@"\n')
        wrapper.chmod(0o755)
        binary = str(wrapper)
    server = RedisServer(work, binary=binary)
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def server_under(wrapper: list[str], tree: Path, redis_url: str, log: Path) -> Iterator[tuple[str, int]]:
    """A `jobqueue server` of `tree`'s code, run by `wrapper`, until it is stopped: its URL
    and process id."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(tree), JOBQUEUE_REDIS_URL=redis_url)
    command = [*wrapper, sys.executable, "-m", "jobqueue.cli", "server", "--server", "hypercorn"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], cwd=tree, env=env, stdout=out, stderr=out
        )
    try:
        _wait_listening(port, process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--completed", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--trees", type=Path, nargs="+", metavar="TREE", help="time these trees, side by side"
    )
    parser.add_argument("--instructions", type=Path, nargs="+", metavar="TREE", help="count, in these trees")
    parser.add_argument(
        "--redis-instructions", type=Path, nargs="+", metavar="TREE", help="count Redis', in these trees"
    )
    parser.add_argument("--warmup", type=int, default=30, help="--instructions: pages before counting")
    parser.add_argument("--call", default="pending, newest first", choices=calls_names())
    parser.add_argument("--gzip", action="store_true", help="the clients ask for gzip (the default before)")
    parser.add_argument(
        "--server", choices=("hypercorn", "h2corn"), default="hypercorn", help="the ASGI server"
    )
    parser.add_argument(
        "--client",
        nargs="+",
        choices=("sync", "socket"),
        default=["sync"],
        help="through SyncClient and/or bench/socket_client.py (one blocking socket)",
    )
    parser.add_argument(
        "--gzip-trees",
        type=Path,
        nargs="+",
        default=[],
        metavar="TREE",
        help="these trees' clients do",
    )
    args = parser.parse_args()
    gzip = {tree.resolve() for tree in args.gzip_trees}
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server_of(Path(tmp), under_callgrind=bool(args.redis_instructions)) as redis_server,
    ):
        loading = asyncio.run(load(redis_server.url, args.jobs, args.completed))
        print(json.dumps({"jobs": args.jobs, **loading}), flush=True)
        if args.instructions:
            instructions(
                [tree.resolve() for tree in args.instructions],
                redis_server.url,
                Path(tmp),
                name=args.call,
                pages=args.pages,
                warmup=args.warmup,
                gzip=set(map(Path.resolve, args.instructions)) if args.gzip else gzip,
            )
            return 0
        if args.redis_instructions:
            redis_instructions(
                [tree.resolve() for tree in args.redis_instructions],
                redis_server,
                Path(tmp),
                name=args.call,
                pages=args.pages,
                warmup=args.warmup,
                gzip=set(map(Path.resolve, args.redis_instructions)) if args.gzip else gzip,
            )
            return 0
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(Redis.from_url(redis_server.url))
            servers: dict[str, tuple[dict[str, Callable[[str], str]], int]] = {}
            for i, tree in enumerate(args.trees or [None]):
                log = Path(tmp) / f"server-{i}.log"
                if tree is None:
                    url, process = stack.enter_context(
                        jobqueue_server_process(redis_server.url, log, server=args.server)
                    )
                    label, pid = "", process.pid
                else:
                    url, pid = stack.enter_context(server_under([], tree, redis_server.url, log))
                    label = f"{tree} "
                gzipping = args.gzip or (tree is not None and tree.resolve() in gzip)
                for kind in args.client:
                    client: Client = SyncClient(url, gzip=gzipping) if kind == "sync" else SocketClient(url)
                    named = f"{label}{kind} client: " if len(args.client) > 1 else label
                    servers[named] = (calls_of(stack.enter_context(client)), pid)
            for calls, pid in servers.values():
                walk(redis, pid, calls["pending, newest first"], calls=20)  # warm up
            results: dict[str, list[Walk]] = {}
            for run in range(args.runs):
                for name in calls_names():
                    # With two trees, each walks first in every other run.
                    for label, (calls, pid) in list(servers.items())[:: -1 if run % 2 else 1]:
                        done = walk(redis, pid, calls[name], calls=args.pages)
                        results.setdefault(f"{label}{name}", []).append(done)
                        print(f"run {run + 1} {label}{name}: {summary([done])}", flush=True)
            for name, walks in sorted(results.items()):
                print(f"median of {args.runs} runs, {name}: {summary(walks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
