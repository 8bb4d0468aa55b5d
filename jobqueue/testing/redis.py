"""A private Redis for tests: a child redis-server on a free loopback port, in a temp dir.

The suite's own approach (jobqueue/redis_server.py), made public: the child is
not daemonized, dies with its parent (Linux), keeps no data on disk and is
stopped when the block ends. Found as `jobqueue dev` finds one: $REDIS_SERVER,
redis-server or valkey-server on PATH, then the `jobqueue[embedded]` Valkey.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from ..redis_server import RedisServer


@contextlib.contextmanager
def private_redis(data_dir: str | Path | None = None, *, binary: str | None = None) -> Iterator[RedisServer]:
    """A running private Redis; its `url` is `redis://127.0.0.1:PORT/0`.

        with private_redis() as redis_server:
            settings = Settings(redis_url=redis_server.url)

    `data_dir`: where its log goes (default: a temp dir removed afterwards).
    Raises FileNotFoundError (saying how to get one) when no Redis is installed.
    """
    with contextlib.ExitStack() as stack:
        server = _start(stack, data_dir, binary)
        stack.callback(server.stop)  # before the temp dir goes (last in, first out)
        yield server


@contextlib.asynccontextmanager
async def async_private_redis(
    data_dir: str | Path | None = None, *, binary: str | None = None
) -> AsyncIterator[RedisServer]:
    """`private_redis` for `async with`. The start runs on the loop's thread (the child
    dies with the thread that started it, and a pool's thread may end first): it
    blocks the loop until Redis answers, a fraction of a second. The stop waits
    for the child in a thread."""
    with contextlib.ExitStack() as stack:
        server = _start(stack, data_dir, binary)
        try:
            yield server
        finally:
            await asyncio.to_thread(server.stop)


def _start(stack: contextlib.ExitStack, data_dir: str | Path | None, binary: str | None) -> RedisServer:
    """Starts a RedisServer in `data_dir`, or in a temp dir that `stack` removes."""
    if data_dir is None:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="jobqueue-redis-"))
    server = RedisServer(data_dir, binary=binary)
    server.start()
    return server
