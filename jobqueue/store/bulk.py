"""The bulk calls (RetryJobs, CancelJobs, DeleteJobs): a transition for each job a
filter selects, a bounded number per call.

Each call reads the selection oldest first from where the previous one stopped
(listing.py's cursor, in the page token), at most `limit` index entries, and
runs the per-job transition on each job found, so a bulk change is exactly as
safe as the single ones, job by job (a job another call changed meanwhile is
refused by its script, and not counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..model import JobStatus
from ..selection import FINISHED, BulkOutcome, JobFilter, check_bulk_status
from .listing import decode_token, encode_token
from .outcomes import Result

if TYPE_CHECKING:
    from .listing import Lister
    from .transitions import Transitions

# Transitions on their way at once: the pool's connections are shared with every other call.
_CONCURRENT = 32


class Bulk:
    def __init__(self, lister: Lister, transitions: Transitions) -> None:
        self.lister = lister
        self.transitions = transitions

    async def retry(self, job_filter: JobFilter, limit: int, page_token: str) -> BulkOutcome:
        """Redrives the FAILED, CANCELLED or EXPIRED jobs selected (RetryJob each)."""
        check_bulk_status(job_filter, (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED), "RetryJobs")
        return await self._each(job_filter, limit, page_token, self.transitions.redrive, _changed)

    async def cancel(self, job_filter: JobFilter, limit: int, page_token: str) -> BulkOutcome:
        """Cancels the unfinished jobs selected (CancelJob each)."""
        check_bulk_status(
            job_filter, (JobStatus.UNSPECIFIED, JobStatus.PENDING, JobStatus.RUNNING), "CancelJobs"
        )
        return await self._each(job_filter, limit, page_token, self.transitions.cancel, _cancelled)

    async def delete(self, job_filter: JobFilter, limit: int, page_token: str) -> BulkOutcome:
        """Deletes the finished jobs selected."""
        check_bulk_status(job_filter, FINISHED, "DeleteJobs")
        return await self._each(job_filter, limit, page_token, self.transitions.delete, _changed)

    async def _each(
        self,
        job_filter: JobFilter,
        limit: int,
        page_token: str,
        change: Callable[[str], Awaitable[Result]],
        counts: Callable[[Result], bool],
    ) -> BulkOutcome:
        after = decode_token(page_token, job_filter, newest_first=False)
        selected = await self.lister.select(
            job_filter, newest_first=False, count=limit, after=after, examine=limit
        )
        turn = asyncio.Semaphore(_CONCURRENT)

        async def one(job_id: str) -> Result:
            async with turn:
                return await change(job_id)

        results = await asyncio.gather(*(one(job.id) for job in selected.jobs))
        return BulkOutcome(
            sum(map(counts, results)), encode_token(selected.cursor, job_filter, newest_first=False)
        )


def _changed(result: Result) -> bool:
    return result.ok


def _cancelled(result: Result) -> bool:
    # A cancel of a job cancelled already answers OK with that status: not this call's change.
    return result.ok and result.status is not JobStatus.CANCELLED
