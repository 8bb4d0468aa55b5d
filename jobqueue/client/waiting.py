"""`wait`'s parts shared by both clients: how long each WaitJob call waits, and the
error of a wait that timed out."""

from __future__ import annotations

import time

from ..model import MAX_WAIT_MS, Job


class WaitTimeout(TimeoutError):
    """The job did not reach a final state within the wait; `job` is its state then."""

    def __init__(self, job: Job, timeout_s: float) -> None:
        super().__init__(f"job {job.id} is still {job.status.name} after {timeout_s:g} s")
        self.job = job


def deadline_of(timeout_s: float) -> float:
    """The monotonic time a wait of `timeout_s` ends; ValueError for a negative one."""
    if not timeout_s >= 0:
        raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
    return time.monotonic() + timeout_s


def next_wait_ms(deadline: float) -> int:
    """What the next WaitJob call waits: what is left, up to the server's maximum. A
    call shorter than the maximum is the wait's last."""
    return max(0, min(int((deadline - time.monotonic()) * 1000), MAX_WAIT_MS))
