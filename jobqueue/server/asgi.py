"""The server as one ASGI app that owns its resources, for any ASGI server.

Its lifespan startup starts the scheduler and the reaper; shutdown stops them
and closes the Redis client. `jobqueue server` runs it on Hypercorn (the
default) or, with `--server h2corn` (the `jobqueue[h2corn]` extra), on h2corn,
which runs `h2corn --factory jobqueue.server.asgi:build` in a new process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..event_log import LogObserver
from ..events import Observers
from ..metrics.exposition import ServerMetrics
from ..process import collect_young_rarely, configure_logging, freeze_startup_heap, log_level
from ..producer import Producer
from ..reaper import Reaper
from ..scheduler import Scheduler
from ..settings import Settings
from ..store import Store
from .app import create_app
from .streams import Streams, end_on_signals


def build(settings: Settings | None = None, streams: Streams | None = None) -> Any:
    """The app for `settings` (default: from the environment, as h2corn's factory).
    Given `streams`, the caller ends them on shutdown (serve()); without, SIGTERM and
    SIGINT do (h2corn)."""
    settings = settings or Settings.from_env()
    own_signals = streams is None
    if own_signals:  # a process of h2corn's: the level `jobqueue server` passed in its environment
        configure_logging()
        logging.getLogger().setLevel(log_level())
        if settings.tracing:
            from ..tracing import start  # noqa: PLC0415 - only with tracing on

            start("jobqueue-server")
    streams = streams or Streams()
    store = Store.open(settings)
    metrics = ServerMetrics(store)
    notify = Observers([LogObserver(), metrics.jobs]).notify
    background: list[asyncio.Task[None]] = []

    async def startup() -> None:
        if own_signals:
            end_on_signals(streams)
        background.append(asyncio.create_task(Scheduler(store, None, notify).run()))
        background.append(asyncio.create_task(Reaper(store, None, notify).run()))
        # The app is built and the server about to serve: what exists now stays.
        freeze_startup_heap()
        collect_young_rarely()

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background, timeout=5)
        await store.aclose()

    return create_app(
        Producer(store, notify), streams=streams, on_startup=startup, on_shutdown=shutdown, metrics=metrics
    )
