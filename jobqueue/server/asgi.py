"""The server as one ASGI app that owns its resources, for any ASGI server.

Its lifespan startup connects to Redis and starts the scheduler and the reaper;
shutdown stops them. `jobqueue server` runs it on Hypercorn (the default) or, with
`--server h2corn` (the `jobqueue[h2corn]` extra), on h2corn, which runs
`h2corn --factory jobqueue.server.asgi:build`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config import Settings, connect
from ..reaper import Reaper
from ..scheduler import Scheduler
from ..store import JobStore, Keyspace
from .app import create_app


def build(settings: Settings | None = None) -> Any:
    """The app for `settings` (default: from the environment)."""
    settings = settings or Settings.from_env()
    redis = connect(settings.redis_url)
    store = JobStore(
        redis,
        keys=Keyspace(settings.prefix),
        retention_ms=settings.retention_ms,
        max_payload_bytes=settings.max_payload_bytes,
        idempotency_window_ms=settings.idempotency_window_ms,
    )
    background: list[asyncio.Task[None]] = []

    async def startup() -> None:
        background.append(asyncio.create_task(Scheduler(store).run()))
        background.append(asyncio.create_task(Reaper.from_settings(store, settings).run()))

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background, timeout=5)
        await redis.aclose()

    return create_app(
        store,
        cors_origins=settings.cors_origins,
        on_startup=startup,
        on_shutdown=shutdown,
        timeouts=settings,
    )
