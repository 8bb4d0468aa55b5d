"""What happens to jobs, reported through one small interface.

The worker, the reaper and the scheduler (in worker and server processes alike)
report each thing that happens as an `Event`, with the job it concerns and a
detail (documented per event), and each is counted (a worker's in `Worker.stats`).
Observers take them: the logs (event_log.py), the benchmark's timeline, the
metrics (metrics/jobs.py). An observer is called inline, on the worker's hot
path: it must be quick. One that raises is logged and skipped; it never breaks
the caller.

    def on_event(event: Event, job: JobRef | Job | None, detail: object) -> None:
        if event is Event.DEAD_LETTERED:
            alert(job.id, detail)

    Worker("send_email", send, observers=[on_event])
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

log = logging.getLogger("jobqueue.events")


class Event(enum.Enum):
    """What happened; the `detail` each event comes with is named in its comment."""

    # A producer's (the server's) store (job: the Job).
    ENQUEUED = "enqueued"  # None: stored as a new job (not one its idempotency key already named)

    # A worker's round trips (job None).
    POPPED = "popped"  # Call: the blocking pop of an idle worker (the id in `taken`)
    ROUND = "round"  # Call: a round trip (round.lua), or the claim of a popped id (claim.lua)
    # A job in a worker's hands (job: the Job).
    CLAIMED = "claimed"  # None: running under this worker's lease (started, or waiting for a slot)
    SKIPPED = "skipped"  # Result: why a popped id was not claimed (job: a JobRef)
    STARTED = "started"  # None: its handler started
    RAN = "ran"  # float: its handler returned or raised after running that many seconds
    COMPLETED = "completed"  # None: its completion is recorded
    RETRY_SCHEDULED = "retry scheduled"  # Failure: the run failed; the job runs again later
    # Failure (a worker's: its delay_ms None for a PermanentError, else it was the
    # last attempt) or str (the reaper's reason): FAILED for good
    DEAD_LETTERED = "dead-lettered"
    RELEASED = "released"  # None: handed back unfinished at shutdown, not counted as an attempt
    # JobStatus | Result | None: cancelled (by a user) while held; its handler was
    # stopped, it never started, or its outcome was refused
    CANCELLED = "cancelled"
    LEASE_LOST = "lease lost"  # JobStatus | None: its lease was taken (the worker counted as dead)
    STALE_RESULT = "stale result"  # Result: its outcome was refused, its lease being lost (not to a cancel)
    NOT_RECORDED = "not recorded"  # str: its outcome could not be written (Redis down): it runs again
    # The reaper (job: a JobRef).
    RECOVERED = "recovered"  # str: why it was taken back from its holder; it is next in line
    SWEPT = "swept"  # Swept: ids popped but never claimed, returned to the ready list (job None)
    WORKER_LOST = "worker lost"  # Swept: a worker that stopped heartbeating was forgotten (job None)
    # The reaper or a worker's claim (job: a JobRef): not started by its expiry.
    EXPIRED = "expired"  # str: who ended it EXPIRED ("claim" or "reaper")
    # The scheduler (job None).
    PROMOTED = "promoted"  # Call: due jobs moved to the ready list (their number in `moved`)

    # Members are singletons, so identity is their hash: C's, where Enum's own is
    # Python code that every observer's lookup of an event would run.
    __hash__ = object.__hash__


# Event.EXPIRED's detail: who found the job past its expiry.
EXPIRED_BY_CLAIM, EXPIRED_BY_REAPER = "claim", "reaper"


class JobRef(NamedTuple):
    """A job known by id and type only (the reaper's view)."""

    id: str
    type: str


class JobLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...


@dataclasses.dataclass(slots=True)  # not frozen: made once per round, and a frozen one costs more to make
class Call:
    """A call to Redis: which, when it began (time.time()), how long it took, what it moved.
    Observers read it; they must not change it."""

    name: str
    job_type: str
    began: float
    seconds: float
    recorded: int = 0  # completions recorded
    claimed: tuple[str, ...] = ()  # ids claimed
    taken: tuple[str, ...] = ()  # ids moved into the popped list
    moved: int = 0  # ids promoted


@dataclasses.dataclass(frozen=True, slots=True)
class Swept:
    """What the reaper found of one type: ids swept back, or a worker lost."""

    job_type: str
    count: int = 0
    worker_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """A failed run: the error kept in the job, the delay before the next attempt
    (None: none follows), and the handler's exception where its traceback tells
    more than the error (not for PermanentError, RetryAfter or a timeout)."""

    error: str
    delay_ms: int | None
    exception: BaseException | None = None


Observer = Callable[[Event, JobLike | None, object], None]


class Notify(Protocol):
    """What a part reports through: `Observers.notify`."""

    def __call__(self, event: Event, job: JobLike | None = None, detail: object = None) -> None: ...


class Observers:
    """Counts each event (in `counts`) and calls each observer in turn; one that
    raises is logged and skipped.

    An observer may have a `wants(event) -> bool` method: it is asked here, once
    per event, and called with the events it wants only. Several events come once
    per job: an observer that would ignore one should not cost a call per job."""

    def __init__(self, observers: Iterable[Observer] = (), *, counts: Counts | None = None) -> None:
        self.observers = tuple(observers)
        self.counts = Counts() if counts is None else counts
        self._by_event = {event: tuple(o for o in self.observers if _wants(o, event)) for event in Event}

    def notify(self, event: Event, job: JobLike | None = None, detail: object = None) -> None:
        """Reports `event` (the parts are given this bound method: a call to it costs
        less than a call to an instance)."""
        self.counts[event] += 1
        for observer in self._by_event[event]:
            try:
                observer(event, job, detail)
            except Exception:
                log.exception("observer %r failed on %s", observer, event.name)


def _wants(observer: Observer, event: Event) -> bool:
    wants = getattr(observer, "wants", None)
    return wants is None or bool(wants(event))


# What a job's end in a worker may be, as `Counts.summary` names it: the first five
# always, the others when they happened.
OUTCOMES: dict[Event, str] = {
    Event.COMPLETED: "completed",
    Event.RETRY_SCHEDULED: "retried",  # failed, and runs again later
    Event.DEAD_LETTERED: "failed",  # for good
    Event.CANCELLED: "cancelled",
    Event.RELEASED: "handed back",  # unfinished at shutdown
    Event.LEASE_LOST: "taken back",  # the worker counted as dead meanwhile
    Event.STALE_RESULT: "result refused",
    Event.SKIPPED: "skipped",
    Event.NOT_RECORDED: "not recorded",
    Event.EXPIRED: "expired",
}
_ALWAYS = 5


class Counts(collections.Counter[Event]):
    """How many times each event happened (`Observers.counts`, `Worker.stats`)."""

    def summary(self) -> str:
        """The jobs' outcomes: 'completed 12, retried 2, failed 1, cancelled 1, handed back 0'."""
        return ", ".join(
            f"{name} {self[event]}"
            for i, (event, name) in enumerate(OUTCOMES.items())
            if i < _ALWAYS or self[event]
        )
