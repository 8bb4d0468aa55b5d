"""The server's start-up heap leaves the garbage collector's view once the app
starts (process.freeze_startup_heap, at asgi.build's lifespan start): the oldest
generation's collections then walk what the calls left, not every module, class
and function. docs/performance.md (edgelean) has what that saves per call."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from .conftest import ROOT

# In a process of its own: a freeze in the suite's process would hold its objects.
_CHILD = """
import asyncio, gc
from jobqueue.server.asgi import build
from jobqueue.server.streams import Streams
from jobqueue.settings import Settings


async def main() -> None:
    app = build(Settings.from_env(), Streams())
    messages: asyncio.Queue = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    print("before", gc.get_freeze_count(), len(gc.get_objects()))

    async def send(message: dict) -> None:
        if message["type"] == "lifespan.startup.complete":
            print("started", gc.get_freeze_count(), len(gc.get_objects()))
            await messages.put({"type": "lifespan.shutdown"})

    await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send), 60)


asyncio.run(main())
"""


def test_the_heap_built_at_start_up_is_frozen_once_the_app_starts(redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBQUEUE_REDIS_URL": redis_url}
    env["JOBQUEUE_PREFIX"] = f"startup-heap-{uuid.uuid4().hex[:8]}"
    ran = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = {line.split()[0]: [int(n) for n in line.split()[1:]] for line in ran.stdout.splitlines()}
    frozen_before, tracked_before = lines["before"]
    frozen, tracked = lines["started"]
    assert frozen_before == 0, ran.stdout
    # What the app and its imports built is frozen; the collector sees only what is new since.
    assert frozen >= tracked_before // 2, ran.stdout
    assert tracked < tracked_before // 10, ran.stdout
