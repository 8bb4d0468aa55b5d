"""A jobqueue process's own concerns: its logging setup and its signals.

Every entry point (`jobqueue server`, `jobqueue worker`, `jobqueue dev`,
`Worker.run()`) runs its main coroutine through `run_until_stopped`: SIGINT and
SIGTERM set the `stop` event it is given, and the coroutine shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int | str = logging.INFO) -> None:
    """Logs to stderr at `level`, unless the program set up logging itself."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT)


def run_until_stopped(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Runs `main(stop)` in a new event loop; SIGINT and SIGTERM set `stop`."""
    configure_logging()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
