#!/usr/bin/env python3
"""The drain with the worker's metrics off and on, in alternating pairs.

    python bench/metrics_drain.py [--pairs 6] [--jobs 40000] [--option metrics|sync|progress]

Starts a Redis of its own (no persistence), then runs `bench/drain_once.py`
2 x PAIRS times on it, alternating without and with `--metrics` (the worker
serving its Prometheus metrics, which count every job), the order flipped from
one pair to the next. `--option sync` compares a sync handler (the worker's thread
pool) with the async one instead; `--option progress`, a handler that calls
`job.set_progress` 100 times a job with one that does not. Prints each drain, then
the medians and their ratio: this machine is noisy, so only medians of several
pairs say anything. Loopback only; every drain bounded in time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from jobqueue.redis_server import RedisServer  # noqa: E402

RATE = re.compile(r"drain (\d+) jobs/s(?:, worker CPU (\d+) µs/job)?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument(
        "--option", choices=("metrics", "sync", "progress"), default="metrics", help="of drain_once.py"
    )
    parser.add_argument("--value", nargs="*", default=[], help="given to the option (progress: CALLS)")
    args = parser.parse_args()
    name = args.option
    runs: dict[bool, list[tuple[int, int]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis")
        server.start()
        try:
            for pair in range(args.pairs):
                for metrics in (False, True) if pair % 2 == 0 else (True, False):
                    command = [
                        sys.executable,
                        str(HERE / "drain_once.py"),
                        server.url,
                        "--jobs",
                        str(args.jobs),
                    ]
                    if metrics:
                        command += [f"--{name}", *args.value]
                    out = subprocess.run(
                        command, capture_output=True, text=True, timeout=600, check=True
                    ).stdout
                    line = out.strip().splitlines()[-1]
                    match = RATE.match(line)
                    if match is None:
                        raise SystemExit(f"unexpected output: {out!r}")
                    runs[metrics].append((int(match[1]), int(match[2] or 0)))
                    print(f"pair {pair + 1} {name} {'on ' if metrics else 'off'}: {line}", flush=True)
        finally:
            server.stop()
    off, on = (statistics.median(rate for rate, _ in runs[m]) for m in (False, True))
    cpu_off, cpu_on = (statistics.median(cpu for _, cpu in runs[m]) for m in (False, True))
    pairs = list(zip(runs[True], runs[False], strict=True))
    faster = sum(a[0] > b[0] for a, b in pairs)
    ratio = statistics.median(a[0] / b[0] for a, b in pairs)
    print(
        f"{name}: median drain: off {off:.0f} jobs/s, on {on:.0f} jobs/s (on/off {on / off:.3f}, "
        f"median of the pairs' ratios {ratio:.3f}; on faster in {faster} of {args.pairs}); "
        f"worker CPU per job, median: off {cpu_off:.0f} µs, on {cpu_on:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
