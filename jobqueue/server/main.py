"""`jobqueue server`: Hypercorn serving the app, plus a scheduler and a reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ..config import Settings, connect
from ..reaper import Reaper
from ..scheduler import Scheduler
from ..store import JobStore, Keyspace
from .app import create_app

log = logging.getLogger("jobqueue.server")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    # Hypercorn's default of 1000 requests per connection ends every 1000th
    # call of a long-lived gRPC channel with GOAWAY, which grpcio reports as
    # UNAVAILABLE; and its 5 s idle timeout drops pooled client connections.
    config.keep_alive_max_requests = 2**62
    config.keep_alive_timeout = 75
    config.include_server_header = False
    config.accesslog = None
    # Through the logging tree like everything else (Hypercorn's default adds a
    # stderr handler of its own, and each line then shows up twice).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    return config


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serves until `stop` is set (or SIGINT/SIGTERM when `stop` is None)."""
    redis = connect(settings.redis_url)
    store = JobStore(
        redis,
        keys=Keyspace(settings.prefix),
        retention_ms=settings.retention_ms,
        max_payload_bytes=settings.max_payload_bytes,
        idempotency_window_ms=settings.idempotency_window_ms,
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    reaper = Reaper.from_settings(store, settings)
    background = [asyncio.create_task(Scheduler(store).run()), asyncio.create_task(reaper.run())]
    app = create_app(store, cors_origins=settings.cors_origins)
    log.info(
        "jobqueue server on %s:%d, Redis %s", settings.host, settings.port, _redacted(settings.redis_url)
    )
    try:
        await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
    finally:
        for task in background:
            task.cancel()
        await asyncio.wait(background, timeout=5)
        await redis.aclose()
        log.info("jobqueue server stopped")


def run(settings: Settings) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.split('@', 1)[1]}"
