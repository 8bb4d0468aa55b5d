"""A jobqueue process's own concerns: its logging setup, its signals, and its
garbage collector once it is set up (`freeze_startup_heap`,
`collect_young_rarely`).

Every entry point (`jobqueue server`, `jobqueue worker`, `jobqueue dev`,
`Worker.run()`) runs its main coroutine through `run_until_stopped`: SIGINT and
SIGTERM set the `stop` event it is given, and the coroutine shuts down gracefully.
The log level is the caller's (`jobqueue --log-level`), else JOBQUEUE_LOG_LEVEL,
else INFO; the format likewise (`--log-format`, JOBQUEUE_LOG_FORMAT: text or json,
log_lines.py); whoever sets up logging first decides, and nothing later resets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from .log_lines import JobFields, JsonLines, formatter

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


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


def log_format(name: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`name` (one of LOG_FORMATS, any case), else JOBQUEUE_LOG_FORMAT, else text."""
    where = "log format"
    if name is None:
        env = os.environ if env is None else env
        name, where = env.get("JOBQUEUE_LOG_FORMAT") or "text", "JOBQUEUE_LOG_FORMAT"
    if name.strip().lower() not in LOG_FORMATS:
        raise ValueError(f"{where} {name!r} is not one of {', '.join(LOG_FORMATS)}")
    return name.strip().lower()


def configure_logging(level: int | str | None = None, log_format_name: str | None = None) -> None:
    """Logs to stderr at `level` (see `log_level`) in a format (see `log_format`),
    unless logging is set up already (by the program, or by an earlier call)."""
    root = logging.getLogger()
    if not root.handlers:
        chosen_level, chosen_format = log_level(level), log_format(log_format_name)
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(chosen_format))
        handler.addFilter(JobFields())
        root.addHandler(handler)
        root.setLevel(chosen_level)


def log_format_in_use() -> str:
    """The LOG_FORMATS name of the root logger's lines: json if a handler writes JSON lines."""
    json_lines = any(isinstance(h.formatter, JsonLines) for h in logging.getLogger().handlers)
    return "json" if json_lines else "text"


def freeze_startup_heap() -> None:
    """Takes every object alive now out of the garbage collector's view, for good:
    at start-up, what the process built to run (modules, classes, functions, the
    app) lives as long as the process. The collector's oldest generation otherwise
    holds them all, and each of its collections walks every one of them again;
    those collections come at a pace set by what the calls allocate, so each
    object a call allocates paid for a share of that walk. Refcounting still
    frees a frozen object that is dropped; only a cycle among them is never
    collected, hence the collection first."""
    gc.collect()
    gc.freeze()


# Above the objects that the calls of a busy server keep alive at once.
YOUNG_GC_THRESHOLD = 10_000


def collect_young_rarely() -> None:
    """Raises the young generation's threshold above what a serving process keeps
    alive while its calls run. The collector counts objects made less objects
    freed since its last young collection; each call in flight holds its own
    (frames, coroutines, messages, the edge's state), so with the default
    threshold the calls in flight alone pass it every few calls. Each such
    collection walks every object of every call in flight, finds no garbage in
    them (refcounting frees them when their call ends) and promotes them, so the
    middle generation's collections follow. With the threshold above them, a
    young collection comes once that many objects are kept beyond their calls:
    cycles, which only the collector frees, so at most that many objects of
    garbage wait for it. The older generations keep their thresholds."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def run_until_stopped(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Runs `main(stop)` in a new event loop; SIGINT and SIGTERM set `stop`. Logging is
    set up first, unless it was already (with the caller's level, which stays)."""
    configure_logging()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_dropped_cluster_nodes)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


# What redis-py's cluster client tells the loop when a node it dropped from its slot
# map (a failover, a node gone) is garbage collected with a connection still open.
DROPPED_CLUSTER_NODE = "Unclosed ClusterNode object"


def _quiet_dropped_cluster_nodes(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: asyncio's own (an ERROR line), except for a cluster
    node redis-py dropped during a failover, whose connection closes with it: not a
    bug, told at DEBUG."""
    if context.get("message") == DROPPED_CLUSTER_NODE:
        logging.getLogger("jobqueue.redis").debug("%s: %r", DROPPED_CLUSTER_NODE, context.get("client"))
        return
    loop.default_exception_handler(context)
