"""Shared fixtures: a private Redis, a store on it, and a `jobqueue server` subprocess.

Redis: a redis-server (or valkey-server) child process on a free loopback port
(see jobqueue/redis_server.py). When none is installed and a Docker engine
answers, a testcontainers Redis is used instead. Never a Redis that happens to
run on 6379.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from jobqueue.model import JobStatus
from jobqueue.redis_cluster import LocalCluster
from jobqueue.redis_server import RedisServer, find_server_binary, free_port
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.store.client import connect
from jobqueue.store.connection import OwnConnection

from .edge import error_lines
from .harness import Harness

ROOT = Path(__file__).resolve().parent.parent

# `jobqueue worker` runs one process per core by default; the suite's tests of a worker
# process (kill it, read its log, count its workers) mean one process. The tests of
# --processes (test_worker_processes.py) give it.
os.environ.setdefault("JOBQUEUE_WORKER_PROCESSES", "1")


def _docker_redis_url() -> Iterator[str] | None:
    try:
        from testcontainers.redis import RedisContainer  # type: ignore[import-not-found]  # noqa: PLC0415

        import docker  # type: ignore[import-not-found]  # noqa: PLC0415

        docker.from_env(timeout=2).ping()
    except Exception:  # noqa: BLE001 - no client library or no engine: not available
        return None

    def run() -> Iterator[str]:
        with RedisContainer("redis:7-alpine") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"

    return run()


# -- the Redis targets: a single Redis, and a local Redis Cluster ---------------------------
# A module runs against both with `pytestmark = pytest.mark.redis_targets`: its tests get
# the `redis_target` parameter ("single", "cluster"), and `redis_url`, `redis`, `settings`,
# `server_url` and `spawn` follow it. Other modules run against the single Redis only.
TARGETS = ("single", "cluster")
# The URLs of the suite's clusters: a process started on one is told so
# (JOBQUEUE_REDIS_CLUSTER=1, `redis_env`).
CLUSTER_URLS: set[str] = set()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_target" in metafunc.fixturenames and metafunc.definition.get_closest_marker("redis_targets"):
        metafunc.parametrize("redis_target", TARGETS, indirect=True, scope="session")


def redis_env(redis_url: str) -> dict[str, str]:
    """What a jobqueue process needs to reach `redis_url` (a cluster's: the flag too)."""
    return {
        "JOBQUEUE_REDIS_URL": redis_url,
        "JOBQUEUE_REDIS_CLUSTER": "1" if redis_url in CLUSTER_URLS else "0",
    }


def every_node(redis: Redis) -> dict[str, Any]:
    """Options that send a node-local command (PUBSUB NUMSUB, CLIENT KILL...) to every
    node of a cluster, whose replies redis-py then merges; none for a single Redis."""
    return {"target_nodes": RedisCluster.ALL_NODES} if isinstance(redis, RedisCluster) else {}


async def clients(redis: Redis) -> list[dict[str, Any]]:
    """CLIENT LIST: every connection to Redis (to every node of a cluster)."""
    found: list[dict[str, Any]] | dict[Any, list[dict[str, Any]]]
    found = await redis.client_list(**every_node(redis))
    return [c for node in found.values() for c in node] if isinstance(found, dict) else found


async def subscribers(redis: Redis, channel: str) -> int:
    """Subscribers of a (classic) Pub/Sub channel, on every node of a cluster."""
    [(_, count)] = await redis.pubsub_numsub(channel, **every_node(redis))
    return int(count)


@pytest.fixture(scope="session")
def redis_target(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def single_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if find_server_binary() is None:
        containers = _docker_redis_url()
        if containers is None:
            pytest.fail("no redis-server on PATH and no Docker engine: install redis-server (see README)")
        yield from containers
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Redis Cluster: 3 masters with a replica each (jobqueue/redis_cluster.py)."""
    if find_server_binary() is None:
        pytest.skip("the cluster target needs redis-server")
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        CLUSTER_URLS.add(cluster.url)
        yield cluster.url


@pytest.fixture(scope="session")
def redis_url(redis_target: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{redis_target}_redis_url")
    return url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url, cluster=redis_url in CLUSTER_URLS)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Short reaper timings, so recovery tests finish quickly."""
    return Settings(
        redis_url=redis_url,
        reaper_interval_s=0.2,
        claim_timeout_s=1.0,
        restart_grace_s=0.0,
        redis_cluster=redis_url in CLUSTER_URLS,
    )


@pytest.fixture
async def blocking(redis: Redis, settings: Settings) -> AsyncIterator[OwnConnection]:
    """A connection of its own for blocking pops (BLMOVE holds it while it waits)."""
    connection = Store(redis, settings).own_connection()
    yield connection
    await connection.aclose()


@pytest.fixture
def store(redis: Redis, settings: Settings) -> Harness:
    """The keyspace the suite's server and worker processes use: for tests that talk to them."""
    return Harness(redis, settings)


@pytest.fixture
def private_store(redis: Redis, settings: Settings) -> Harness:
    """A keyspace of the test's own: the suite's shared server runs a scheduler and a reaper
    on the default one, which would race a test that drives those transitions itself."""
    return Harness(redis, dataclasses.replace(settings, prefix=f"test-{uuid.uuid4().hex[:8]}"))


async def eventually(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for the polling, not one await
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Polls `check` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(interval)


def status_is(store: Harness, job_id: str, status: JobStatus) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the job has `status`."""

    async def check() -> bool:
        return (await store.get(job_id)).status is status

    return check


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


@contextlib.contextmanager
def jobqueue_server(redis_url: str, log: Path, *, server: str = "hypercorn", **env: str) -> Iterator[str]:
    """A `jobqueue server` subprocess on a free loopback port; it must exit 0 on SIGTERM."""
    with jobqueue_server_process(redis_url, log, server=server, **env) as (url, _):
        yield url


@contextlib.contextmanager
def jobqueue_process(args: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A `jobqueue` subprocess, its output in `log`; SIGTERM at the end, and it must exit 0."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", *args],
            env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise
    assert code == 0, f"exit status {code}; log:\n{log.read_text(errors='replace')[-3000:]}"


@contextlib.contextmanager
def jobqueue_server_process(
    redis_url: str, log: Path, *, server: str = "hypercorn", **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`jobqueue_server`, with its process (to be stopped by the test, or else at the end)."""
    port = free_port()
    args = ["server", "--server", server, "--host", "127.0.0.1", "--port", str(port)]
    with jobqueue_process(args, log, **{**redis_env(redis_url), **env}) as process:
        _wait_port(port, process)
        yield f"http://127.0.0.1:{port}", process


def until(check: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    """Polls `check` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# The one ERROR the shared server logs on purpose: test_api_errors.py corrupts a
# job to see an unexpected error come back as `internal` (and logged as a bug).
PROVOKED_ERRORS = ("GetJob: unexpected error", "ValueError: 'garbage' is not a valid JobStatus")


@pytest.fixture(scope="session")
def server_url(redis_target: str, request: pytest.FixtureRequest) -> str:
    """The suite's shared server on the test's Redis target (`single_server_url`)."""
    url: str = request.getfixturevalue(f"{redis_target}_server_url")
    return url


def _shared_server(redis_url: str, log: Path) -> Iterator[str]:
    with jobqueue_server(redis_url, log, JOBQUEUE_CORS_ORIGINS="https://app.example") as url:
        yield url
    errors = error_lines(log.read_text(errors="replace"), PROVOKED_ERRORS)
    assert not errors, "the shared server logged errors:\n" + "\n---\n".join(errors[:10])


@pytest.fixture(scope="session")
def single_server_url(single_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The suite's shared server (CORS allowed for https://app.example). Whatever
    the suite does to it, it may log no error but the one provoked on purpose."""
    yield from _shared_server(single_redis_url, tmp_path_factory.mktemp("server") / "server.log")


@pytest.fixture(scope="session")
def cluster_server_url(cluster_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same on the local Redis Cluster."""
    yield from _shared_server(cluster_redis_url, tmp_path_factory.mktemp("cluster-server") / "server.log")


@dataclasses.dataclass(frozen=True)
class EdgeServer:
    """A server of the edge tests: its own Redis and key prefix, its log and pid."""

    kind: str
    url: str
    pid: int
    log: Path
    redis_url: str
    prefix: str


@pytest.fixture(scope="session")
def edge_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the edge tests' own: they count its keys."""
    if find_server_binary() is None:
        pytest.skip("the edge tests need redis-server")
    with RedisServer(tmp_path_factory.mktemp("edge-redis")) as server:
        yield server.url


@pytest.fixture(scope="session", params=["hypercorn", "h2corn"])
def edge_server(
    request: pytest.FixtureRequest, edge_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeServer]:
    """One server of each kind for the edge and fuzz tests, with default settings."""
    kind: str = request.param
    if kind == "h2corn" and shutil.which("h2corn") is None:
        pytest.skip("h2corn is not installed")
    log = tmp_path_factory.mktemp(f"edge-{kind}") / "server.log"
    prefix = f"edge-{kind}"
    with jobqueue_server_process(edge_redis, log, server=kind, JOBQUEUE_PREFIX=prefix) as (url, process):
        yield EdgeServer(kind, url, process.pid, log, edge_redis, prefix)
        assert process.poll() is None, f"the {kind} server died; log:\n{log.read_text()[-3000:]}"


# -- worker subprocesses (tests/worker_apps.py) -------------------------------------------

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(redis_url: str, tmp_path: Path) -> Iterator[Spawn]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(crash_at: str = "", target: str = "tests/worker_apps.py") -> subprocess.Popen[bytes]:
        env = dict(
            os.environ,
            **redis_env(redis_url),
            JOBQUEUE_REAPER_INTERVAL_S="0.2",
            JOBQUEUE_CLAIM_TIMEOUT_S="1",
            JOBQUEUE_RESTART_GRACE_S="0",  # the suite's Redis is young
            JOBQUEUE_CRASH_AT=crash_at,
            TEST_STARTS_FILE=str(tmp_path / "starts"),  # worker_apps.nap's
        )
        log = tmp_path / f"worker{len(processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "jobqueue.cli", "worker", target],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        LOGS[process.pid] = log
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


LOGS: dict[int, Path] = {}


def log_of(process: subprocess.Popen[bytes]) -> str:
    return LOGS[process.pid].read_text(errors="replace")


async def runs(store: Harness, key: str) -> list[tuple[str, int, int]]:
    entries = await store.redis.lrange(key, 0, -1)
    return [(i, int(a), int(p)) for i, a, p in (e.decode().split() for e in entries)]


def json_documents(text: str) -> list[Any]:
    """The JSON objects in a command's output (grpcurl pretty-prints, curl does not), in order."""
    decoder = json.JSONDecoder()
    documents = []
    index = text.find("{")
    while index >= 0:
        value, end = decoder.raw_decode(text, index)
        documents.append(value)
        index = text.find("{", end)
    return documents
