"""`jobqueue rebuild`: the counters and indexes recomputed from the stored jobs
(store/rebuild.py), straight on Redis (an admin's maintenance tool, not an API call),
with its progress on stderr and what it changed (or, `--dry-run`, would change) on stdout."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from ..errors import InvalidInput
from ..model import check_job_type
from ..outage import redacted
from ..store.client import connect
from ..store.keys import Keyspace
from ..store.rebuild import INDEXES, Rebuilder, TypeRebuild
from .exits import CommandFailed, ExitCode

if TYPE_CHECKING:
    from ..settings import Settings

PROGRESS_EVERY_S = 1.0  # a progress line as each pass starts, then at most one a second


def run_rebuild(settings: Settings, *, job_type: str, count: int, dry_run: bool, as_json: bool) -> int:
    if job_type:
        try:
            check_job_type(job_type)
        except InvalidInput as exc:
            raise CommandFailed(f"--{exc}", ExitCode.USAGE) from None
    try:
        reports = asyncio.run(_rebuild(settings, job_type=job_type, count=count, dry_run=dry_run))
    except RedisError as exc:
        raise CommandFailed(f"Redis at {redacted(settings.redis_url)}: {exc}", ExitCode.FAILED) from None
    if as_json:
        print(json.dumps({"dry_run": dry_run, "types": [r.as_json() for r in reports]}))
    else:
        for report in reports:
            print(report_text(report, dry_run))
        if not reports:
            print("no job types registered (name one with --type)")
    return ExitCode.OK


async def _rebuild(settings: Settings, *, job_type: str, count: int, dry_run: bool) -> list[TypeRebuild]:
    redis = connect(settings.redis_url, timeout_s=settings.redis_timeout_s, cluster=settings.redis_cluster)
    try:
        rebuilder = Rebuilder(redis, Keyspace(settings.prefix))
        job_types = [job_type] if job_type else await rebuilder.job_types()
        progress = _Progress()
        return [
            await rebuilder.rebuild(name, count=count, dry_run=dry_run, progress=progress)
            for name in job_types
        ]
    finally:
        await redis.aclose()


class _Progress:
    """Prints `rebuild TYPE: PASS: N ids read` on stderr (see PROGRESS_EVERY_S)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._at: tuple[str, str] = ("", "")

    def __call__(self, job_type: str, what: str, seen: int) -> None:
        now = time.monotonic()
        if (job_type, what) != self._at or now - self._last >= PROGRESS_EVERY_S:
            self._at, self._last = (job_type, what), now
            source = "job keys" if what == "jobs" else f"index {what}"
            print(f"rebuild {job_type}: {source}: {seen:,} ids read", file=sys.stderr, flush=True)


def report_text(report: TypeRebuild, dry_run: bool) -> str:
    """One type's report: what was (would be) fixed, index by index, and the counters."""
    verb = "would fix" if dry_run else "fixed"
    indexes = ", ".join(
        f"{index} +{report.added[index]:,} -{report.removed[index]:,}"
        for index in INDEXES
        if report.added[index] or report.removed[index]
    )
    counters = ", ".join(
        f"{name} {stored:,} -> {counted:,}"
        for name, stored, counted in zip(("pending", "running"), report.stored, report.counted, strict=True)
        if stored != counted
    )
    fixes = [part for part in (indexes, f"rescored {report.rescored:,}" if report.rescored else "", counters)
             if part]  # fmt: skip
    found = f"{report.job_type}: {report.jobs_seen:,} job keys read"
    return f"{found}; {verb}: {'; '.join(fixes)}" if fixes else f"{found}; nothing to fix"
