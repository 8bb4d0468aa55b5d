"""The store as the tests drive it: the real parts, plus the worker's steps one
call at a time (test-only helpers live here, not in jobqueue)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis

from jobqueue.event_log import LogObserver
from jobqueue.events import Counts, Observers
from jobqueue.model import Job
from jobqueue.producer import Producer
from jobqueue.reaper import Reaper
from jobqueue.scheduler import Scheduler
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.store.connection import OwnConnection
from jobqueue.store.outcomes import Result
from jobqueue.store.transitions import Claim


class Harness:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.store = Store(redis, settings)
        self.redis = redis
        self.settings = settings
        self.keys = self.store.keys
        self.transitions = self.store.transitions
        self.inspect = self.store.inspect
        self.producer = Producer(self.store)
        # What a producer does.
        self.enqueue = self.producer.enqueue
        self.enqueue_many = self.producer.enqueue_many
        self.get = self.producer.get
        self.cancel = self.producer.cancel
        self.retry = self.producer.retry
        # What the schedulers and reapers made here report.
        self.events = Counts()
        self.notify = Observers([LogObserver()], counts=self.events).notify

    def scheduler(self, job_types: Collection[str] | None = None, **options: Any) -> Scheduler:
        return Scheduler(self.store, job_types, self.notify, **options)

    def reaper(self, job_types: Collection[str] | None = None, **settings: Any) -> Reaper:
        """A reaper on this store, its timings from the store's settings but for `settings`."""
        store = Store(self.redis, dataclasses.replace(self.settings, **settings)) if settings else self.store
        return Reaper(store, job_types, self.notify)

    def own_connection(self) -> OwnConnection:
        return self.store.own_connection()

    async def pop(self, connection: OwnConnection, job_type: str, timeout_s: float) -> str | None:
        return await self.transitions.pop(connection, job_type, timeout_s)

    async def claim(
        self, job_type: str, job_id: str, worker_id: str, lease_ms: int, default_max_attempts: int = 1
    ) -> Claim:
        """Claims one popped id, as an idle worker does."""
        [claim] = await self.transitions.claim(job_type, [job_id], worker_id, lease_ms, default_max_attempts)
        return claim

    async def claimed(
        self, job_type: str, job_id: str, worker_id: str, lease_ms: int, default_max_attempts: int = 1
    ) -> Job:
        """Claims one popped id, which must be claimed."""
        claim = await self.claim(job_type, job_id, worker_id, lease_ms, default_max_attempts)
        assert isinstance(claim, Job), claim
        return claim

    async def failed_ids(self, job_type: str, limit: int = 100) -> list[str]:
        """The type's dead letters, most recent first."""
        ids: list[bytes] = await self.redis.zrevrange(self.keys.queue(job_type).failed, 0, limit - 1)  # type: ignore[assignment]
        return [i.decode() for i in ids]

    async def complete(self, job: Job) -> Result:
        """Records one successful run, as a worker's round does."""
        [record], _, _ = await self.transitions.round(job.type, job.worker_id, [job])
        return record
