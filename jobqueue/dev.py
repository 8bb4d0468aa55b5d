"""`jobqueue dev`: Redis, the server and the example worker in one terminal.

Redis comes from REDIS_URL (or JOBQUEUE_REDIS_URL / REDIS_ADDR) when set;
otherwise a redis-server or valkey-server from PATH, or the Valkey binary of
the `jobqueue[embedded]` extra, runs as a child process with AOF on and its
data in the user's data directory, so jobs survive a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from .process import configure_logging, run_until_stopped
from .redis_server import HOW_TO_GET_REDIS, RedisServer, find_server_binary
from .settings import Settings

log = logging.getLogger("jobqueue.dev")


def user_data_dir() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "jobqueue"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jobqueue"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_dev(settings: Settings, *, worker_specs: Sequence[str] | None, redis_port: int = 6379) -> int:
    """Runs the server and the workers of `worker_specs` (None: the example worker) on
    `settings`, with a Redis of its own unless the environment names one."""
    if worker_specs is None:
        worker_specs = ["examples/print_worker.py"] if Path("examples/print_worker.py").is_file() else []
    configure_logging()
    redis_server: RedisServer | None = None
    if not any(os.environ.get(v) for v in ("JOBQUEUE_REDIS_URL", "REDIS_URL", "REDIS_ADDR")):
        binary = find_server_binary()
        if binary is None:
            print(f"jobqueue dev: {HOW_TO_GET_REDIS}", file=sys.stderr)
            return 1
        redis_server = RedisServer(
            user_data_dir() / "redis",
            binary=binary,
            port=redis_port if redis_port and _port_free(redis_port) else None,
            appendonly=True,
        )
        redis_server.start()
        settings = dataclasses.replace(settings, redis_url=redis_server.url)
        log.info("started %s on %s (data in %s)", Path(binary).name, redis_server.url, redis_server.data_dir)
    try:
        from .loader import load_workers  # noqa: PLC0415
        from .server import serve  # noqa: PLC0415

        workers = [w for spec in worker_specs for w in load_workers(spec)]

        async def main(stop: asyncio.Event) -> None:
            log.info("API on http://%s:%d (Ctrl-C stops everything)", settings.host, settings.port)
            await asyncio.gather(serve(settings, stop), *(w.serve(stop, settings=settings) for w in workers))

        run_until_stopped(main)
    finally:
        if redis_server is not None:
            redis_server.stop()
            log.info("Redis stopped")
    return 0
