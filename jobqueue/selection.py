"""Which jobs ListJobs and the bulk calls select, and what they answer.

`JobFilter` mirrors the proto's JobFilter; `check_filter` holds its rules (the
field names in the messages are the API's: `filter.status`...). The store reads
the selection (store/listing.py); the client, the server and the CLI share these
types.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TypeVar

from .errors import InvalidInput
from .model import MAX_TIME_MS, Job, JobStatus, check_idempotency_key, check_job_type

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# At most this many jobs a call examines: a page of ListJobs, and a bulk call's `limit`.
MAX_EXAMINED = 1000
MAX_ERROR_CONTAINS_CHARS = 1024

E = TypeVar("E", bound=enum.IntEnum)

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)
UNFINISHED = (JobStatus.UNSPECIFIED, JobStatus.PENDING, JobStatus.RUNNING)


class TimeField(enum.IntEnum):
    """Which time a filter's range bounds and a list is ordered by (the proto's JobTimeField)."""

    UNSPECIFIED = 0
    CREATED = 1
    FINISHED = 2


class ListOrder(enum.IntEnum):
    """The proto's ListOrder; UNSPECIFIED is newest first."""

    UNSPECIFIED = 0
    NEWEST_FIRST = 1
    OLDEST_FIRST = 2


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a call selects; every field optional (see the proto's JobFilter).

    `status` UNSPECIFIED selects the unfinished jobs; `from_ms` is inclusive and
    `to_ms` exclusive, 0 meaning no bound.
    """

    type: str = ""
    status: JobStatus = JobStatus.UNSPECIFIED
    time_field: TimeField = TimeField.UNSPECIFIED
    from_ms: int = 0
    to_ms: int = 0
    error_contains: str = ""
    idempotency_key: str = ""

    @property
    def finished(self) -> bool:
        """Whether it selects from a finished status' index (scored by finish time)."""
        return self.status in FINISHED

    @property
    def scans(self) -> bool:
        """Whether jobs are kept or dropped one by one after the index read (a bounded scan)."""
        return bool(self.error_contains) or self.status in (JobStatus.PENDING, JobStatus.RUNNING)


ALL_UNFINISHED = JobFilter()


@dataclasses.dataclass(frozen=True, slots=True)
class JobPage:
    """A page of ListJobs; `next_page_token` is empty when nothing more is selected."""

    jobs: list[Job]
    next_page_token: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk call did: the jobs it changed, and the token to go on ('' when done)."""

    count: int
    next_page_token: str = ""


def check_filter(job_filter: JobFilter) -> JobFilter:
    """The filter with its time field resolved (never UNSPECIFIED), or InvalidInput naming
    the field that breaks a rule."""
    if job_filter.type:
        try:
            check_job_type(job_filter.type)
        except InvalidInput as exc:
            raise InvalidInput("filter.type", str(exc).removeprefix("type: ")) from None
    status = enum_member(JobStatus, job_filter.status, "filter.status")
    time_field = enum_member(TimeField, job_filter.time_field, "filter.time_field")
    finished = status in FINISHED
    if time_field is TimeField.UNSPECIFIED:
        time_field = TimeField.FINISHED if finished else TimeField.CREATED
    elif time_field is TimeField.FINISHED and not finished:
        raise InvalidInput(
            "filter.time_field",
            "FINISHED needs a finished filter.status (COMPLETED, FAILED, CANCELLED or EXPIRED)",
        )
    elif time_field is TimeField.CREATED and finished:
        raise InvalidInput(
            "filter.time_field",
            f"CREATED cannot go with filter.status {status.name}: finished jobs are indexed by the "
            "time they finished (FINISHED, the default)",
        )
    for name in ("from_ms", "to_ms"):
        value = getattr(job_filter, name)
        if not 0 <= value <= MAX_TIME_MS:
            raise InvalidInput(
                f"filter.{name}", f"must be Unix milliseconds from 0 to {MAX_TIME_MS}, got {value}"
            )
    if job_filter.to_ms and job_filter.to_ms <= job_filter.from_ms:
        raise InvalidInput(
            "filter.to_ms",
            f"{job_filter.to_ms} is not after filter.from_ms {job_filter.from_ms} (to is exclusive)",
        )
    if len(job_filter.error_contains) > MAX_ERROR_CONTAINS_CHARS:
        raise InvalidInput(
            "filter.error_contains",
            f"is {len(job_filter.error_contains)} characters, over {MAX_ERROR_CONTAINS_CHARS}",
        )
    if job_filter.idempotency_key:
        if not job_filter.type:
            raise InvalidInput("filter.idempotency_key", "needs filter.type (keys are per type)")
        try:
            check_idempotency_key(job_filter.idempotency_key)
        except InvalidInput as exc:
            raise InvalidInput("filter.idempotency_key", str(exc).removeprefix("idempotency_key: ")) from None
    return dataclasses.replace(job_filter, status=status, time_field=time_field)


def check_order(order: ListOrder) -> ListOrder:
    return enum_member(ListOrder, order, "order")


def check_count(value: int, name: str, default: int) -> int:
    """A page size or a bulk limit: 1 to 1,000, 0 meaning `default`."""
    if value == 0:
        return default
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidInput(name, f"must be 1 to {MAX_PAGE_SIZE} (0: {default}), got {value}")
    return value


def check_bulk_status(job_filter: JobFilter, allowed: tuple[JobStatus, ...], call: str) -> None:
    """A bulk call acts on some statuses only: any other in the filter is refused."""
    if job_filter.status not in allowed:
        names = ", ".join(s.name for s in allowed if s is not JobStatus.UNSPECIFIED)
        also = " (or UNSPECIFIED: both)" if JobStatus.UNSPECIFIED in allowed else ""
        raise InvalidInput(
            "filter.status", f"{call} acts on {names} jobs{also}, not {job_filter.status.name}"
        )


def enum_member(kind: type[E], value: int, field: str) -> E:
    try:
        return kind(int(value))
    except ValueError:
        raise InvalidInput(field, f"{int(value)} is not a {kind.__name__} value") from None
