"""`jobqueue server`: Hypercorn serving the app, plus a scheduler and a reaper."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import shutil

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ..outage import redacted
from ..ports import AddressInUse, check_port_free
from ..process import configure_logging, log_format_in_use, run_until_stopped
from ..settings import Settings
from ..store.memory_policy import check_deployment
from ..store.redis_tls import check_tls_options
from . import h2corn_log, hypercorn_guard, hypercorn_writes, tls
from .asgi import build
from .auth import check_auth
from .cors import check_cors
from .streams import Streams, close_when

log = logging.getLogger("jobqueue.server")

# Bounds both servers apply to every connection: HTTP/2 streams open at once,
# and the size of a request's headers (Hypercorn's HTTP/1.1 parser takes a
# quarter of it, its default; h2corn's head limit is the whole).
MAX_STREAMS = 100
HEAD_BYTES = 64 * 1024
# How long h2corn waits for a request head (Hypercorn: the idle timeout).
HEADER_TIMEOUT_S = 10.0
IN_USE_HINT = "is another jobqueue server running? use --port (or JOBQUEUE_PORT)"


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    # Hypercorn's default of 1000 requests per connection ends every 1000th
    # call of a long-lived gRPC channel with GOAWAY, which grpcio reports as
    # UNAVAILABLE; and its 5 s idle timeout drops pooled client connections.
    config.keep_alive_max_requests = 2**62
    # Also how long a request's head may take: Hypercorn's idle timer runs
    # until the head is complete. Bodies and blocked responses: slow.py.
    config.keep_alive_timeout = settings.idle_timeout_s
    # No read timeout: a server stream's client may rightly send nothing for
    # hours (health Watch); slow.py bounds what is read and sent instead.
    config.read_timeout = None
    config.h11_max_incomplete_size = HEAD_BYTES // 4
    config.h2_max_concurrent_streams = MAX_STREAMS
    config.h2_max_header_list_size = HEAD_BYTES
    config.h2_max_inbound_frame_size = 2**14
    config.include_server_header = False
    config.accesslog = None
    # Through the logging tree like everything else (Hypercorn's default adds a
    # stderr handler of its own, and each line then shows up twice).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.server_shutdown_grace_s
    tls.configure_hypercorn(config, settings)
    return config


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serves on Hypercorn until `stop` is set. A port already taken raises AddressInUse
    before anything is logged as running."""
    tls.check(settings)
    check_port_free(settings.host, settings.port, IN_USE_HINT)
    await check_deployment(settings)
    log.info(
        "jobqueue server on %s:%d%s, Redis %s",
        settings.host,
        settings.port,
        " (TLS)" if tls.enabled(settings) else "",
        redacted(settings.redis_url),
    )
    hypercorn_guard.install()
    hypercorn_writes.install()
    streams = Streams()
    # The streams end before Hypercorn's shutdown, which then finds idle connections to close.
    trigger = functools.partial(close_when, stop, streams, settings.server_shutdown_grace_s)
    try:
        await hypercorn_serve(build(settings, streams), hypercorn_config(settings), shutdown_trigger=trigger)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or isinstance(exc, AddressInUse):
            raise
        # Taken between the check and Hypercorn's own bind.
        message = f"port {settings.port} on {settings.host} is in use: {IN_USE_HINT}"
        raise AddressInUse(errno.EADDRINUSE, message) from None
    log.info("jobqueue server stopped")


def run_h2corn(settings: Settings) -> None:
    """Replaces this process with h2corn serving the same app (gRPC on, HTTP/1.1 on)."""
    check_cors(settings.cors_origins, settings.cors_allow_headers, settings.cors_allow_credentials)
    check_auth(settings)
    h2corn = shutil.which("h2corn")
    if h2corn is None:
        raise FileNotFoundError(
            "h2corn is not installed: pip install 'jobqueue[h2corn]' "
            "(in a checkout: pip install -e '.[h2corn]')"
        )
    tls.check(settings)
    check_tls_options(settings.redis_url)  # here, as h2corn's process would fail with a traceback
    check_port_free(settings.host, settings.port, IN_USE_HINT)
    asyncio.run(check_deployment(settings))
    configure_logging()
    log.info(
        "jobqueue server on %s:%d (h2corn%s), Redis %s",
        settings.host,
        settings.port,
        ", TLS" if tls.enabled(settings) else "",
        redacted(settings.redis_url),
    )
    h2corn_log.filter_stderr()
    # The new process's factory (asgi.build) reads the settings, and the log level
    # and format (given by --log-level and --log-format, maybe), back from its environment.
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    os.execve(h2corn, [
        h2corn, "--factory", "jobqueue.server.asgi:build", "--grpc", "--http1",
        "--host", settings.host, "--port", str(settings.port), "--no-access-log",
        "--timeout-graceful-shutdown", str(settings.server_shutdown_grace_s),
        "--log-format", log_format_in_use(),
        *h2corn_limits(settings), *tls.h2corn_options(settings),
        # One process, whatever H2CORN_WORKERS says: /metrics then shows all of the
        # server's counts (docs/metrics.md), and one scheduler and reaper run.
        "--workers", "1",
    ], {**os.environ, **settings.to_env(), "JOBQUEUE_LOG_LEVEL": level,
        "JOBQUEUE_LOG_FORMAT": log_format_in_use()})  # fmt: skip


def h2corn_limits(settings: Settings) -> list[str]:
    """h2corn's bounds on slow and greedy clients, set explicitly (its own guard
    against rapid HTTP/2 resets is always on). It exempts native gRPC from its
    body timeouts; slow.py bounds those within the app, as under Hypercorn."""
    return [
        "--timeout-handshake", "5",
        "--timeout-request-header", f"{min(HEADER_TIMEOUT_S, settings.idle_timeout_s):g}",
        "--timeout-keep-alive", f"{settings.idle_timeout_s:g}",
        "--timeout-request-body-idle", f"{settings.body_idle_timeout_s:g}",
        "--h2-timeout-response-stall", f"{settings.send_timeout_s:g}",
        "--h2-timeout-write", f"{settings.send_timeout_s:g}",
        "--max-concurrent-streams", str(MAX_STREAMS),
        "--limit-request-head-size", str(HEAD_BYTES),
        "--limit-request-line", str(HEAD_BYTES // 4),
        "--limit-request-field-size", str(HEAD_BYTES // 4),
        "--limit-request-fields", "100",
        "--h2-max-header-list-size", str(HEAD_BYTES),
        "--h2-max-header-block-size", str(HEAD_BYTES),
    ]  # fmt: skip


def run(settings: Settings) -> None:
    """Serves until SIGINT or SIGTERM."""
    check_cors(settings.cors_origins, settings.cors_allow_headers, settings.cors_allow_credentials)
    check_auth(settings)
    run_until_stopped(lambda stop: serve(settings, stop))
