"""What a worker's parts share: who it is, what it runs, and where it reports."""

from __future__ import annotations

import dataclasses

from ..events import Notify
from ..outage import Outage
from ..store.transitions import Transitions


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    transitions: Transitions
    job_type: str
    worker_id: str
    lease_ms: int
    default_max_attempts: int  # for jobs enqueued without their own
    batch_size: int  # most jobs claimed, or completions recorded, per round trip
    notify: Notify
    outage: Outage  # where Redis outages are reported (the store's)
    # The hash tag of the type's partition these parts work on (worker/lanes.py); "": its first.
    partition: str = ""
