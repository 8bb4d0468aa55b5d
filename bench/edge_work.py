#!/usr/bin/env python3
"""The edge's own work per call (edge.py's `Edge`), in-process, without a server.

    python bench/edge_work.py [--measure instructions|time] [--calls N] [--tree PATH]

A unary call as Hypercorn drives it over HTTP/2 (in a task of its own, the whole
body in one message, then the answer's start and its one body), served by a trivial app that reads
the body and answers, once through `Edge` as the server builds it and once
through a layer that only awaits the same app: the difference is what `Edge`
does per call (its receive and send wrappers, slow.py's `TimedCall`, drain.py's
`UnreadBody`, the refusal and sizing checks), free of the rest of the server's
work and of the machine's load.

- `instructions` (default): each side under valgrind (cachegrind, no cache
  simulation), once with a warm-up only and once with `--calls` more: the
  difference over `--calls` is its instructions per call.
- `time`: both sides in one process, alternating, seven rounds of `--calls`:
  the medians of ns per call (on a loaded machine, only a rough figure).

`--tree`: the checkout whose jobqueue is measured (an older commit's, to compare
before and after a change). Bounded: every child has a timeout; no network.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TREE = Path(__file__).resolve().parent.parent
CHILD = "--child"
WARMUP = 500
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
ANSWER = {"type": "http.response.body", "body": b'{"job":{"id":"x"}}', "more_body": False}
REQUEST = {"type": "http.request", "body": b'{"type":"bench","payload":"bm9vcA=="}', "more_body": False}
SCOPE = {"type": "http", "http_version": "2", "method": "POST", "path": "/", "headers": []}


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(START)
    await send(ANSWER)


class _Awaiting:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def _receive() -> Any:
    return REQUEST


async def _send(message: Any) -> None:
    pass


def _sides() -> dict[str, Any]:
    from jobqueue.server.edge import Edge  # noqa: PLC0415 - the tree's, by PYTHONPATH
    from jobqueue.server.refusals import ExplainedRefusals  # noqa: PLC0415
    from jobqueue.server.slow import SlowClientTimeouts  # noqa: PLC0415

    slow = SlowClientTimeouts(body_idle_s=10.0, body_total_s=30.0, send_s=10.0)
    refusals = ExplainedRefusals(_app, max_payload_bytes=1 << 20)
    return {"awaiting": _Awaiting(_app), "edge": Edge(_app, slow, refusals)}


async def _calls(app: Any, count: int) -> None:
    for _ in range(count):  # a task per call, as the server runs each request (its own context)
        await asyncio.create_task(app(SCOPE, _receive, _send))


def _child(side: str, count: int) -> None:
    app = _sides()[side]

    async def run() -> None:
        await _calls(app, WARMUP)
        await _calls(app, count)

    asyncio.run(run())


def _instructions(tree: Path, calls: int) -> dict[str, float]:
    per_call = {}
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as work:
        for side in ("awaiting", "edge"):
            counts = []
            for count in (0, calls):
                out = Path(work, f"{side}-{count}.out")
                command = [
                    "valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
                    sys.executable, __file__, CHILD, side, str(count),
                ]  # fmt: skip
                subprocess.run(command, env=env, capture_output=True, timeout=900, check=True)
                summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
                counts.append(int(summary.split()[1]))
            per_call[side] = (counts[1] - counts[0]) / calls
    return per_call


def _time(calls: int) -> dict[str, float]:
    sides = _sides()
    rounds: dict[str, list[float]] = {side: [] for side in sides}

    async def run() -> None:
        for _ in range(7):
            for side, app in sides.items():
                started = time.perf_counter()
                await _calls(app, calls)
                rounds[side].append((time.perf_counter() - started) / calls * 1e9)

    asyncio.run(run())
    return {side: statistics.median(values) for side, values in rounds.items()}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == CHILD:
        _child(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measure", choices=("instructions", "time"), default="instructions")
    parser.add_argument("--calls", type=int, help="calls per run (instructions: 10000; time: 50000)")
    parser.add_argument("--tree", type=Path, default=TREE, help="the checkout whose edge is measured")
    args = parser.parse_args()
    if args.measure == "instructions":
        figures = _instructions(args.tree, args.calls or 10_000)
        unit = "instructions"
    else:
        sys.path.insert(0, str(args.tree))
        figures = _time(args.calls or 50_000)
        unit = "ns"
    awaiting, edge = figures["awaiting"], figures["edge"]
    print(
        f"per call: awaiting layer {awaiting:,.0f} {unit}, Edge {edge:,.0f} {unit}: "
        f"Edge's work {edge - awaiting:,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
