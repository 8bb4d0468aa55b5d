#!/usr/bin/env python3
"""What issue 13's protections cost a Connect-JSON call: one tree's server with them and without.

    python bench/edge_off.py [--measure cpu|time|instructions] [--calls enqueue,get]
        [--codecs json,proto] [--protocols h1,h2c] [--pairs N] [--requests N]
        [--compare bare,edge] [--warmup N] [--sides bare,edge] [--tree PATH]

Two servers from this checkout (or the checkout `--tree` names: an older
commit's, to compare before and after a change), each a child process running Hypercorn on
loopback against one private Redis (a prefix each):
- `edge`: the server as `jobqueue server` runs it (`main.serve`: the app of
  `asgi.build`, Hypercorn hardened by `hypercorn_guard`);
- `bare`: the same store, handlers, interceptors (errors, auth, metrics) and
  Hypercorn configuration, built by `bare_app` below, a bench-only factory (the
  job events' observers, the scheduler and the reaper included), with
  none of the protections: no edge layer (edge.py: slow clients, drain, gone
  clients, quiet aborts, explained refusals, sized unary answers), no gRPC-only
  layers, no CORS, no streams interceptor, no `hypercorn_guard`, and a JSON codec
  without the depth scan (limits.py);
- and the edge's two halves, to tell their costs apart (`--compare` only):
  `guard`, the bare app on Hypercorn hardened by `hypercorn_guard`; `layers`,
  the edge's app (`asgi.build`) on Hypercorn as it comes; `inner`, that app
  with its outermost layer (edge.py's `Edge`) replaced by one that only awaits
  the next; `untimed`, the edge without slow.py's timing of reads and sends.

The loads: unary Connect `EnqueueJob` and `GetJob` (of one job), JSON or binary
(`--codecs`), over h2c (h2load) and over HTTP/1.1 keep-alive (`h1_load` below, an
asyncio client: h2load counts Hypercorn's status line without a reason phrase as a
failure over HTTP/1.1). Every call must answer 200.

- `cpu` (default): the two servers `--compare` names (bare,edge; bare,bare for an
  A/A check of the method) up; per load, one warm-up run each, then `--pairs`
  rounds, Redis flushed before each: both servers loaded at once, each by its own
  client with the same calls (the order they start in swapped every round; each
  server pinned to a CPU of its own, the CPUs swapped every other round), and
  each server's CPU time read before its client starts and when it is done: its
  CPU time per call. That is user and kernel time of the server's process
  (`cpu_seconds`: what utime + stime count, in ns). The server is one process
  whose CPU limits the throughput (Redis and the client beside it), so its CPU
  time per call is the inverse of its most calls/s; loaded at once, both servers
  share whatever else the machine runs meanwhile, which moves CPU time per call
  by tens of percent from one minute to the next. Per load: the medians, B/A,
  the rounds' ratios (their median, a bootstrap 95% interval of that median,
  their range). 16 streams on 4 h2c connections (h2load); 16 HTTP/1.1
  connections; the clients run on the same machine.
- `time`: the same, with the two servers loaded one after the other (A B, B A,
  ...), Redis flushed before each run: the wall-clock rates' B/A as well as CPU
  time's.
- `instructions`: each server under valgrind (cachegrind, no cache simulation):
  one run with every load's warm-up only, then per load one run with the warm-ups
  and N more calls of it; (that run - the warm-up run) / N is the instructions per
  call of that load, start-up and shutdown excluded. One connection, 16 streams
  (h2c), or 16 connections (HTTP/1.1).

Bounded: every wait has a timeout; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import redis
from edge_ab import HOST, _free_port, _h2load, _instructions, running  # bench/, this script's folder

TREE = Path(__file__).resolve().parent.parent
SERVICE = "/mpataki.jobqueue.v1.JobService/"
ENQUEUE_BODY = b'{"type":"bench","payload":"bm9vcA=="}'
CONTENT_TYPES = {"json": "application/json", "proto": "application/proto"}
SIDES = ("bare", "edge")
# Halves of the edge, to tell their costs apart: the bare app on Hypercorn hardened
# by hypercorn_guard, and the edge's app (asgi.build) on Hypercorn as it comes.
PARTS = ("guard", "layers", "inner", "untimed")
BOOTSTRAP_RESAMPLES = 4000
BLOCK = 4  # rounds: both CPU placements by both start orders (see _blocks_report)
CALL_TIMEOUT_S = 60.0  # plus 0.5 s a call: a server under valgrind on a loaded machine is slow
SERVER_CHILD = "--server-child"
GC_STATS_ENV = "EDGE_OFF_GC_STATS"
GC_STATS_LINE = "garbage collections"


def bare_app(settings: Any, streams: Any) -> Any:
    """The app without issue 13's protections (see the docstring): for this bench
    only. `asgi.build` as it is (the store, the job events' observers, metrics, the
    scheduler and the reaper), with `create_app` replaced by `_bare_create_app`."""
    from jobqueue.server import asgi  # noqa: PLC0415 - in the server's child only

    asgi.create_app = _bare_create_app  # type: ignore[assignment]
    return asgi.build(settings, streams)


def _bare_create_app(producer: Any, *, streams: Any, on_startup: Any, on_shutdown: Any, metrics: Any) -> Any:
    """`app.create_app`'s JobService and health apps and their interceptors (errors,
    auth, metrics), behind the router alone, with a JSON codec without the depth scan."""
    from connectrpc.codec import proto_binary_codec  # noqa: PLC0415

    from jobqueue._gen.grpc.health.v1.health_connect import HealthASGIApplication  # noqa: PLC0415
    from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceASGIApplication  # noqa: PLC0415
    from jobqueue.server import app as server_app  # noqa: PLC0415
    from jobqueue.server.auth import Guard  # noqa: PLC0415
    from jobqueue.server.errors import ErrorInterceptor  # noqa: PLC0415
    from jobqueue.server.health import HealthService  # noqa: PLC0415
    from jobqueue.server.limits import BoundedJSONCodec  # noqa: PLC0415
    from jobqueue.server.router import Router  # noqa: PLC0415
    from jobqueue.server.service import JobServiceHandler  # noqa: PLC0415

    class UnboundedJSONCodec(BoundedJSONCodec):
        """The server's JSON codec without its depth scan (the enum check stays: not issue 13's)."""

        def __init__(self) -> None:
            super().__init__(max_depth=sys.maxsize)

    store = producer.store
    settings = store.settings
    guard = Guard.from_settings(settings)
    errors = [ErrorInterceptor(store.outage)]
    codecs = [proto_binary_codec(), UnboundedJSONCodec()]
    read_max_bytes = settings.max_payload_bytes * 4 // 3 + server_app._ENVELOPE_BYTES
    jobs = JobServiceHandler(producer, guard, streams)
    return Router(
        [
            JobServiceASGIApplication(
                jobs,
                interceptors=[metrics.rpcs, *guard.jobs(errors)],
                read_max_bytes=read_max_bytes,
                codecs=codecs,
            ),
            HealthASGIApplication(
                HealthService(store.redis), interceptors=[metrics.rpcs, *errors], codecs=codecs
            ),
        ],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )


class _Awaiting:
    """An app that awaits `app` (the edge's frame, without its work): Hypercorn takes
    an app whose call is not a coroutine function for a WSGI one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class _Untimed:
    """slow.py's TimedCall as the edge uses it, timing nothing (the `untimed` side):
    its methods replace TimedCall's (the edge's exchange is a TimedCall)."""

    __slots__ = ("body_done", "deadline")

    def __init__(self, bounds: Any) -> None:
        self.body_done = False
        self.deadline: float | None = None

    def reading_body(self) -> float:
        return 0.0

    def sending(self) -> None:
        pass

    def ours(self) -> bool:
        return False


def _serve_child(side: str) -> None:
    """In the server's child: serves `side` until SIGTERM (settings from the environment)."""
    from hypercorn.asyncio import serve as hypercorn_serve  # noqa: PLC0415

    from jobqueue.server import asgi, hypercorn_guard, slow  # noqa: PLC0415
    from jobqueue.server import main as server_main  # noqa: PLC0415
    from jobqueue.server.streams import Streams  # noqa: PLC0415
    from jobqueue.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env()
    if os.environ.get(GC_STATS_ENV):
        _count_collections()

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        if side == "untimed":
            for name in ("__init__", "reading_body", "sending", "ours"):
                setattr(slow.TimedCall, name, getattr(_Untimed, name))
        if side in {"edge", "untimed"}:
            await server_main.serve(settings, stop)
            return
        if side == "inner":
            create_app = asgi.create_app
            asgi.create_app = lambda *args, **kwargs: _Awaiting(create_app(*args, **kwargs).app)  # type: ignore[assignment]
        app = (
            asgi.build(settings, Streams()) if side in {"layers", "inner"} else bare_app(settings, Streams())
        )
        if side == "guard":
            hypercorn_guard.install()
        await hypercorn_serve(app, server_main.hypercorn_config(settings), shutdown_trigger=stop.wait)

    asyncio.run(run())


def _count_collections() -> None:
    """In the server's child: its garbage collections per generation and the CPU
    time they took, printed to its log at exit (`--gc-stats`)."""
    import atexit  # noqa: PLC0415
    import gc  # noqa: PLC0415

    counts = [0, 0, 0]
    cpu = [0.0, 0.0, 0.0]
    started = [0.0]

    def noted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        counts[info["generation"]] += 1
        cpu[info["generation"]] += time.thread_time() - started[0]

    def report() -> None:
        print(
            f"{GC_STATS_LINE} per generation {counts}, their CPU {[round(s * 1e3) for s in cpu]} ms, "
            f"of the process' {time.process_time() * 1e3:,.0f} ms; {len(gc.get_objects()):,} objects tracked",
            flush=True,
        )

    gc.callbacks.append(noted)
    atexit.register(report)


class Server(NamedTuple):
    port: int
    pid: int


@contextlib.contextmanager
def _server(side: str, url: str, work: Path, name: str, *, valgrind: Path | None = None) -> Iterator[Server]:
    port = _free_port()
    env = dict(
        os.environ, PYTHONPATH=str(TREE), JOBQUEUE_REDIS_URL=url, JOBQUEUE_PREFIX=name,
        JOBQUEUE_HOST=HOST, JOBQUEUE_PORT=str(port),
    )  # fmt: skip
    wrapper = []
    if valgrind is not None:
        wrapper = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={valgrind}"]
    command = [*wrapper, sys.executable, __file__, SERVER_CHILD, side]
    with running(command, TREE, env, port, work / f"{name}.log", check_exit=True) as process:
        yield Server(port, process.pid)


def cpu_seconds(pid: int) -> float:
    """The process' CPU time so far, user and kernel, summed over its threads: the
    time each has run (/proc/PID/task/TID/schedstat's first field, in ns). The same
    total as /proc/PID/stat's utime + stime, which count in clock ticks (10 ms);
    a thread that ended is missing from the sum (the server runs one thread)."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total_ns += int((task / "schedstat").read_text().split()[0])
    return total_ns / 1e9


def _request(port: int, method: str, body: bytes, content_type: str = CONTENT_TYPES["json"]) -> bytes:
    return (
        f"POST {SERVICE}{method} HTTP/1.1\r\nhost: {HOST}:{port}\r\n"
        f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer: its status and body (sized or chunked)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while size := int((await reader.readline()).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readline()  # the empty trailer section's end
    return status, body


async def _h1_connection(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for _ in range(count):
            writer.write(request)
            status, body = await _answer(reader)
            if status != 200:
                raise RuntimeError(f"status {status}: {body[:200]!r}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def h1_load(
    port: int,
    method: str,
    body: bytes,
    requests: int,
    *,
    connections: int = 16,
    content_type: str = "application/json",
) -> float:
    """`requests` calls over `connections` HTTP/1.1 keep-alive connections; the rate in calls/s."""
    request = _request(port, method, body, content_type)
    shares = [requests // connections + (i < requests % connections) for i in range(connections)]

    async def run() -> float:
        start = time.perf_counter()
        async with asyncio.timeout(CALL_TIMEOUT_S + requests * 0.5):
            await asyncio.gather(*(_h1_connection(port, request, n) for n in shares if n))
        return requests / (time.perf_counter() - start)

    return asyncio.run(run())


def _job_id(port: int) -> str:
    """A new job's id (for GetJob's loads)."""

    async def enqueue() -> str:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(_request(port, "EnqueueJob", ENQUEUE_BODY))
        status, body = await _answer(reader)
        writer.close()
        if status != 200:
            raise RuntimeError(f"EnqueueJob: status {status}")
        return str(json.loads(body)["job"]["id"])

    return asyncio.run(asyncio.wait_for(enqueue(), CALL_TIMEOUT_S))


class Load:
    """One of the loads: a method, its codec (JSON or binary), a protocol."""

    def __init__(self, call: str, codec: str, protocol: str, work: Path) -> None:
        self.call = call
        self.codec = codec
        self.protocol = protocol
        self.method = {"enqueue": "EnqueueJob", "get": "GetJob"}[call]
        self.content_type = CONTENT_TYPES[codec]
        self.name = f"{self.method} {codec} {protocol}"
        self.work = work

    def body(self, port: int) -> bytes:
        from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb  # noqa: PLC0415

        if self.call == "enqueue":
            return (
                ENQUEUE_BODY
                if self.codec == "json"
                else pb.EnqueueJobRequest(type="bench", payload=b"noop").to_binary()
            )
        job_id = _job_id(port)
        return (
            b'{"id":"%s"}' % job_id.encode()
            if self.codec == "json"
            else pb.GetJobRequest(id=job_id).to_binary()
        )

    def run(self, port: int, requests: int, *, counted: bool) -> float:
        return self.send(port, self.body(port), requests, counted=counted)

    def send(self, port: int, body: bytes, requests: int, *, counted: bool) -> float:
        """`requests` calls with `body`; the rate in calls/s."""
        if self.protocol == "h1":
            return h1_load(port, self.method, body, requests, content_type=self.content_type)
        body_file = self.work / f"{self.call}-{port}.{self.codec}"  # a file per server: both may run at once
        body_file.write_bytes(body)
        connections = 1 if counted else 4
        return _h2load(
            port, body_file, requests, connections=connections, streams=16,
            path=SERVICE + self.method, content_type=self.content_type,
        )  # fmt: skip


def _labels(compare: list[str]) -> list[str]:
    """The two servers' names: their sides, the second one marked when both are one side."""
    first, second = compare
    return [first, second if second != first else f"{second}-2"]


def _paired(
    loads: list[Load], url: str, work: Path, *, compare: list[str], pairs: int, requests: int, together: bool
) -> int:
    """Each load through both servers, `pairs` times: at once (`together`) or one after the other."""
    client = redis.Redis.from_url(url)
    labels = _labels(compare)
    summary = []
    with contextlib.ExitStack() as stack:
        servers = {
            label: stack.enter_context(_server(side, url, work, label))
            for label, side in zip(labels, compare, strict=True)
        }
        for load in loads:
            rates: dict[str, list[float]] = {label: [] for label in labels}
            cpu: dict[str, list[float]] = {label: [] for label in labels}
            for label in labels:
                load.run(servers[label].port, max(requests // 4, 1), counted=False)
            for pair in range(pairs):
                order = [servers[label] for label in (labels if pair % 2 == 0 else labels[::-1])]
                if together:
                    client.flushdb()
                    _pin([servers[label] for label in labels], pair // 2)
                    runs = _together(load, order, requests)
                else:
                    runs = []
                    for server in order:
                        client.flushdb()
                        runs.append(_measured(load, server, load.body(server.port), requests))
                for label in labels:
                    rate, seconds = runs[order.index(servers[label])]
                    rates[label].append(rate)
                    cpu[label].append(seconds / requests)
            lines = _pairs_report(load.name, labels, cpu, rates)
            print("\n".join(lines), flush=True)
            summary.append(lines[0])
    client.close()
    if os.environ.get(GC_STATS_ENV):  # each server's, over the whole run (warm-ups and all loads)
        for label in labels:
            for line in (work / f"{label}.log").read_text(errors="replace").splitlines():
                if line.startswith(GC_STATS_LINE):
                    summary.append(f"{label}: {line}")
    print("\n".join(summary))
    return 0


def _pin(servers: list[Server], turn: int) -> None:
    """Each server on a CPU of its own, moved to the next CPU every `turn`: the
    scheduler otherwise keeps a busy process on one CPU, and whatever else runs on
    that CPU would weigh on one server only, round after round (the start order,
    swapped every round, does not undo that)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < len(servers):
        return
    for index, server in enumerate(servers):
        os.sched_setaffinity(server.pid, {cpus[(index + turn) % len(cpus)]})


def _measured(load: Load, server: Server, body: bytes, requests: int) -> tuple[float, float]:
    """`requests` calls of `load` to `server`: their rate, and the server's CPU seconds meanwhile."""
    before = cpu_seconds(server.pid)
    rate = load.send(server.port, body, requests, counted=False)
    return rate, cpu_seconds(server.pid) - before


def _together(load: Load, servers: list[Server], requests: int) -> list[tuple[float, float]]:
    """`_measured` for each server at once, each with its own client (a thread
    driving h2load, or an asyncio client's loop); each server's CPU is read when
    its own client is done. Both servers share whatever else the machine runs
    meanwhile, which is what makes their ratio steady."""
    bodies = [load.body(server.port) for server in servers]
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        started = [
            pool.submit(_measured, load, server, body, requests)
            for server, body in zip(servers, bodies, strict=True)
        ]
        return [future.result(timeout=CALL_TIMEOUT_S + requests * 0.5) for future in started]


def _pairs_report(
    name: str, labels: list[str], cpu: dict[str, list[float]], rates: dict[str, list[float]]
) -> list[str]:
    """A load's lines: CPU per call (the result), then the wall-clock rates and each run's figures."""
    a, b = labels
    ratios = [cpu_b / cpu_a for cpu_a, cpu_b in zip(cpu[a], cpu[b], strict=True)]
    low, high = bootstrap_interval(ratios)
    cpu_a, cpu_b = statistics.median(cpu[a]), statistics.median(cpu[b])
    rate_a, rate_b = statistics.median(rates[a]), statistics.median(rates[b])
    rate_ratios = [rate_b / rate_a for rate_a, rate_b in zip(rates[a], rates[b], strict=True)]
    return [
        f"{name}: server CPU per call, medians {a} {cpu_a * 1e6:,.0f} µs, {b} {cpu_b * 1e6:,.0f} µs: "
        f"{b}/{a} {cpu_b / cpu_a:.3f}; pairs' ratios median {statistics.median(ratios):.3f}, "
        f"95% bootstrap {low:.3f}-{high:.3f}, range {min(ratios):.3f}-{max(ratios):.3f}, "
        f"{b} costlier in {sum(r > 1 for r in ratios)} of {len(ratios)}; "
        f"{_blocks_report(ratios)}"
        f"wall-clock calls/s {b}/{a} {rate_b / rate_a:.3f} "
        f"(pairs {min(rate_ratios):.2f}-{max(rate_ratios):.2f})",
        *(f"  {label} µs/call {[round(value * 1e6) for value in cpu[label]]}" for label in labels),
        *(f"  {label} calls/s {[round(rate) for rate in rates[label]]}" for label in labels),
    ]


def _blocks_report(ratios: list[float]) -> str:
    """The ratios by block of BLOCK rounds, each block a geometric mean: a block
    holds both CPU placements and both start orders (`_paired` swaps the order
    every round, the CPUs every other round). A CPU that other work loads more
    weighs on whichever server it holds, so the rounds' ratios fall into two
    groups, one per placement, and their median lands anywhere between the two;
    within a block that weight cancels."""
    blocks = [
        math.exp(statistics.fmean(math.log(r) for r in ratios[start : start + BLOCK]))
        for start in range(0, len(ratios) - BLOCK + 1, BLOCK)
    ]
    if len(blocks) < 2:
        return ""
    low, high = bootstrap_interval(blocks)
    overall = math.exp(statistics.fmean(math.log(r) for r in ratios[: len(blocks) * BLOCK]))
    return (
        f"by blocks of {BLOCK} rounds (placements and orders balanced): "
        f"median {statistics.median(blocks):.3f}, "
        f"95% bootstrap {low:.3f}-{high:.3f}, geometric mean {overall:.3f}, over {len(blocks)} blocks; "
    )


def bootstrap_interval(values: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of `values` (a fixed seed: reruns print the same)."""
    rng = random.Random(13)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _count(loads: list[Load], url: str, work: Path, *, sides: list[str], requests: int, warmup: int) -> int:
    per_call: dict[str, dict[str, float]] = {}
    for side in sides:
        counts: dict[str, int] = {}
        for measured in [None, *loads]:
            name = f"{side}-{'warmup' if measured is None else measured.call + '-' + measured.protocol}"
            out = work / f"{name}.cachegrind"
            with _server(side, url, work, name, valgrind=out) as server:
                for load in loads:
                    load.run(server.port, warmup, counted=True)
                if measured is not None:
                    measured.run(server.port, requests, counted=True)
            counts[name] = _instructions(out)
            if measured is not None:
                value = (counts[name] - counts[f"{side}-warmup"]) / requests
                per_call.setdefault(measured.name, {})[side] = value
                print(f"{side} {measured.name}: {value:,.0f} instructions per call", flush=True)
    for name, counted in per_call.items():
        if len(counted) < len(SIDES):
            continue
        bare, edge = counted["bare"], counted["edge"]
        print(f"{name}: bare {bare / 1e3:,.0f}k, edge {edge / 1e3:,.0f}k instructions per call", end="")
        print(f"; edge/bare {edge / bare:.3f}")
    return 0


def main() -> int:
    global TREE  # noqa: PLW0603 - the servers' checkout, for the whole run
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--measure",
        choices=("cpu", "time", "instructions"),
        default="cpu",
        help="cpu and time: the same runs",
    )
    parser.add_argument("--calls", default="enqueue,get", help="enqueue, get or both")
    parser.add_argument("--codecs", default="json", help="json, proto (Connect's binary) or both")
    parser.add_argument("--protocols", default="h1,h2c", help="h1, h2c or both")
    parser.add_argument("--pairs", type=int, default=20, help="cpu, time: rounds (pairs of runs) per load")
    parser.add_argument("--requests", type=int, help="calls per run (cpu, time, instructions: 2000)")
    parser.add_argument(
        "--compare",
        default="bare,edge",
        help="cpu, time: the two servers (bare,bare: A/A; guard, layers, inner, untimed: parts of the edge)",
    )
    parser.add_argument("--warmup", type=int, default=300, help="instructions: calls of each load first")
    parser.add_argument("--sides", default="bare,edge", help="instructions: bare, edge or both")
    parser.add_argument("--tree", type=Path, default=TREE, help="the checkout whose server runs")
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="cpu, time: each server's garbage collections and their CPU time, over the whole run",
    )
    args = parser.parse_args()
    if args.gc_stats:
        os.environ[GC_STATS_ENV] = "1"  # the servers' environment is this one's (`_server`)
    TREE = args.tree.resolve()
    from jobqueue.redis_server import RedisServer  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="edge_off."))
    loads = [
        Load(call, codec, protocol, work)
        for call in args.calls.split(",")
        for codec in args.codecs.split(",")
        for protocol in args.protocols.split(",")
    ]  # fmt: skip
    compare = args.compare.split(",")
    if len(compare) != 2 or not set(compare) <= {*SIDES, *PARTS}:
        parser.error("--compare takes two of bare, edge, guard, layers, inner, untimed")
    with RedisServer(work / "redis") as redis_server:
        if args.measure != "instructions":
            return _paired(
                loads,
                redis_server.url,
                work,
                compare=compare,
                pairs=args.pairs,
                requests=args.requests or 2000,
                together=args.measure == "cpu",
            )
        sides = args.sides.split(",")
        return _count(
            loads, redis_server.url, work, sides=sides, requests=args.requests or 2000, warmup=args.warmup
        )


if __name__ == "__main__":
    if sys.argv[1:2] == [SERVER_CHILD]:
        _serve_child(sys.argv[2])
    else:
        sys.exit(main())
