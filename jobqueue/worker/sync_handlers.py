"""Sync handlers: a plain function runs in a pool of the worker's own.

`Worker(type, handler)` given a plain (non-async) function calls it in a thread
of a pool of `threads` (default: the worker's concurrency), so that the event
loop, which heartbeats, fetches and records completions, stays free while a
handler blocks or computes: a busy handler does not cost its job its lease. The
job's context variables (the job its log lines name, the run's span) go with the
call into the thread.

Python cannot stop a thread. A run that times out, or whose job is cancelled (or
its lease lost, or the worker stops), is reported at once as an async one is
(timed out: failed and retried; cancelled: left CANCELLED), but its function runs
on until it returns: its slot stays taken until then, so that a worker never runs
more than `concurrency` functions at once (a worker whose slots all hold such
runs takes no new job). A WARNING says so, once per run.

With `executor="process"` each call runs in a process of its own lane (one per
`threads`): CPU-bound work escapes the GIL. The function and the Job are pickled,
so the function must be importable by name (a module-level function: not a lambda,
a closure or a method of a local object). A process whose run timed out or was
cancelled is terminated and a new one takes its lane: its slot frees at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import pickle
from collections.abc import Callable
from typing import Literal

from ..model import Job

log = logging.getLogger("jobqueue.worker")

SyncHandler = Callable[..., object]
Executor = Literal["thread", "process"]
EXECUTORS: tuple[Executor, ...] = ("thread", "process")


def is_async(handler: Callable[..., object]) -> bool:
    """Whether calling `handler` gives a coroutine: an `async def` function, a partial
    or bound method of one, or an object whose `__call__` is one."""
    if inspect.iscoroutinefunction(handler):  # unwraps partials and bound methods
        return True
    if isinstance(handler, functools.partial):
        return is_async(handler.func)
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return call is not None and not inspect.isfunction(handler) and inspect.iscoroutinefunction(call)


class SyncRuns:
    """Runs a sync handler, one call per job, and keeps a slot taken while a call
    that was given up on still runs (see the module's docstring)."""

    def __init__(self, function: SyncHandler, job_type: str, workers: int, executor: Executor) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {executor!r}")
        if workers < 1:
            raise ValueError("threads must be at least 1")
        if executor == "process":
            try:
                pickle.dumps(function)
            except Exception as exc:  # pickle raises several kinds
                raise TypeError(
                    f"executor='process' needs a handler that pickles (a module-level function, "
                    f"importable by name): {function!r} does not ({exc})"
                ) from exc
        self.function = function
        self.job_type = job_type
        self.workers = workers
        self.executor = executor
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._lanes: asyncio.Queue[_Lane] | None = None
        # Calls given up on (timed out, cancelled) that still run, by job id.
        self._lingering: dict[str, concurrent.futures.Future[object]] = {}
        self._abandoned = asyncio.Event()  # set at shutdown: no run waits for its call any more

    def open(self) -> None:
        """Makes the pool, unless it is made (as the worker starts serving, or at the
        first call of one awaited outside a worker: a test's)."""
        self._abandoned = asyncio.Event()
        if self._threads is not None or self._lanes is not None:
            return
        if self.executor == "thread":
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix=f"jobqueue-{self.job_type}"
            )
        else:
            self._lanes = asyncio.Queue()
            for _ in range(self.workers):
                self._lanes.put_nowait(_Lane())

    async def __call__(self, job: Job, *arguments: object) -> object:
        """Calls the function in the pool for `job`, with `arguments` (default: the job;
        a typed handler's: its payload, and maybe the job); returns what it returns."""
        if self._threads is None and self._lanes is None:
            self.open()
        arguments = arguments or (job,)
        if self._lanes is not None:
            return await self._call_in_a_process(arguments)
        assert self._threads is not None
        call = self._threads.submit(contextvars.copy_context().run, self.function, *arguments)
        try:
            result = await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            if not call.cancel():  # it started: it runs on, and keeps its slot (settle)
                self._lingering[job.id] = call
            raise
        if inspect.isawaitable(result):
            # A plain function that returns an awaitable (`lambda job: handle(job)`):
            # awaited here, as before sync handlers existed.
            return await result
        return result

    async def _call_in_a_process(self, arguments: tuple[object, ...]) -> object:
        lanes = self._lanes
        assert lanes is not None
        lane = await lanes.get()
        try:
            result = await asyncio.wrap_future(lane.pool.submit(self.function, *arguments))
        except asyncio.CancelledError:
            lane.terminate()  # a process can be stopped: its slot frees now
            lane = _Lane()
            raise
        except concurrent.futures.BrokenExecutor:
            lane = _Lane()  # the process died (killed, out of memory): the run fails, the lane is renewed
            raise
        finally:
            lanes.put_nowait(lane)
        return result

    async def settle(self, job: Job) -> None:
        """Returns when the job's call has returned: at once unless the run was given
        up on while its function kept running (then its slot stays taken meanwhile)."""
        call = self._lingering.get(job.id)
        if call is None:
            return
        try:
            if call.done():
                return
            log.warning(
                "job %s (%s): its run ended but its sync handler runs on (a thread cannot be stopped); "
                "its slot stays taken until the function returns",
                job.id,
                self.job_type,
            )
            ended: asyncio.Future[object] = asyncio.wrap_future(call)
            abandoned: asyncio.Future[object] = asyncio.ensure_future(self._abandoned.wait())
            try:
                await asyncio.wait((ended, abandoned), return_when=asyncio.FIRST_COMPLETED)
            finally:
                abandoned.cancel()
                if not ended.done():
                    ended.cancel()  # only this wait: the thread runs on regardless
                elif not ended.cancelled() and ended.exception() is not None:
                    late = ended.exception()
                    log.info("job %s (%s): its sync handler ended late: %r", job.id, self.job_type, late)
        finally:
            del self._lingering[job.id]

    def close(self) -> None:
        """Stops waiting for calls given up on, and lets go of the pool (at shutdown).
        A thread still in a handler runs on: the process exits once it returns."""
        self._abandoned.set()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._lanes is not None:
            while not self._lanes.empty():
                self._lanes.get_nowait().pool.shutdown(wait=False, cancel_futures=True)
            self._lanes = None


class _Lane:
    """One process for one call at a time: a process of a shared pool could not be
    told apart from the others, nor stopped alone."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=1)

    def terminate(self) -> None:
        # ProcessPoolExecutor offers no way to stop a call: its process is ended
        # (the pool's own record of them; the pool is then broken and let go).
        processes = getattr(self.pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)
