"""What the edge costs a Connect call, counted rather than timed (so the same on a
loaded machine): the Python frames entered in the edge's modules (the ASGI layers
around connectrpc's apps, and their hooks) per unary Connect-JSON EnqueueJob, the
app driven in-process as Hypercorn drives it over HTTP/2. The driver is
bench/edge_ab.py's `app-calls` measure; docs/performance.md has its figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

from .conftest import ROOT

# 15 when this was written (23 before the hooks' cheapest notes were made inline,
# edgecost); a layer per concern, each wrapping receive and send, cost 42
# (bb9b222, before the edge's bounds, 9).
EDGE_FRAMES_PER_CALL = 17


def test_a_connect_call_enters_few_frames_of_the_edge(redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBQUEUE_REDIS_URL": redis_url}
    env["JOBQUEUE_PREFIX"] = f"edge-cost-{uuid.uuid4().hex[:8]}"
    ran = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "edge_ab.py"), "--app-calls-child", "320", "64"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = re.search(r"\(([\d.]+) in the edge's modules\)", ran.stdout)
    assert found is not None, ran.stdout
    assert 0 < float(found[1]) <= EDGE_FRAMES_PER_CALL, ran.stdout


def test_the_edge_off_bench_measures_cpu_per_call_of_json_and_binary_calls() -> None:
    """bench/edge_off.py's `cpu` measure (tiny sizes): both servers answer every
    Connect JSON and binary call over HTTP/1.1 and h2c (it fails on any other
    status), and each load gets its CPU time per call and a ratio with its
    interval. Numbers are not checked here."""
    ran = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "edge_off.py"), "--calls", "enqueue,get",
            "--codecs", "json,proto", "--pairs", "2", "--requests", "40",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    for method in ("EnqueueJob", "GetJob"):
        for codec in ("json", "proto"):
            for protocol in ("h1", "h2c"):
                line = re.search(
                    rf"^{method} {codec} {protocol}: server CPU per call, "
                    r"medians bare ([\d,]+) µs, edge ([\d,]+) µs: "
                    r"edge/bare [\d.]+; pairs' ratios median [\d.]+, 95% bootstrap [\d.]+-[\d.]+",
                    ran.stdout,
                    re.MULTILINE,
                )
                assert line is not None, ran.stdout
                assert int(line[1].replace(",", "")) > 0 and int(line[2].replace(",", "")) > 0, ran.stdout
