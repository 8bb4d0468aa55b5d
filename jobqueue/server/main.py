"""`jobqueue server`: Hypercorn serving the app, plus a scheduler and a reaper."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ..process import configure_logging, run_until_stopped
from ..settings import Settings
from .asgi import build
from .cors import check_cors
from .streams import Streams, close_when

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
    config.graceful_timeout = settings.server_shutdown_grace_s
    return config


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serves on Hypercorn until `stop` is set."""
    log.info(
        "jobqueue server on %s:%d, Redis %s", settings.host, settings.port, _redacted(settings.redis_url)
    )
    streams = Streams()
    # The streams end before Hypercorn's shutdown, which then finds idle connections to close.
    trigger = functools.partial(close_when, stop, streams, settings.server_shutdown_grace_s)
    await hypercorn_serve(build(settings, streams), hypercorn_config(settings), shutdown_trigger=trigger)
    log.info("jobqueue server stopped")


def run_h2corn(settings: Settings) -> None:
    """Replaces this process with h2corn serving the same app (gRPC on, HTTP/1.1 on)."""
    check_cors(settings.cors_origins, settings.cors_allow_headers, settings.cors_allow_credentials)
    h2corn = shutil.which("h2corn")
    if h2corn is None:
        raise FileNotFoundError("h2corn is not installed: pip install 'jobqueue[h2corn]'")
    configure_logging()
    log.info(
        "jobqueue server on %s:%d (h2corn), Redis %s",
        settings.host,
        settings.port,
        _redacted(settings.redis_url),
    )
    # The new process's factory (asgi.build) reads the settings back from its environment.
    os.execve(h2corn, [
        h2corn, "--factory", "jobqueue.server.asgi:build", "--grpc", "--http1",
        "--host", settings.host, "--port", str(settings.port), "--no-access-log",
        "--timeout-graceful-shutdown", str(settings.server_shutdown_grace_s),
    ], {**os.environ, **settings.to_env()})  # fmt: skip


def run(settings: Settings) -> None:
    """Serves until SIGINT or SIGTERM."""
    check_cors(settings.cors_origins, settings.cors_allow_headers, settings.cors_allow_credentials)
    run_until_stopped(lambda stop: serve(settings, stop))


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.split('@', 1)[1]}"
