"""The roles a token grants, and the JobService methods each may call: the one table
the server checks, WhoAmI answers and docs/security.md shows (tests/test_auth.py
compares the doc's table with this one)."""

from __future__ import annotations

import dataclasses
import functools

ADMIN = "admin"
PRODUCER = "producer"
READER = "reader"
ROLES = (ADMIN, PRODUCER, READER)

# The methods of the roles below admin. An admin may call every method, the ones
# a later version adds included: the service's descriptor lists them.
_LIMITED: dict[str, tuple[str, ...]] = {
    PRODUCER: (
        "EnqueueJob", "EnqueueJobs", "GetJob", "WaitJob", "CancelJob", "RetryJob", "WatchJob", "WatchJobs",
        "WhoAmI",
    ),
    READER: (
        "GetJob", "WaitJob", "ListJobs", "GetQueueStats", "WatchJob", "WatchJobs", "ListWorkers", "WhoAmI",
    ),
}  # fmt: skip


@functools.cache
def service_methods() -> tuple[str, ...]:
    """Every JobService method, in the proto's order."""
    from .._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb  # noqa: PLC0415 - the CLI's `token new` needs none

    service = next(s for s in pb.desc().services if s.name == "JobService")
    return tuple(method.name for method in service.methods)


@functools.cache
def methods_of(role: str) -> tuple[str, ...]:
    """The methods `role` may call, in the proto's order; a KeyError for a role that is none of ROLES."""
    if role == ADMIN:
        return service_methods()
    allowed = frozenset(_LIMITED[role])
    unknown = allowed - set(service_methods())
    if unknown:  # a method renamed in the proto and not here: fail loudly, not deny it quietly
        raise RuntimeError(f"role {role}: no JobService method named {', '.join(sorted(unknown))}")
    return tuple(method for method in service_methods() if method in allowed)


def may_call(role: str, method: str) -> bool:
    return method in methods_of(role)


@dataclasses.dataclass(frozen=True)
class Caller:
    """What WhoAmI tells a caller: whether auth is on, its role, the methods it may call."""

    auth_enabled: bool
    role: str
    methods: tuple[str, ...]
