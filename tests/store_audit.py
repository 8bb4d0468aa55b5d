"""Checks that a type's counters and indexes agree with its stored jobs.

The scripts keep `stats` (pending, running) and the `live`, `completed`, `failed`,
`cancelled` and `expired` indexes beside every change of a job (docs/design.md, "Counts,
indexes and events"), and release a unique key when its job ends: no unique key
is held by a final (or vanished) job. This reads every job of the type (a SCAN: fine for a test
or the fault suite's end, never for the product) and lists each disagreement.

`misplaced` checks that every job waiting in line waits in its priority's line
(lua/include/priority.lua): a job's priority never changes, so the check holds
at any moment, not only when the type is quiet (the fault suite samples it while
it breaks things: priorities hold after every redelivery).

A type spread over several partitions (docs/design.md, "Partitions of a type") is
checked in every partition it covers (`P:partitions_covered`), each on its own: a
partition's counters, indexes and lines hold only its own jobs. A problem found in a
partition other than the first names it.
"""

from __future__ import annotations

import collections

import redis

from jobqueue.model import DEFAULT_PRIORITY, partitions_of_type
from jobqueue.store.keys import Keyspace, wake_marker

_INDEXES = {
    "live": (b"1", b"2"), "completed": (b"3",), "failed": (b"4",), "cancelled": (b"5",), "expired": (b"6",),
}  # fmt: skip


def covered(client: redis.Redis, keys: Keyspace, job_type: str) -> tuple[str, ...]:
    """The tags of every partition the type ever had (store/partitions.py's `covered`)."""
    counts = [client.hget(name, job_type) for name in (keys.partitions_covered, keys.partitions)]
    return partitions_of_type(job_type, max(int(count or 1) for count in counts))  # type: ignore[arg-type]


def audit(client: redis.Redis, keys: Keyspace, job_type: str) -> list[str]:
    """The disagreements between the type's counters and indexes and its jobs, in every
    partition it covers (none: [])."""
    first, *others = covered(client, keys, job_type)
    problems = _audit_partition(client, keys, job_type, first)
    for tag in others:
        problems += [f"partition {tag}: {p}" for p in _audit_partition(client, keys, job_type, tag)]
    return problems


def _audit_partition(client: redis.Redis, keys: Keyspace, job_type: str, tag: str) -> list[str]:
    queue = keys.queue(job_type, tag)
    statuses: dict[str, bytes] = {}
    for key in client.scan_iter(match=keys.job_key_prefix(tag) + "*", count=1000):
        job_type_stored, status = client.hmget(key, "type", "status")
        if job_type_stored == job_type.encode() and status is not None:
            statuses[key.decode().rsplit(":", 1)[1]] = status
    by_status = collections.Counter(statuses.values())
    stats = {
        k.decode(): int(v) for k, v in client.hgetall(queue.stats).items() if k in (b"pending", b"running")
    }
    problems = [
        f"stats.{name} = {stats.get(name, 0)}, {by_status[status]} jobs {name.upper()}"
        for name, status in (("pending", b"1"), ("running", b"2"))
        if stats.get(name, 0) != by_status[status]
    ]
    for index, wanted in _INDEXES.items():
        members = {m.decode() for m in client.zrange(getattr(queue, index), 0, -1)}
        expected = {job_id for job_id, status in statuses.items() if status in wanted}
        if members != expected:
            problems.append(
                f"{index} index: {len(members - expected)} ids too many {sorted(members - expected)[:3]}, "
                f"{len(expected - members)} missing {sorted(expected - members)[:3]}"
            )
    unique_keys = queue.unique("").rsplit(":", 1)[0] + ":*"
    for key in client.scan_iter(match=unique_keys, count=1000):
        holder = client.get(key)
        status = statuses.get(holder.decode()) if holder else None
        if holder and status not in (b"1", b"2"):
            problems.append(f"unique key {key.decode()} held by {holder.decode()}, status {status!r}")
    problems += _expiring_problems(client, queue.expiring, statuses, keys)
    problems += _misplaced_in(client, keys, job_type, tag)
    return problems


def _band(score: float) -> int:
    """The priority whose band of `prio` scores holds `score` (bands of 2**48 around (9 - p) * 2**48)."""
    return 9 - round(score / 2**48)


def misplaced(client: redis.Redis, keys: Keyspace, job_type: str) -> list[str]:
    """Ids of PENDING jobs waiting in another priority's line than their job's, in every
    partition the type covers.

    An id whose job is gone or not PENDING is a stale copy (cancel leaves them) and
    is skipped. Reads are not atomic with one another: only what holds at every
    moment is checked (a job keeps its priority for life).
    """
    return [p for tag in covered(client, keys, job_type) for p in _misplaced_in(client, keys, job_type, tag)]


def _misplaced_in(client: redis.Redis, keys: Keyspace, job_type: str, tag: str) -> list[str]:
    queue = keys.queue(job_type, tag)
    marker = wake_marker(job_type, tag).encode()
    ready = [i for i in client.lrange(queue.ready, 0, -1) if i != marker]
    lines: dict[bytes, list[tuple[str, int]]] = collections.defaultdict(list)
    for job_id in ready:
        lines[job_id].append(("ready", DEFAULT_PRIORITY))
    for job_id, score in client.zrange(queue.prio, 0, -1, withscores=True):
        lines[job_id].append(("prio", _band(score)))
    for job_id, score in client.zrange(queue.scheduled, 0, -1, withscores=True):
        fraction = round((score % 1) * 16)
        lines[job_id].append(("scheduled", fraction or DEFAULT_PRIORITY))
    problems = []
    for job_id, places in lines.items():
        status, stored = client.hmget(keys.job(job_id.decode()), "status", "priority")
        if status != b"1":
            continue
        priority = int(stored or DEFAULT_PRIORITY)
        wrong = [f"{name} as {p}" for name, p in places if p != priority]
        if wrong:
            problems.append(f"job {job_id.decode()} of priority {priority} waits in {', '.join(wrong)}")
    return problems


def _expiring_problems(
    client: redis.Redis, expiring: str, statuses: dict[str, bytes], keys: Keyspace
) -> list[str]:
    """Every PENDING job with an expiry and no attempt counted is in `expiring` (at its
    expiry): the reaper ends such jobs only from there."""
    scores = {m.decode(): s for m, s in client.zrange(expiring, 0, -1, withscores=True)}
    problems = []
    for job_id, status in statuses.items():
        if status != b"1":
            continue
        expires_at, attempt = client.hmget(keys.job(job_id), "expires_at_ms", "attempt")
        if expires_at is not None and attempt == b"0" and scores.get(job_id) != float(expires_at):
            problems.append(f"expiring index: job {job_id} (expires at {expires_at.decode()}) missing")
    return problems
