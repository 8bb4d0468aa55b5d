"""The outcome codes of the Lua scripts, decoded in one place.

Every per-job reply of a script opens with one of the codes defined in
lua/include/outcomes.lua; `Outcome` mirrors that list (tests/test_scripts.py
keeps the two equal). `decode` reads a reply item; `refusal` turns an outcome
the API cannot accept into the domain error the server maps to a Connect code.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import JobAlreadyFinished, JobNotFound, JobNotRetryable, JobQueueError
from ..model import JobStatus
from .codec import status_of


class Outcome(enum.StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    WRONG_STATE = "wrong_state"
    STALE = "stale"
    GONE = "gone"
    NOT_DUE = "not_due"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    RECOVERED = "recovered"
    ALIVE = "alive"
    MOVED = "moved"
    NOT_RUNNING = "not_running"
    PAUSED = "paused"
    FULL = "full"
    TOO_LATE = "too_late"
    EXPIRES_EARLY = "expires_early"


@dataclass(frozen=True, slots=True)
class Result:
    """A decoded reply item: its outcome and, where the script names it, the job's status."""

    outcome: Outcome
    status: JobStatus | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def __str__(self) -> str:
        if self.status is None:
            return self.outcome.value
        return f"{self.outcome.value} (job is {self.status.name})"


_BY_CODE = {outcome.value.encode(): outcome for outcome in Outcome}
OK_CODE = Outcome.OK.value.encode()  # as it arrives from Redis
# The outcomes whose second element is the job's status ('' where the job is gone).
_WITH_STATUS = frozenset({Outcome.OK, Outcome.WRONG_STATE, Outcome.STALE})
OK = Result(Outcome.OK)


def decode(item: Sequence[Any]) -> Result:
    """A reply item {code, ...} as a Result."""
    outcome = _BY_CODE[item[0]]
    if outcome is Outcome.OK and len(item) == 1:
        return OK
    status = status_of(item[1]) if outcome in _WITH_STATUS and len(item) > 1 else None
    return Result(outcome, status)


def decode_all(items: Sequence[Sequence[Any]]) -> list[Result]:
    """`decode` of each item; a bare OK, a worker's usual record, without a call."""
    return [OK if len(item) == 1 and item[0] == OK_CODE else decode(item) for item in items]


# What the API says when a transition refuses a request, by the request's verb.
_REFUSALS: dict[tuple[str, Outcome], type[JobAlreadyFinished | JobNotRetryable]] = {
    ("cancel", Outcome.WRONG_STATE): JobAlreadyFinished,
    ("retry", Outcome.WRONG_STATE): JobNotRetryable,
}


def refusal(result: Result, job_id: str, verb: str) -> JobQueueError:
    """The domain error for a refused `verb` on job `job_id`."""
    if result.outcome is Outcome.NOT_FOUND:
        return JobNotFound(job_id)
    kind = _REFUSALS.get((verb, result.outcome))
    if kind is None:
        raise AssertionError(f"{verb} of job {job_id}: unexpected outcome {result}")
    status = result.status.name if result.status is not None else "missing"
    return kind(job_id, status)
