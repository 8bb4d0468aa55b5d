#!/usr/bin/env python3
"""Instructions per job of a list page's per-job steps, in one tree or several
(docs/performance.md, "ListJobs: one call, part by part").

    python bench/list_decoders.py TREE [TREE...] [--calls 2000]

For each tree (a checkout, e.g. a `git worktree` of another commit) and each step,
runs the step `--calls` times and not at all, each in a Python process of that tree
under valgrind (cachegrind, no cache simulation): the difference over the calls is
the step's instructions per job, the machine's load aside. The steps, on a pending
job and on a completed one as a list reads them: `decode_listed` (the server's Job
of page.lua's values), `job_to_proto` (its message), `job_from_proto` (the client's
Job of the message). No Redis, no server.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STEPS = ("decode_listed", "job_to_proto", "job_from_proto")
KINDS = ("pending", "completed")
# page.lua's values of a job (codec.LISTED_FIELDS, then the markers), as stored by an
# enqueue, and by a run that completed on its first attempt.
_AT = b"1733100000000"
VALUES = {
    "pending": [b"1", _AT, _AT, _AT, b"0", *[None] * 7, b"0", *[None] * 6],
    "completed": [b"3", _AT, _AT, _AT, b"1", None, _AT, _AT, b"worker-1", b"3", b"30000", None, b"7"]
    + [None] * 6,
}


def child(step: str, kind: str, calls: int) -> None:
    """Runs `step` `calls` times (in the tree on PYTHONPATH)."""
    from jobqueue.store.codec import decode_listed  # noqa: PLC0415 - the tree's, as PYTHONPATH says
    from jobqueue.wire import job_from_proto, job_to_proto  # noqa: PLC0415

    values = VALUES[kind]
    job = decode_listed("0192f0e4-6b1c-7d3e-8f00-000000000001", "bench", values)
    message = job_to_proto(job)
    work = {
        "decode_listed": lambda: decode_listed("0192f0e4-6b1c-7d3e-8f00-000000000001", "bench", values),
        "job_to_proto": lambda: job_to_proto(job),
        "job_from_proto": lambda: job_from_proto(message),
    }[step]
    for _ in range(calls):
        work()


def instructions(tree: Path, step: str, kind: str, calls: int) -> int:
    """Instructions of a child process of `tree` running `step` `calls` times."""
    with tempfile.NamedTemporaryFile(suffix=".cachegrind") as out:
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            f"--cachegrind-out-file={out.name}",
            sys.executable,
            __file__,
            "--child",
            step,
            kind,
            str(calls),
        ]
        env = dict(os.environ, PYTHONPATH=str(tree))
        subprocess.run(command, check=True, cwd=tree, env=env, capture_output=True, timeout=600)
        for line in Path(out.name).read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no summary from cachegrind for {tree} {step}")


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", type=Path, nargs="+", metavar="TREE")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    for step in STEPS:
        for kind in KINDS:
            for tree in args.trees:
                spent = instructions(tree, step, kind, args.calls) - instructions(tree, step, kind, 0)
                print(f"{tree} {step}, a {kind} job: {spent / args.calls:,.0f} instructions", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
