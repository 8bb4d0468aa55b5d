"""Test-only crash points: the fault-injection tests kill a worker at an exact spot.

Set JOBQUEUE_CRASH_AT to a comma-separated list of point names (e.g.
`after_pop`) and the worker SIGKILLs itself the first time it reaches one.
Unset (always, in production) it costs one set lookup per point.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset({"after_pop", "after_claim", "before_finish"})
_enabled = frozenset(p.strip() for p in os.environ.get("JOBQUEUE_CRASH_AT", "").split(",") if p.strip())
if _enabled - POINTS:
    raise ValueError(
        f"JOBQUEUE_CRASH_AT: unknown crash points {sorted(_enabled - POINTS)}; known: {sorted(POINTS)}"
    )


def crash_point(name: str) -> None:
    if name in _enabled:
        os.kill(os.getpid(), signal.SIGKILL)
