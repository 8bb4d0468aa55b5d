"""Memory safety of the store: Redis's eviction policy checked at start
(store/memory_policy.py), through `jobqueue server` and `jobqueue worker`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobqueue.redis_server import RedisServer, find_server_binary, free_port

from .conftest import ROOT, _wait_port, jobqueue_process, until
from .edge import error_lines

WORKER = ["worker", "tests/worker_apps.py", "--processes", "1"]


def evicting_redis(tmp_path: Path, *extra: str) -> RedisServer:
    if find_server_binary() is None:
        pytest.skip("needs redis-server")
    return RedisServer(tmp_path / "redis", extra_args=["--maxmemory-policy", "allkeys-lru", *extra])


@pytest.fixture
def lru_redis(tmp_path: Path) -> Iterator[str]:
    with evicting_redis(tmp_path) as server:
        yield server.url


def refused(args: list[str], redis_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env={**_env(), "JOBQUEUE_REDIS_URL": redis_url},
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "JOBQUEUE_ALLOW_EVICTION"}


def assert_refusal(result: subprocess.CompletedProcess[str], command: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"jobqueue {command}: Redis's maxmemory-policy is allkeys-lru"), result.stderr
    for named in ("noeviction", "CONFIG SET maxmemory-policy noeviction", "JOBQUEUE_ALLOW_EVICTION=1",
                  "--allow-eviction"):  # fmt: skip
        assert named in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr


def server_args() -> list[str]:
    return ["server", "--host", "127.0.0.1", "--port", str(free_port())]


@pytest.mark.parametrize("server", ["hypercorn", "h2corn"])
def test_a_server_refuses_a_redis_that_evicts(lru_redis: str, server: str) -> None:
    if server == "h2corn" and shutil.which("h2corn") is None:
        pytest.skip("h2corn is not installed")
    assert_refusal(refused([*server_args(), "--server", server], lru_redis), "server")


def test_a_worker_refuses_a_redis_that_evicts(lru_redis: str) -> None:
    assert_refusal(refused(WORKER, lru_redis), "worker")


def test_a_supervisor_refuses_it_once_before_starting_processes(lru_redis: str) -> None:
    result = refused(["worker", "tests/worker_apps.py", "--processes", "2"], lru_redis)
    assert_refusal(result, "worker")
    assert "worker process" not in result.stderr  # no child started


def test_without_config_the_policy_is_read_from_info(tmp_path: Path) -> None:
    """CONFIG renamed away (as managed services do): INFO memory tells the policy."""
    with evicting_redis(tmp_path, "--rename-command", "CONFIG", '""') as server:
        assert_refusal(refused(WORKER, server.url), "worker")


def test_allowed_eviction_starts_with_a_warning(tmp_path: Path, lru_redis: str) -> None:
    """JOBQUEUE_ALLOW_EVICTION=1 (server) and --allow-eviction (worker): they start, run,
    stop cleanly, and each says what it risks once as a WARNING."""
    port = free_port()
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = ["server", "--host", "127.0.0.1", "--port", str(port)]
    with (
        jobqueue_process(server, server_log, JOBQUEUE_REDIS_URL=lru_redis, JOBQUEUE_ALLOW_EVICTION="1") as p,
        jobqueue_process([*WORKER, "--allow-eviction"], worker_log, JOBQUEUE_REDIS_URL=lru_redis),
    ):
        _wait_port(port, p)
        until(lambda: "handling 'sleepy'" in worker_log.read_text(), "the worker running")
    for log in (server_log, worker_log):
        text = log.read_text()
        assert text.count("WARNING") == 1 and "maxmemory-policy is allkeys-lru" in text, text
        assert not error_lines(text), text


def test_on_a_cluster_one_master_that_evicts_is_refused(cluster_redis_url: str) -> None:
    """Every master of a Redis Cluster is checked: here the last one evicts."""
    with redis.RedisCluster.from_url(cluster_redis_url) as cluster:
        host, port = [(node.host, int(node.port)) for node in cluster.get_primaries()][-1]
    last = redis.Redis(host=host, port=port)
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = refused([*WORKER, "--redis-cluster"], cluster_redis_url)
        assert_refusal(result, "worker")
    finally:
        last.config_set("maxmemory-policy", "noeviction")
        last.close()


def test_a_supervisor_checks_the_redis_its_workers_are_given(
    tmp_path: Path, lru_redis: str, redis_url: str
) -> None:
    """A workers module whose worker names its own Redis (Worker(settings=...)): the
    supervisor checks that one, not the environment's (here a Redis that would pass)."""
    module = tmp_path / "own_redis_worker.py"
    module.write_text(
        "from jobqueue.settings import Settings\n"
        "from jobqueue.worker import Job, Worker\n"
        "async def noop(job: Job) -> None: ...\n"
        f"worker = Worker('own', noop, settings=Settings(redis_url={lru_redis!r}))\n"
    )
    result = refused(["worker", str(module), "--processes", "2"], redis_url)
    assert_refusal(result, "worker")
    assert "worker process" not in result.stderr  # refused before any child started
