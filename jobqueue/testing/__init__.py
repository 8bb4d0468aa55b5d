"""Helpers to test handlers and code that enqueues (docs/testing.md).

Without Redis or network, an in-memory queue that runs handlers at once:

    from jobqueue.testing import InlineQueue

    queue = InlineQueue(Worker("email", send_email))
    job = await queue.enqueue("email", b"to=a@example.com")

Against a real Redis, a private one (a child redis-server on a free loopback
port) and real workers in the test's event loop:

    with private_redis() as redis_server:
        settings = Settings(redis_url=redis_server.url)
        ...
        await drain(Worker("email", send_email), settings=settings)

With pytest, `pytest_plugins = ["jobqueue.testing.pytest_plugin"]` in the top
conftest.py offers the fixtures `jobqueue_redis_url` and `jobqueue_settings` (a
session's private Redis, flushed before each test) and `jobqueue_inline`.
Nothing here imports pytest but the plugin.
"""

from .inline import InlineQueue, InlineRun, InlineSyncClient
from .redis import async_private_redis, private_redis
from .workers import RunningWorkers, drain, run_worker

__all__ = [
    "InlineQueue",
    "InlineRun",
    "InlineSyncClient",
    "RunningWorkers",
    "async_private_redis",
    "drain",
    "private_redis",
    "run_worker",
]
