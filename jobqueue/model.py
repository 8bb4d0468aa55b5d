"""The job as the rest of the package sees it, and the rules for valid input.

The domain types here are independent of protobuf: the store, the worker SDK and
the server all speak `Job`, and only the server converts to the wire types.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import os
import re
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .errors import InvalidInput

if TYPE_CHECKING:
    from .codecs import Codec

T = TypeVar("T")

# A job type names a queue and is part of Redis key names. Whitespace, control
# characters and braces are refused: braces would break Redis Cluster hash tags
# and whitespace makes keys painful to inspect.
JOB_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
JOB_TYPE_RULE = "1 to 128 characters, each a letter, a digit or one of _ . : -"

_UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Execution times must stay exact as Lua numbers and sorted-set scores (doubles).
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class JobStatus(enum.IntEnum):
    """Same numbers as the proto enum `JobStatus`; stored in Redis as these numbers."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5
    EXPIRED = 6  # not started by its expiry: it never ran

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)


class UniqueMode(enum.IntEnum):
    """Same numbers as the proto enum `UniqueMode`: what a job's unique key means."""

    NONE = 0
    # A second enqueue of the key while its job is PENDING or RUNNING returns that job.
    WHILE_ACTIVE = 1
    # A second enqueue of the key while its job is PENDING updates that job's payload and time.
    DEBOUNCE = 2


class Enqueued(enum.Enum):
    """What an enqueue did: the job it returns is new, one enqueued before, or a pending one updated."""

    CREATED = "created"
    EXISTING = "existing"  # an idempotency key within its window, or a WHILE_ACTIVE unique key
    DEBOUNCED = "debounced"  # a DEBOUNCE unique key: the pending job's payload and time replaced


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts, with "equal jitter".

    The delay after attempt n is d = min(cap_ms, base_ms * factor^(n-1)): half of
    it fixed and half random, so retries of many jobs that failed together spread
    out, yet none comes back sooner than d/2.
    """

    base_ms: int = 1_000
    factor: float = 2.0
    cap_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.cap_ms < 0:
            raise InvalidInput("backoff", "base_ms and cap_ms must be >= 0")
        if not 1.0 <= self.factor <= 100.0:
            raise InvalidInput("backoff", f"factor must be between 1 and 100, got {self.factor}")

    def delay_ms(self, attempt: int, jitter: float) -> int:
        """The delay after `attempt` (1-based); `jitter` is uniform in [0, 1)."""
        full = min(float(self.cap_ms), self.base_ms * self.factor ** max(0, attempt - 1))
        return int(full / 2 + jitter * full / 2)


# Job priorities (lua/include/priority.lua): nine levels, enough to say "before" and
# "after" the ordinary jobs in a few steps each, few enough that each has its own
# band of scores; unset is the middle, so a job can be put above or below it.
MIN_PRIORITY, DEFAULT_PRIORITY, MAX_PRIORITY = 1, 5, 9


@dataclasses.dataclass(slots=True)
class Job:
    """A job as stored: a snapshot (changing it changes nothing in Redis).

    Times are Unix milliseconds from the Redis server's clock. Not frozen: a
    frozen dataclass sets every field through object.__setattr__, which makes
    creating one several times dearer, and batches create thousands.
    """

    id: str
    type: str
    payload: bytes
    status: JobStatus
    execution_time_ms: int
    created_at: int
    updated_at: int
    attempt: int = 0
    last_error: str = ""
    # The attempt whose run last_error describes (reads only: a claimed job has 0).
    last_error_attempt: int = 0
    started_at: int = 0
    finished_at: int = 0
    worker_id: str = ""
    # 0 until a worker claims a job enqueued without one (then the worker's default applies).
    max_attempts: int = 0
    timeout_ms: int = 0  # 0: the worker's default
    idempotency_key: str = ""
    backoff: Backoff | None = None  # None: the worker's default
    # The fencing token of the current lease: it grows with every claim, and the
    # store accepts a result only with the token of the lease that is current.
    lease_token: int = 0
    # The W3C trace context of its enqueue (jobqueue.tracing), as a worker with
    # tracing on claims it; '' otherwise.
    trace_context: str = ""
    # What the handler returned, as bytes (worker/results.py), stored when the job
    # COMPLETED; b"" if it returned nothing. Reads only: a claimed job has b"".
    result: bytes = b""
    # MIN_PRIORITY..MAX_PRIORITY, higher taken first. Reads only: a claimed job has the default.
    priority: int = DEFAULT_PRIORITY
    unique_key: str = ""
    unique_mode: UniqueMode = UniqueMode.NONE
    # What the enqueue that returned this job did (set by enqueue only; CREATED elsewhere).
    # Not part of equality: it describes the call, not the job.
    enqueued: Enqueued = dataclasses.field(default=Enqueued.CREATED, compare=False)
    # When the job expires unless it has started (Unix ms, Redis clock); 0: never.
    expires_at_ms: int = 0
    # The last progress its current (or last) run reported with set_progress: a
    # fraction 0..1, a message, when it was written (Unix ms; 0: none). On a job a
    # worker runs, set when its run's last report goes with its completion.
    progress: float = 0.0
    progress_message: str = ""
    progress_at: int = 0
    # Where set_progress hands its values: set by what runs the job (a worker, the
    # inline queue) for the run; None on a job read from the store.
    _progress_sink: ProgressSink | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @overload
    def result_as(self, into: builtins.type[T], codec: Codec | str = "json") -> T | None: ...
    @overload
    def result_as(self, into: None = None, codec: Codec | str = "json") -> Any: ...
    def result_as(self, into: Any = None, codec: Codec | str = "json") -> Any:
        """The result of a COMPLETED job decoded by `codec` (its worker's: json for a
        typed handler, docs/payloads.md) into `into` (a dataclass, TypedDict,
        pydantic model, dict or list; None: plain data); None if the handler
        returned nothing. ValueError for a job that did not complete, DecodeError
        (a ValueError) for a result the codec cannot read into `into`."""
        from .codecs import get_codec  # noqa: PLC0415 - codecs imports this module

        if self.status is not JobStatus.COMPLETED:
            raise ValueError(f"job {self.id} is {self.status.name}: only a COMPLETED job has a result")
        decoder = get_codec(codec)
        return decoder.decode(self.result, into) if self.result else None

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Reports how far the handler running this job is: `fraction` from 0 to 1
        (else ValueError), and a message (cut to MAX_PROGRESS_MESSAGE_CHARS).

        Cheap to call in a tight loop, from the handler's coroutine or from a
        sync handler's thread: the worker writes the latest value at most every
        `progress_interval_s` (and the last one with the run's outcome), only
        while the run holds the job's lease. Not available in a handler run with
        executor="process" (RuntimeError), nor on a job read from the store.
        """
        sink = self._progress_sink
        if sink is None:
            raise RuntimeError(
                f"job {self.id}: set_progress is for the job a handler is running; this one is a copy read "
                "from the store (or one whose handler ran with executor='process', where progress cannot "
                "reach the worker)"
            )
        kind = type(fraction)  # checked here first: handlers call it in tight loops
        if not ((kind is float or kind is int) and 0 <= fraction <= 1):  # NaN is not
            fraction = check_progress(fraction)
        elif kind is int:
            fraction = float(fraction)
        if type(message) is not str:
            if not isinstance(message, str):
                raise TypeError(f"message must be a str, not {type(message).__name__}")
            message = str(message)
        sink(self, fraction, message[:MAX_PROGRESS_MESSAGE_CHARS])

    def __getstate__(self) -> dict[str, object]:
        # A pickled job (a process pool's) leaves its sink behind: it is the worker's.
        return {name: getattr(self, name) for name in _PICKLED_FIELDS}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self._progress_sink = None


# set_progress's values go to it: (the job, the fraction, the message).
ProgressSink = Callable[[Job, float, str], None]
MAX_PROGRESS_MESSAGE_CHARS = 1000
_PICKLED_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "_progress_sink")


def check_progress(fraction: float) -> float:
    """A progress fraction: a number from 0 to 1 (ValueError otherwise, NaN included)."""
    if type(fraction) is not bool and isinstance(fraction, int | float) and 0 <= fraction <= 1:  # not NaN
        return float(fraction)
    raise ValueError(f"fraction must be a number from 0 to 1, got {fraction!r}")


def check_job_type(job_type: str) -> str:
    if job_type in _VALID_TYPES:
        return job_type
    if not job_type:
        raise InvalidInput("type", f"must not be empty ({JOB_TYPE_RULE})")
    if not JOB_TYPE_PATTERN.fullmatch(job_type):
        raise InvalidInput("type", f"{_shorten(job_type)!r} is not a valid job type ({JOB_TYPE_RULE})")
    if len(_VALID_TYPES) >= 1024:  # a process sees few types; bound it anyway
        _VALID_TYPES.clear()
    _VALID_TYPES.add(job_type)
    return job_type


_VALID_TYPES: set[str] = set()  # types check_job_type accepted: a set lookup instead of the regex


def check_job_id(job_id: str) -> str:
    """Returns the canonical (lower-case) form of a job id."""
    if not job_id:
        raise InvalidInput("id", "must not be empty (a job id is a UUID string)")
    canonical = job_id.lower()
    if not _UUID_PATTERN.fullmatch(canonical):
        raise InvalidInput("id", f"{_shorten(job_id)!r} is not a job id (a UUID string)")
    return canonical


def check_execution_time(execution_time_ms: int) -> int:
    if execution_time_ms < 0:
        raise InvalidInput("execution_time_ms", f"must be Unix milliseconds >= 0, got {execution_time_ms}")
    if execution_time_ms > MAX_TIME_MS:
        raise InvalidInput("execution_time_ms", f"{execution_time_ms} is after the year 9999")
    return execution_time_ms


@dataclasses.dataclass(frozen=True, slots=True)
class JobOptions:
    """What EnqueueJob may set per job beyond type, payload and time. None: the worker's default."""

    max_attempts: int | None = None
    timeout_ms: int | None = None
    backoff: Backoff | None = None
    # The same key for the same type within the idempotency window returns the first job.
    idempotency_key: str = ""
    # MIN_PRIORITY..MAX_PRIORITY; None: DEFAULT_PRIORITY. Within a type, a ready job of a
    # higher priority is always taken first; equal priorities go in FIFO order.
    priority: int | None = None
    # A key unique per type while its job is active, and what it means (docs/design.md, "Uniqueness").
    unique_key: str = ""
    unique_mode: UniqueMode = UniqueMode.NONE
    # DEBOUNCE without an execution time: the job runs this long after the last enqueue of its key.
    debounce_ms: int = 0
    # Expiry before start: absolute (Unix ms, Redis clock) or relative to the enqueue;
    # at most one. A job not started by then ends EXPIRED (docs/design.md, "Expiry").
    expires_at_ms: int | None = None
    expires_in_ms: int | None = None

    def expiry_from(self, enqueued_at: int) -> int:
        """The expiry stored for a job enqueued at `enqueued_at` (the Redis clock); 0: none."""
        if self.expires_in_ms is not None:
            return enqueued_at + self.expires_in_ms
        return self.expires_at_ms or 0


NO_OPTIONS = JobOptions()


@dataclasses.dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One job to enqueue (Producer.enqueue_many, the EnqueueJobs RPC)."""

    job_type: str
    # Bytes or str; with enqueue_many's `codec=`, what the codec encodes.
    payload: Any = b""
    execution_time_ms: int | None = None  # None or 0: now
    options: JobOptions = NO_OPTIONS


def payload_bytes(payload: bytes | str, field: str = "payload") -> bytes:
    """A payload as it is stored: bytes as given, text as UTF-8.

    Anything else is a TypeError naming `field`: a job's payload is opaque
    bytes, and guessing an encoding for other objects (JSON? repr?) would
    hand workers something they did not expect.
    """
    if type(payload) is bytes:
        return payload
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise TypeError(f"{field} must be bytes or str, not {type(payload).__name__}")


MAX_ATTEMPTS_LIMIT = 1000
MAX_IDEMPOTENCY_KEY_CHARS = 256


def check_max_attempts(max_attempts: int) -> int:
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidInput("max_attempts", f"must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {max_attempts}")
    return max_attempts


def check_timeout_ms(timeout_ms: int) -> int:
    if timeout_ms <= 0:
        raise InvalidInput("timeout_ms", f"must be > 0 ms, got {timeout_ms}")
    return timeout_ms


def check_expiry(options: JobOptions, execution_time_ms: int | None) -> None:
    """The checks of an expiry that need no clock; enqueue.lua checks it against now."""
    at, within = options.expires_at_ms, options.expires_in_ms
    if at is not None and within is not None:
        raise InvalidInput("expires_at_ms", "and expires_in_ms are exclusive: give at most one")
    if within is not None and not 0 < within <= MAX_TIME_MS:
        raise InvalidInput("expires_in_ms", f"must be > 0 ms, got {within}")
    if at is None:
        return
    if not 0 < at <= MAX_TIME_MS:
        raise InvalidInput("expires_at_ms", f"must be Unix milliseconds > 0 up to the year 9999, got {at}")
    if execution_time_ms and at <= execution_time_ms:
        raise InvalidInput(
            "expires_at_ms",
            f"{at} is not after execution_time_ms {execution_time_ms}: the job could never start",
        )


# The longest one WaitJob call waits: a longer wait is several calls (an open request
# holds a connection, and proxies cut long quiet requests).
MAX_WAIT_MS = 60_000


def check_wait_ms(timeout_ms: int) -> int:
    """WaitJob's timeout: 0 answers at once."""
    if not 0 <= timeout_ms <= MAX_WAIT_MS:
        raise InvalidInput(
            "timeout_ms", f"must be from 0 (answer at once) to {MAX_WAIT_MS} ms, got {timeout_ms}"
        )
    return timeout_ms


def check_priority(priority: int) -> int:
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            "priority",
            f"must be from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs first; "
            f"{DEFAULT_PRIORITY} when not set), got {priority}",
        )
    return priority


def check_idempotency_key(key: str) -> str:
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidInput("idempotency_key", f"is {len(key)} characters, over {MAX_IDEMPOTENCY_KEY_CHARS}")
    return key


def check_unique(key: str, mode: int, debounce_ms: int) -> UniqueMode:
    """The unique options' rules: a key needs a mode and a mode a key; debounce_ms only with DEBOUNCE."""
    try:
        unique_mode = UniqueMode(mode)
    except ValueError:
        raise InvalidInput("unique_mode", f"{mode} is not a mode (1: WHILE_ACTIVE, 2: DEBOUNCE)") from None
    if unique_mode is UniqueMode.NONE:
        if key:
            raise InvalidInput("unique_mode", "must be set with a unique_key (WHILE_ACTIVE or DEBOUNCE)")
    elif not key:
        raise InvalidInput("unique_key", f"must not be empty with unique_mode {unique_mode.name}")
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidInput("unique_key", f"is {len(key)} characters, over {MAX_IDEMPOTENCY_KEY_CHARS}")
    if debounce_ms and unique_mode is not UniqueMode.DEBOUNCE:
        raise InvalidInput("debounce_ms", "is for unique_mode DEBOUNCE only")
    if not 0 <= debounce_ms <= MAX_TIME_MS:
        raise InvalidInput("debounce_ms", f"must be >= 0 ms, got {debounce_ms}")
    return unique_mode


@functools.lru_cache(maxsize=4096)
def partition_of_type(job_type: str) -> str:
    """The hash tag (4 hex digits) of the partition that holds a type's jobs.

    Every key of one job and of its queue carries this tag, so each state change
    touches one Redis Cluster slot. A later version may give a hot type several
    partitions; the job id records which one a job lives in.
    """
    return f"{zlib.crc32(job_type.encode()) & 0xFFFF:04x}"


# The most partitions a type may have (SetQueuePartitions; docs/design.md, "Partitions of a type").
MAX_PARTITIONS = 64


def check_partitions(partitions: int) -> int:
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidInput("partitions", f"must be 1 to {MAX_PARTITIONS}, got {partitions}")
    return partitions


@functools.lru_cache(maxsize=1024)
def partitions_of_type(job_type: str, count: int) -> tuple[str, ...]:
    """The hash tags of a type's first `count` partitions: the first is
    partition_of_type's; partition k > 0 is crc32 of the type and k, the next salt
    taken when it would repeat an earlier tag, so every partition is distinct and
    every process computes the same ones."""
    tags = [partition_of_type(job_type)]
    salt = 1
    while len(tags) < count:
        tag = f"{zlib.crc32(f'{job_type}#{salt}'.encode()) & 0xFFFF:04x}"
        salt += 1
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def partition_of_key(key: str, count: int) -> int:
    """Which of `count` partitions a job with this unique or idempotency key goes to:
    every enqueue with the key lands on the same one, so its deduplication stays one
    script's (while the count does not change)."""
    return zlib.crc32(key.encode()) % count


def partition_of_id(job_id: str) -> str:
    """The partition a job lives in, read from its id: GetJob needs no type."""
    return job_id[:4]


def new_job_id(partition: str) -> str:
    """A random (version 4) UUID whose first 4 hex digits are the partition tag."""
    return new_job_ids(partition, 1)[0]


def new_job_ids(partition: str, count: int) -> list[str]:
    """`count` ids as new_job_id makes them, from one os.urandom call.

    uuid.uuid4(), or an os.urandom call per id, costs several times more, and a
    batch enqueue makes thousands.
    """
    h = os.urandom(16 * count).hex()
    return [
        f"{partition}{h[i + 4 : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122 variant bits


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
