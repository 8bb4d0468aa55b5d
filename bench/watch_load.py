#!/usr/bin/env python3
"""What watchers cost a drain: S1-style drains with 0 and N WatchJobs watchers, alternating.

    python bench/watch_load.py [--watchers 100] [--jobs 20000] [--rounds 3] [--server-nice N]
                               [--max-batch N] [--redis-url URL]

Starts a Redis of its own (or uses a loopback one) and a `jobqueue server`; in
each round it drains `--jobs` no-op jobs with `bench/drain_once.py` (one worker
process) twice: once with no watcher, once with N curl processes streaming
WatchJobs for the drained type over the Connect protocol (HTTP/1.1; curl keeps
the clients' own CPU small). The order alternates between rounds. It prints each
drain rate, the medians and their ratio, the Redis XREAD calls each watched
drain made (one reader per stream: about one per batch of changes, whatever N
is), Redis' and the server's CPU seconds, and how many bytes of events the
watchers got. With --server-nice the server runs at that niceness: on a machine
with fewer cores than Redis, the worker and the server need, the server's
fan-out (a message per event per watcher) then takes only CPU the drain leaves,
as a server on a machine of its own would. With --max-batch the watchers ask for
up to N events a message (WatchJobs' max_batch, as the Python client does).
Loopback Redis only; bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from jobqueue.redis_server import RedisServer, free_port, is_loopback_url

HERE = Path(__file__).resolve().parent
JOB_TYPE = "bench"  # drain_once.py's
WATCH_JOBS = "mpataki.jobqueue.v1.JobService/WatchJobs"
_RATE = re.compile(r"drain (\d+) jobs/s")


@contextlib.contextmanager
def server(redis_url: str, log: Path, nice: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["nice", "-n", str(nice), sys.executable, "-m", "jobqueue.cli", "server",
             "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "JOBQUEUE_REDIS_URL": redis_url}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(port, process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


@contextlib.contextmanager
def watchers(url: str, count: int, out_dir: Path, limit_s: float, max_batch: int) -> Iterator[list[Path]]:
    """`count` curl processes streaming WatchJobs for JOB_TYPE, each once it has its first message."""
    body = json.dumps({"type": JOB_TYPE, "maxBatch": max_batch}).encode()
    request = struct.pack(">BI", 0, len(body)) + body
    outputs = [out_dir / f"watcher{i}.out" for i in range(count)]
    processes = []
    try:
        for output in outputs:
            with output.open("wb") as sink:
                process = subprocess.Popen(
                    ["curl", "-sS", "-N", "--http1.1", "--max-time", str(limit_s), "--data-binary", "@-",
                     "-H", "Content-Type: application/connect+json", f"{url}/{WATCH_JOBS}"],
                    stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            assert process.stdin is not None
            process.stdin.write(request)
            process.stdin.close()
            processes.append(process)
        deadline = time.monotonic() + 30
        while not all(o.stat().st_size > 0 for o in outputs):
            if time.monotonic() > deadline:
                raise RuntimeError("watchers did not start")
            time.sleep(0.05)
        yield outputs
    finally:
        for process in processes:
            process.kill()
            process.wait()


def settle(client: redis.Redis, timeout_s: float = 120) -> None:
    """Waits until the server has let the watchers go (its hub stopped): the next drain
    starts without a server still busy with the last one's events."""
    deadline = time.monotonic() + timeout_s
    while readers(client) and time.monotonic() < deadline:
        time.sleep(0.1)


def drain(redis_url: str, jobs: int) -> float:
    ran = subprocess.run(
        [sys.executable, str(HERE / "drain_once.py"), redis_url, "--jobs", str(jobs)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    match = _RATE.search(ran.stdout)
    if match is None:
        raise RuntimeError(f"drain_once.py printed no rate: {ran.stdout} {ran.stderr}")
    return float(match[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(client: redis.Redis) -> float:
    info: dict[str, float] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def readers(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if c.get("cmd") == "xread")


def xread_calls(client: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


def run(args: argparse.Namespace, redis_url: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="watch_load-"))
    client = redis.Redis.from_url(redis_url)
    rates: dict[int, list[float]] = {0: [], args.watchers: []}
    xreads: list[int] = []
    server_cpu: dict[int, list[float]] = {0: [], args.watchers: []}
    redis_cpu: dict[int, list[float]] = {0: [], args.watchers: []}
    received: list[int] = []
    with server(redis_url, work / "server.log", args.server_nice) as (url, pid):
        for round_ in range(args.rounds):
            order = [0, args.watchers] if round_ % 2 == 0 else [args.watchers, 0]
            for count in order:
                cpu_before, redis_before = cpu_seconds(pid), redis_cpu_s(client)
                if count:
                    with watchers(url, count, work, limit_s=900, max_batch=args.max_batch) as outputs:
                        before = xread_calls(client)
                        rate = drain(redis_url, args.jobs)
                        xreads.append(xread_calls(client) - before)
                        received.append(int(statistics.median(o.stat().st_size for o in outputs)))
                    settle(client)
                else:
                    rate = drain(redis_url, args.jobs)
                server_cpu[count].append(cpu_seconds(pid) - cpu_before)
                redis_cpu[count].append(redis_cpu_s(client) - redis_before)
                rates[count].append(rate)
                print(f"round {round_ + 1}: {count:>3} watchers: drain {rate:.0f} jobs/s", flush=True)
    client.close()
    unwatched, watched = statistics.median(rates[0]), statistics.median(rates[args.watchers])
    return {
        "jobs": args.jobs,
        "watchers": args.watchers,
        "rates": {str(k): v for k, v in rates.items()},
        "median_unwatched": unwatched,
        "median_watched": watched,
        "watched_over_unwatched": round(watched / unwatched, 3),
        "xread_calls_per_watched_drain": xreads,
        "server_nice": args.server_nice,
        "max_batch": args.max_batch,
        "server_cpu_s": {str(k): [round(s, 1) for s in v] for k, v in server_cpu.items()},
        "redis_cpu_s": {str(k): [round(s, 2) for s in v] for k, v in redis_cpu.items()},
        "median_bytes_a_watcher_got": received,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-nice", type=int, default=0, help="the server's niceness (0-19)")
    parser.add_argument("--max-batch", type=int, default=0, help="events a message, at most (0: one)")
    parser.add_argument("--redis-url", help="a loopback Redis (default: one of its own)")
    args = parser.parse_args()
    if args.redis_url:
        if not is_loopback_url(args.redis_url):
            parser.error("only a loopback Redis may be targeted")
        result = run(args, args.redis_url)
    else:
        with RedisServer(Path(tempfile.mkdtemp(prefix="watch_load-redis-"))) as own:
            result = run(args, own.url)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
