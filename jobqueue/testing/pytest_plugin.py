"""The pytest plugin of jobqueue.testing: fixtures for tests of handlers and of code that enqueues.

Turn it on in the project's top conftest.py (or with `-p jobqueue.testing.pytest_plugin`):

    pytest_plugins = ["jobqueue.testing.pytest_plugin"]

It is not loaded by itself (no `pytest11` entry point): importing jobqueue
would cost every pytest run in the environment time, whether it tests jobs or
not. Fixtures (docs/testing.md):

- `jobqueue_redis` (session): the private Redis (a RedisServer: `url`, `port`).
- `jobqueue_redis_url`: its URL, the database flushed before the test.
- `jobqueue_settings`: Settings on it, with short reaper timings.
- `jobqueue_inline`: an empty eager InlineQueue (`register` the workers).

The Redis starts when the first test asks for one of the first three.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from ..redis_server import HOW_TO_GET_REDIS, RedisServer, find_server_binary
from ..settings import Settings
from .inline import InlineQueue
from .redis import private_redis


@pytest.fixture(scope="session")
def jobqueue_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the session (one per xdist worker). Fails the test,
    saying how to install one, where no Redis can be found."""
    if find_server_binary() is None:
        pytest.fail(HOW_TO_GET_REDIS, pytrace=False)
    with private_redis(tmp_path_factory.mktemp("jobqueue-redis")) as server:
        yield server


@pytest.fixture
def jobqueue_redis_url(jobqueue_redis: RedisServer) -> str:
    """The private Redis' URL; its database is empty when the test starts."""
    with redis.Redis.from_url(jobqueue_redis.url) as client:
        client.flushdb()
    return jobqueue_redis.url


@pytest.fixture
def jobqueue_settings(jobqueue_redis_url: str) -> Settings:
    """Settings on the private Redis. A killed worker's jobs come back within a
    second or so (the reaper looks every 0.2 s, a popped id waits 1 s), and the
    reaper does not wait for workers after the young Redis' start."""
    return Settings(
        redis_url=jobqueue_redis_url, reaper_interval_s=0.2, claim_timeout_s=1.0, restart_grace_s=0.0
    )


@pytest.fixture
def jobqueue_inline() -> InlineQueue:
    """An empty eager InlineQueue."""
    return InlineQueue()
