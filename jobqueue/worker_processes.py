"""`jobqueue worker --processes N`: a supervisor of N worker processes.

One Python process runs its handlers on one core; a machine with more runs more
processes of the same workers module. The supervisor starts N children (each a
`jobqueue worker ... --processes 1`: one process, as without a supervisor), and:

- restarts a child that exits on its own (it crashed, or was killed), after a
  delay that doubles with each quick death in a row (supervise.QuickDeaths: within
  30 s of its start). After 5 in a row it gives up: it stops
  every child and exits 1, rather than fork a failing module forever. The jobs a
  dead child held come back as any dead worker's do (its reaper-visible liveness
  lapses, or its popped ids are swept).
- forwards SIGTERM and SIGINT to every child, which shuts down gracefully (its
  running jobs finish or are released), waits for all of them (at most
  STOP_DEADLINE_S, then kills the rest), and exits 0 if every child stopped as asked:
  it exited 0, or died of that SIGTERM while still starting (before it handles
  the signal it has no job to hand back).
- on Linux, its children die with it (PR_SET_PDEATHSIG, SIGTERM: a graceful
  stop), so a supervisor killed outright leaves no orphans running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .process import run_until_stopped
from .redis_server import describe_exit, dying_with_parent
from .settings import Settings
from .store.memory_policy import check_deployment
from .supervise import QuickDeaths

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("jobqueue.worker")

FIRST_RESTART_DELAY_S = 0.5
# A child's own shutdown is bounded by its workers' shutdown_grace_s (10 s by default).
STOP_DEADLINE_S = 60.0


class Supervisor:
    """Runs `command(i)` for i in 0..count-1 as children until `stop`; see the module."""

    def __init__(self, command: Callable[[int], Sequence[str]], count: int) -> None:
        self.command = command
        self.count = count
        self.gave_up = False
        self.failed_stops = 0  # children that exited non-zero, or were killed, while stopping
        self._children: dict[int, asyncio.subprocess.Process] = {}

    async def run(self, stop: asyncio.Event) -> int:
        keepers = [asyncio.create_task(self._keep(index, stop)) for index in range(self.count)]
        try:
            await stop.wait()
        finally:
            await self._stop_all()
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
        return 1 if self.gave_up or self.failed_stops else 0

    async def _keep(self, index: int, stop: asyncio.Event) -> None:
        """Runs child `index`, restarting it after each exit, until `stop`."""
        clock = asyncio.get_running_loop().time
        deaths = QuickDeaths()
        while not stop.is_set():
            started = clock()
            try:
                child = await self._spawn(index)
            except OSError:  # the interpreter gone, no more processes...
                log.exception("worker process %d could not start: stopping every worker process", index)
                self.gave_up = True
                stop.set()
                return
            returncode = await child.wait()
            if stop.is_set():
                return
            how = describe_exit(returncode)
            if deaths.died(clock() - started):
                log.error(
                    "worker process %d exited (%s), %d times in a row within %.0f s of starting: "
                    "giving up, stopping every worker process",
                    index,
                    how,
                    deaths.count,
                    deaths.quick_s,
                )
                self.gave_up = True
                stop.set()
                return
            delay = FIRST_RESTART_DELAY_S * 2 ** (deaths.count - 1)
            log.warning("worker process %d (pid %d) exited (%s); restarting it in %.1f s", index,
                        child.pid, how, delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        # Its own process group: a Ctrl-C in the terminal reaches the supervisor only,
        # which forwards it once.
        child = await asyncio.create_subprocess_exec(*dying_with_parent(self.command(index)),
                                                     process_group=0)  # fmt: skip
        self._children[index] = child
        log.info("worker process %d started (pid %d)", index, child.pid)
        return child

    async def _stop_all(self) -> None:
        running = [c for c in self._children.values() if c.returncode is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        if running:
            log.info("stopping %d worker processes", len(running))
        if running:
            await asyncio.wait([asyncio.create_task(c.wait()) for c in running], timeout=STOP_DEADLINE_S)
        for child in running:
            if child.returncode is None:
                log.warning("worker process pid %d did not stop within %.0f s: killing it",
                            child.pid, STOP_DEADLINE_S)  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
                self.failed_stops += 1
            elif child.returncode not in (0, -signal.SIGTERM):  # -SIGTERM: it was starting
                log.warning(
                    "worker process pid %d stopped with %s", child.pid, describe_exit(child.returncode)
                )
                self.failed_stops += 1


def run_processes(
    command: Callable[[int], Sequence[str]], count: int, deployments: Sequence[Settings]
) -> int:
    """Supervises `count` children (`command(i)`) until SIGINT or SIGTERM; the exit status.
    `deployments`: the settings the children's workers serve with (`deployments_of`)."""
    supervisor = Supervisor(command, count)
    status = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal status
        for settings in deployments:  # refused here once, rather than by N children in a loop
            await check_deployment(settings)
        log.info("supervising %d worker processes", count)
        status = await supervisor.run(stop)

    run_until_stopped(main)
    return status


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The command line of a child `jobqueue worker` process given `arguments`."""
    return [sys.executable, "-m", "jobqueue.cli", "worker", *arguments, "--processes", "1"]


def deployments_of(workers: Sequence[Worker], settings: Settings) -> list[Settings]:
    """The settings `workers` serve with, once each: a worker's own (Worker(settings=...)),
    else the command's (`settings`: its options and environment), as Worker.serve picks."""
    return list(dict.fromkeys(worker.settings or settings for worker in workers))
