#!/usr/bin/env python3
"""What the server's edge costs per Connect-JSON call: two source trees, side by side.

    python bench/edge_ab.py TREE_A TREE_B
        [--measure time|instructions|calls|app-calls|app-instructions]
        [--pairs 8] [--requests N] [--warmup N] [--repeats 2]

Each tree (a checkout, e.g. a `git worktree` of an older commit) runs its own
`jobqueue server` (Hypercorn, h2c) on loopback, with this interpreter and the
tree first on PYTHONPATH, against one private Redis. The load is h2load's unary
Connect-JSON `EnqueueJob` (4 connections x 16 streams when timed; 1 x 16 when
counted). Both trees' servers run on this checkout's virtualenv.

- `time` (default): alternating pairs (A B, B A, ...), Redis flushed before each
  run, after one warm-up run per side; prints each rate, the medians, B/A, and in
  how many pairs B was faster. Noisy on a shared machine: run it when the load is low.
- `instructions`: each server under valgrind (cachegrind, no cache simulation),
  once with the warm-up only and once with the warm-up and N more calls; the
  difference over N is the instructions per call, start-up and shutdown
  excluded. The machine's speed and load do not move it.
- `calls`: the same, with the server under cProfile: Python function calls per
  call. Hypercorn's and h2's share moves from run to run (how requests batch).
- `app-calls`: the app alone, without an HTTP server: `jobqueue.server.asgi.build()`
  driven in-process as Hypercorn drives it over HTTP/2 (16 calls at a time), with
  a sys.setprofile counter of Python frames entered (a call, or a coroutine
  resumed) and of built-in calls, in all and in the edge's modules (EDGE_MODULES:
  the ASGI layers around connectrpc's apps, and their hooks).
- `app-instructions`: the app alone, driven so (no counter), under valgrind:
  instructions per call, as `instructions` computes them.

Bounded: every wait has a timeout; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

HOST = "127.0.0.1"
PATH = "/mpataki.jobqueue.v1.JobService/EnqueueJob"
BODY = b'{"type":"bench","payload":"bm9vcA=="}'
# jobqueue/server/'s ASGI layers around connectrpc's apps, and their hooks.
EDGE_MODULES = frozenset({
    "app.py", "cors.py", "drain.py", "edge.py", "grpc_trailers.py", "grpc_web_text.py",
    "quiet.py", "refusals.py", "router.py", "slow.py", "streams.py",
})  # fmt: skip
START_TIMEOUT_S = 300.0  # a server under valgrind takes a while to import
STOP_TIMEOUT_S = 300.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument(
        "--measure",
        choices=("time", "instructions", "calls", "app-calls", "app-instructions"),
        default="time",
    )
    parser.add_argument("--pairs", type=int, default=8, help="time: alternating pairs")
    parser.add_argument("--requests", type=int, help="calls per run (time: 20000; else 2000)")
    parser.add_argument("--warmup", type=int, default=500, help="instructions, calls: calls before counting")
    parser.add_argument("--repeats", type=int, default=2, help="instructions, calls: runs per tree")
    args = parser.parse_args(argv)
    trees = {_label(args.tree_a, "A"): args.tree_a.resolve(), _label(args.tree_b, "B"): args.tree_b.resolve()}
    for tree in trees.values():
        if not (tree / "jobqueue" / "server").is_dir():
            parser.error(f"{tree} is not a jobqueue checkout")
    # This checkout's, imported here: a child counting calls imports its tree's jobqueue.
    from jobqueue.redis_server import RedisServer  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="edge_ab."))
    body = work / "body.json"
    body.write_bytes(BODY)
    with RedisServer(work / "redis") as redis_server:
        url = redis_server.url
        if args.measure == "time":
            return _time(trees, url, body, work, pairs=args.pairs, requests=args.requests or 20000)
        if args.measure == "app-calls":
            return _app_calls(trees, url, requests=args.requests or 2000, warmup=args.warmup)
        if args.measure == "app-instructions":
            return _app_instructions(
                trees, url, work, requests=args.requests or 2000, warmup=args.warmup, repeats=args.repeats
            )
        return _count(
            trees, url, body, work,
            measure=args.measure, requests=args.requests or 2000, warmup=args.warmup, repeats=args.repeats,
        )  # fmt: skip


def _label(tree: Path, fallback: str) -> str:
    return tree.resolve().name or fallback


def _time(trees: dict[str, Path], url: str, body: Path, work: Path, *, pairs: int, requests: int) -> int:
    (a, tree_a), (b, tree_b) = trees.items()
    rates: dict[str, list[float]] = {a: [], b: []}
    client = redis.Redis.from_url(url)
    with _server(tree_a, url, work, a) as port_a, _server(tree_b, url, work, b) as port_b:
        ports = {a: port_a, b: port_b}
        for label in (a, b):
            _h2load(ports[label], body, requests)
        for pair in range(pairs):
            for label in (a, b) if pair % 2 == 0 else (b, a):
                client.flushdb()
                rate = _h2load(ports[label], body, requests)
                rates[label].append(rate)
                print(f"pair {pair + 1} {label}: {rate:,.0f} req/s", flush=True)
    client.close()
    median_a, median_b = statistics.median(rates[a]), statistics.median(rates[b])
    faster = sum(rb > ra for ra, rb in zip(rates[a], rates[b], strict=True))
    print(f"{a}: median {median_a:,.0f} req/s {rates[a]}")
    print(f"{b}: median {median_b:,.0f} req/s {rates[b]}")
    print(f"{b}/{a} {median_b / median_a:.3f}; {b} faster in {faster} of {pairs} pairs")
    return 0


def _count(
    trees: dict[str, Path],
    url: str,
    body: Path,
    work: Path,
    *,
    measure: str,
    requests: int,
    warmup: int,
    repeats: int,
) -> int:
    per_call: dict[str, list[float]] = {}
    for label, tree in trees.items():
        for repeat in range(repeats):
            base = _counted_run(
                tree, url, body, work, measure=measure, name=f"{label}-{repeat}-w", loads=[warmup]
            )
            total = _counted_run(
                tree, url, body, work, measure=measure, name=f"{label}-{repeat}-n", loads=[warmup, requests]
            )
            value = (total - base) / requests
            per_call.setdefault(label, []).append(value)
            print(
                f"{label} run {repeat + 1}: {value:,.0f} {measure} per call ({base:,} / {total:,})",
                flush=True,
            )
    _print_medians(per_call, measure)
    return 0


def _print_medians(per_call: dict[str, list[float]], measure: str) -> None:
    for label, values in per_call.items():
        runs = [round(value) for value in values]
        print(f"{label}: median {statistics.median(values):,.0f} {measure} per call {runs}")
    (a, values_a), (b, values_b) = per_call.items()
    print(f"{b}/{a} {statistics.median(values_b) / statistics.median(values_a):.3f}")


def _counted_run(
    tree: Path, url: str, body: Path, work: Path, *, measure: str, name: str, loads: list[int]
) -> int:
    """Runs a server under the counter, puts `loads` through it, stops it; the count."""
    out = work / f"{name}.out"
    if measure == "instructions":
        wrapper = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
        python = [*wrapper, sys.executable]
    else:
        python = [sys.executable, "-m", "cProfile", "-o", str(out)]
    with _server(tree, url, work, name, python=python) as port:
        for load in loads:
            _h2load(port, body, load, connections=1, streams=16)
    if measure == "instructions":
        return _instructions(out)
    return int(pstats.Stats(str(out)).total_calls)  # type: ignore[attr-defined]


def _instructions(cachegrind_out: Path) -> int:
    for line in cachegrind_out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {cachegrind_out}")


def _app_calls(trees: dict[str, Path], url: str, *, requests: int, warmup: int) -> int:
    for label, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=str(tree), JOBQUEUE_REDIS_URL=url, JOBQUEUE_PREFIX=label)
        command = [sys.executable, __file__, APP_CALLS_CHILD, str(requests), str(warmup)]
        out = subprocess.run(
            command, check=False, cwd=tree, env=env, capture_output=True, text=True, timeout=600
        )
        if out.returncode != 0:
            raise RuntimeError(f"{label}: {out.stderr}")
        print(f"{label}: {out.stdout.strip()}", flush=True)
    return 0


def _app_instructions(
    trees: dict[str, Path], url: str, work: Path, *, requests: int, warmup: int, repeats: int
) -> int:
    per_call: dict[str, list[float]] = {}
    for label, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=str(tree), JOBQUEUE_REDIS_URL=url, JOBQUEUE_PREFIX=label)
        for repeat in range(repeats):
            counts = []
            for count in (0, requests):
                out = work / f"app-{label}-{repeat}-{count}.out"
                valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
                command = [
                    *valgrind,
                    sys.executable,
                    __file__,
                    APP_CALLS_CHILD,
                    str(count),
                    str(warmup),
                    "uncounted",
                ]
                subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=1800, check=True)
                counts.append(_instructions(out))
            value = (counts[1] - counts[0]) / requests
            per_call.setdefault(label, []).append(value)
            print(f"{label} run {repeat + 1}: {value:,.0f} instructions per call", flush=True)
    _print_medians(per_call, "instructions")
    return 0


APP_CALLS_CHILD = "--app-calls-child"


def _count_app_calls(requests: int, warmup: int, *, counted: bool = True) -> None:
    """In the child: the app's calls per request (see `app-calls` above); with
    `counted` false, only the calls (for valgrind to count their instructions)."""
    import asyncio  # noqa: PLC0415

    from jobqueue.server.asgi import build  # noqa: PLC0415 - the tree's, by PYTHONPATH

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "2",
        "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
        "root_path": "", "client": (HOST, 40000), "server": (HOST, 8080),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        "extensions": {"http.response.trailers": {}},
    }  # fmt: skip

    async def calls(app: Any, count: int) -> None:
        for start in range(0, count, 16):
            await asyncio.gather(*(asgi_call(app, scope, BODY) for _ in range(min(16, count - start))))

    counts = {"call": 0, "c_call": 0, "edge": 0}
    server = str(Path("jobqueue", "server"))

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            counts["call"] += 1
            path = Path(frame.f_code.co_filename)
            if path.name in EDGE_MODULES and str(path.parent).endswith(server):
                counts["edge"] += 1
        elif event == "c_call":
            counts["c_call"] += 1

    async def run() -> None:
        app = build()
        lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        started = asyncio.Event()

        async def lifespan_send(message: dict[str, str]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, lifespan_send))
        await asyncio.wait_for(started.wait(), 30)
        await calls(app, warmup)
        if counted:
            sys.setprofile(profile)
        await calls(app, requests)
        sys.setprofile(None)
        await lifespan.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(life, 30)

    asyncio.run(run())
    if not counted:
        return
    print(
        f"per call: {counts['call'] / requests:,.1f} Python frames entered "
        f"({counts['edge'] / requests:,.1f} in the edge's modules), "
        f"{counts['c_call'] / requests:,.1f} built-in calls"
    )


async def asgi_call(app: Any, scope: dict[str, Any], body: bytes) -> None:
    """One request to an ASGI app in-process, as an HTTP server drives it: the body in
    one message, then a disconnect once answered; a RuntimeError unless it is a 200."""
    import asyncio  # noqa: PLC0415

    answered = asyncio.Event()
    received = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            answered.set()

    await app(dict(scope), receive, send)
    if status != 200:
        raise RuntimeError(f"status {status}")


@contextlib.contextmanager
def _server(tree: Path, url: str, work: Path, name: str, python: list[str] | None = None) -> Iterator[int]:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(tree), JOBQUEUE_REDIS_URL=url, JOBQUEUE_PREFIX=name)
    command = [*(python or [sys.executable]), "-m", "jobqueue.cli", "server", "--server", "hypercorn"]
    with running([*command, "--host", HOST, "--port", str(port)], tree, env, port, work / f"{name}.log"):
        yield port


@contextlib.contextmanager
def running(
    command: list[str], cwd: Path, env: dict[str, str], port: int, log: Path, *, check_exit: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a server's `command` (its output to `log`) until it listens on `port`;
    stops it with SIGTERM at the end (with `check_exit`, it must then exit 0)."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"the server did not stop; see {log}") from None
    if check_exit and process.returncode != 0:
        raise RuntimeError(f"the server exited with {process.returncode}; see {log}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {START_TIMEOUT_S:g} s")


def _h2load(
    port: int,
    body: Path,
    requests: int,
    *,
    connections: int = 4,
    streams: int = 16,
    path: str = PATH,
    content_type: str = "application/json",
) -> float:
    """Runs h2load (h2c); the rate in requests per second. Every call must succeed."""
    command = [
        "h2load", "-n", str(requests), "-c", str(connections), "-m", str(streams),
        "-d", str(body), "-H", f"content-type: {content_type}", f"http://{HOST}:{port}{path}",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True).stdout
    lines = out.splitlines()
    finished = next(line for line in lines if line.startswith("finished in"))
    counts = next(line for line in lines if line.startswith("requests:"))
    succeeded = int(counts.split(",")[3].split()[0])
    status = next(line for line in lines if line.startswith("status codes:"))
    if succeeded != requests or not status.startswith(f"status codes: {requests} 2xx"):
        raise RuntimeError(f"not every call succeeded: {counts}; {status}")
    return float(finished.split(",")[1].split()[0])


if __name__ == "__main__":
    if sys.argv[1:2] == [APP_CALLS_CHILD]:
        _count_app_calls(int(sys.argv[2]), int(sys.argv[3]), counted=sys.argv[4:5] != ["uncounted"])
    else:
        sys.exit(main())
