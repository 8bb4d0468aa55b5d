"""`jobqueue dev`: Redis, the server and the example worker in one terminal.

Redis comes from REDIS_URL (or JOBQUEUE_REDIS_URL / REDIS_ADDR) when set;
otherwise a redis-server or valkey-server from PATH, or the Valkey binary of
the `jobqueue[embedded]` extra, runs as a child process with AOF on and its
data in the user's data directory, so jobs survive a restart. Dev keeps that
Redis running (restarting it if it dies) and holds its data directory, so a
second dev cannot start a second Redis on the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .ports import AddressInUse, check_port_free
from .process import configure_logging, run_until_stopped
from .redis_cluster import LocalCluster
from .redis_server import (
    HOW_TO_GET_REDIS,
    DataDirInUse,
    RedisServer,
    describe_exit,
    find_server_binary,
    redis_port_free,
)
from .settings import Settings
from .supervise import QuickDeaths

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("jobqueue.dev")

EXAMPLE_WORKER = "jobqueue.examples.print_worker"
REDIS_URL_VARIABLES = ("JOBQUEUE_REDIS_URL", "REDIS_URL", "REDIS_ADDR")
# A Redis that exits this soon after it started again died of something a restart
# does not cure (a bad AOF, a port taken...): after this many such deaths in a row,
# dev gives up rather than restart it forever.
QUICK_DEATH_S = 30.0
QUICK_DEATHS_BEFORE_GIVING_UP = 5
POLL_S = 0.25


def user_data_dir() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "jobqueue"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jobqueue"


def run_dev(
    settings: Settings, *, worker_specs: Sequence[str] | None, redis_port: int = 6379, cluster: bool = False
) -> int:
    """Runs the server and the workers of `worker_specs` (None: the packaged example
    worker; empty: none) on `settings`, with a Redis of its own unless the environment
    names one. With `cluster`, that Redis is a Redis Cluster: a local one of its own
    (throwaway: its data go with it), or the one the environment names. Returns the
    process's exit code."""
    configure_logging()
    own_redis = not any(os.environ.get(v) for v in REDIS_URL_VARIABLES)
    binary = find_server_binary() if own_redis else None
    if own_redis and binary is None:
        print(f"jobqueue dev: {HOW_TO_GET_REDIS}", file=sys.stderr)
        return 1
    try:
        check_port_free(settings.host, settings.port, "is another jobqueue dev running? use --port")
    except AddressInUse as exc:
        print(f"jobqueue dev: {exc}", file=sys.stderr)
        return 1
    # Imported and loaded before Redis starts: a worker module that fails to load
    # leaves nothing behind.
    from .loader import load_workers  # noqa: PLC0415

    specs = [EXAMPLE_WORKER] if worker_specs is None else list(worker_specs)
    loaded = [(spec, load_workers(spec)) for spec in specs]
    workers = [worker for _, spec_workers in loaded for worker in spec_workers]

    if cluster:
        return _run_on_a_cluster(dataclasses.replace(settings, redis_cluster=True), loaded, binary)
    redis_server: RedisServer | None = None
    if binary is not None:
        redis_server = _start_redis(binary, redis_port)
        if redis_server is None:
            return 1
        settings = dataclasses.replace(settings, redis_url=redis_server.url)
    _say_what_runs(settings, loaded, redis_server)
    keeper = None if redis_server is None else RedisKeeper(redis_server)
    try:

        async def main(stop: asyncio.Event) -> None:
            keeping = None if keeper is None else asyncio.create_task(keeper.run(stop))
            try:
                await _serve_all(settings, workers, stop)
            finally:
                if keeping is not None:
                    keeping.cancel()
                    await asyncio.gather(keeping, return_exceptions=True)

        run_until_stopped(main)
    finally:
        if redis_server is not None:
            redis_server.stop()
            log.info("Redis stopped")
    return 1 if keeper is not None and keeper.gave_up else 0


async def _serve_all(settings: Settings, workers: Sequence[Worker], stop: asyncio.Event) -> None:
    from .server import serve  # noqa: PLC0415

    await asyncio.gather(serve(settings, stop), *(w.serve(stop, settings=settings) for w in workers))


def _run_on_a_cluster(
    settings: Settings, loaded: Sequence[tuple[str, Sequence[Worker]]], binary: str | None
) -> int:
    """`run_dev` on a Redis Cluster: a local one (3 masters with a replica each, in a
    temporary directory, removed at the end; a node that dies is not restarted), or,
    with `binary` None, the one the environment names."""
    workers = [worker for _, spec_workers in loaded for worker in spec_workers]
    local: LocalCluster | None = None
    if binary is not None:
        local = LocalCluster(tempfile.mkdtemp(prefix="jobqueue-dev-cluster-"), binary=binary)
        try:
            local.start()
        except (RuntimeError, OSError) as exc:
            print(f"jobqueue dev: the Redis Cluster did not start: {exc}", file=sys.stderr)
            shutil.rmtree(local.data_dir, ignore_errors=True)
            return 1
        settings = dataclasses.replace(settings, redis_url=local.url)
    _say_what_runs(settings, loaded, None)
    if local is not None:
        ports = ", ".join(str(node.port) for node in local.nodes)
        log.info(
            "Redis Cluster: %s (nodes on ports %s; data in %s; --redis-cluster for other processes)",
            local.url,
            ports,
            local.data_dir,
        )
    try:
        run_until_stopped(lambda stop: _serve_all(settings, workers, stop))
    finally:
        if local is not None:
            local.stop()
            shutil.rmtree(local.data_dir, ignore_errors=True)
            log.info("Redis Cluster stopped")
    return 0


def _start_redis(binary: str, port: int) -> RedisServer | None:
    """Dev's Redis on `port` (another port if it is taken, 0: any), or None once the
    reason it cannot start is printed."""
    server = RedisServer(
        user_data_dir() / "redis",
        binary=binary,
        port=port if port and redis_port_free(port) else None,
        appendonly=True,
        exclusive=True,
    )
    try:
        server.start()
    except DataDirInUse as exc:
        holder = f" (pid {exc.holder})" if exc.holder else ""
        print(
            f"jobqueue dev: another jobqueue dev{holder} uses the data dir {exc.data_dir}: "
            "stop it first, or use the one that runs",
            file=sys.stderr,
        )
        return None
    except (RuntimeError, OSError) as exc:
        server.stop()
        print(f"jobqueue dev: Redis did not start: {exc}", file=sys.stderr)
        return None
    if port and server.port != port:
        log.warning(
            "port %d is in use, so this Redis runs on port %d: give other processes REDIS_URL=%s",
            port,
            server.port,
            server.url,
        )
    return server


class RedisKeeper:
    """Restarts dev's Redis (same port, same data) whenever it exits, until `stop` is
    set. After QUICK_DEATHS_BEFORE_GIVING_UP quick deaths in a row it gives up, and
    sets `stop`: dev without its Redis serves nothing."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.gave_up = False

    async def run(self, stop: asyncio.Event) -> None:
        clock = asyncio.get_running_loop().time
        started, deaths = clock(), QuickDeaths(QUICK_DEATH_S, QUICK_DEATHS_BEFORE_GIVING_UP)
        while True:
            returncode = await self._exit(stop)
            if returncode is None:
                return
            how = describe_exit(returncode)
            if deaths.died(clock() - started):
                log.error(
                    "Redis exited (%s), %d times in a row within %.0f s of starting: giving up, "
                    "stopping everything (Redis' log: %s)",
                    how,
                    deaths.count,
                    QUICK_DEATH_S,
                    self.server.log_path,
                )
                self.gave_up = True
                stop.set()
                return
            log.warning("Redis exited (%s); restarting it on port %d", how, self.server.port)
            # Each quick death in a row waits a second longer, so a Redis that cannot
            # start is not restarted in a tight loop.
            if await _stopped_within(stop, deaths.count - 1):
                return
            self.server.launch()
            started = clock()
            if await self._answers(stop):
                log.info("Redis is back on %s", self.server.url)

    async def _exit(self, stop: asyncio.Event) -> int | None:
        """The child's return code once it exits (and is reaped); None once `stop` is set."""
        process = self.server.process
        assert process is not None
        while not await _stopped_within(stop, POLL_S):
            returncode = process.poll()
            if returncode is not None:
                return returncode
        return None

    async def _answers(self, stop: asyncio.Event, timeout_s: float = 15.0) -> bool:
        """Whether the restarted child answers PING before it exits, `stop`, or the
        timeout (after which it is killed, and counts as a quick death)."""
        process = self.server.process
        assert process is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while process.poll() is None and not stop.is_set():
            if await asyncio.to_thread(self.server.ping):
                return True
            if asyncio.get_running_loop().time() > deadline:
                log.warning("Redis did not answer within %.0f s of starting; killing it", timeout_s)
                self.server.kill()
                break
            await asyncio.sleep(0.05)
        return False


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Waits up to `seconds` for `stop`; whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


def _say_what_runs(
    settings: Settings, loaded: Sequence[tuple[str, Sequence[Worker]]], redis_server: RedisServer | None
) -> None:
    if loaded:
        described = "; ".join(
            f"{', '.join(repr(w.job_type) for w in workers)} from {spec}" for spec, workers in loaded
        )
        log.info("workers: %s", described)
    else:
        log.info("workers: none (add some with --worker MODULE)")
    scheme = "https" if settings.tls_cert else "http"  # JOBQUEUE_TLS_CERT reaches dev too
    log.info("API: %s://%s:%d (Ctrl-C stops everything)", scheme, settings.host, settings.port)
    log.info("dashboard: %s://%s:%d/", scheme, settings.host, settings.port)
    if redis_server is None and settings.redis_cluster:
        return  # the caller says which cluster
    if redis_server is None:
        # Not the URL itself, which may hold a password: the server logs it without.
        named_by = next((v for v in REDIS_URL_VARIABLES if os.environ.get(v)), "the environment")
        log.info("Redis: the one %s names", named_by)
    else:
        log.info(
            "Redis: %s (%s, data in %s)",
            redis_server.url,
            Path(redis_server.binary).name,
            redis_server.data_dir,
        )
