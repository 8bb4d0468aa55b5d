"""A jobqueue process's own concerns: its logging setup and its signals.

Every entry point (`jobqueue server`, `jobqueue worker`, `jobqueue dev`,
`Worker.run()`) runs its main coroutine through `run_until_stopped`: SIGINT and
SIGTERM set the `stop` event it is given, and the coroutine shuts down gracefully.
The log level is the caller's (`jobqueue --log-level`), else JOBQUEUE_LOG_LEVEL,
else INFO; whoever sets up logging first decides, and nothing later resets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(level: int | str | None = None, env: Mapping[str, str] | None = None) -> int:
    """`level` (a number or a name of LOG_LEVELS, any case), else JOBQUEUE_LOG_LEVEL, else INFO."""
    where = "log level"
    if level is None:
        env = os.environ if env is None else env
        level, where = env.get("JOBQUEUE_LOG_LEVEL") or "INFO", "JOBQUEUE_LOG_LEVEL"
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"{where} {level!r} is not one of {', '.join(LOG_LEVELS)}")
    return logging.getLevelNamesMapping()[name]


def configure_logging(level: int | str | None = None) -> None:
    """Logs to stderr at `level` (see `log_level`), unless logging is set up already
    (by the program, or by an earlier call)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level(level), format=LOG_FORMAT)


def run_until_stopped(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Runs `main(stop)` in a new event loop; SIGINT and SIGTERM set `stop`. Logging is
    set up first, unless it was already (with the caller's level, which stays)."""
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
