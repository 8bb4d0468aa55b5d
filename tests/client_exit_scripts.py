"""Short client programs, each ending as a script ends, for tests/test_client_exit.py.

    python -m tests.client_exit_scripts URL RUNS PARALLEL [--pyqwest-asyncio]

Imports the clients once, then forks RUNS children, at most PARALLEL at a time.
Each child runs one program (SyncClient and Client calls, with or without a
sleep after them, closed or never closed, on a plain event loop or on a
ForeignWakeLoop) and then returns to the end of this file, so that its
interpreter finalizes as any script's does: the moment a process aborted at
when a pyqwest thread called into Python. Forking spares each run the imports
(most of a short script's time); the parent starts no thread before it forks.
`--pyqwest-asyncio` makes the asyncio steps call the API through connectrpc's
own asyncio client (pyqwest's asyncio transport) instead of `Client`.

Prints one JSON line, {exit code: count}: a negative code is the signal that
ended the child (-6: SIGABRT), "hung" counts children killed at their deadline.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from contextvars import Context
from typing import TypeVarTuple, Unpack

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceClient
from jobqueue.client import Client, SyncClient

RUN_DEADLINE_S = 60.0
POLL_S = 0.01
SLEEP_S = 0.02  # part of the program under test (a script that sleeps before it exits), not a wait
HANDOVER_S = 10.0  # FinalizationSignal's: time for a waiting thread to run into the GIL
Ts = TypeVarTuple("Ts")
PROGRAMS = ("sync", "async", "sync then async", "async then sync")


class ForeignWakeLoop(asyncio.SelectorEventLoop):
    """A loop that keeps a foreign thread's wake-up call inside Python until the
    interpreter finalizes.

    A thread Python did not start (pyqwest's Rust threads) that called
    call_soon_threadsafe, and was preempted before it left Python, made the
    process abort: the interpreter finalized under it, and taking the GIL back
    then ends such a thread in a way its Rust frames cannot survive. Here that
    thread waits until the finalization has begun (see FinalizationSignal), so
    that a client that lets one call in aborts in every run of this loop rather
    than in a few runs in a hundred. Python's own threads do not wait: the
    interpreter joins them before it finalizes.
    """

    def call_soon_threadsafe(
        self, callback: Callable[[Unpack[Ts]], object], *args: *Ts, context: Context | None = None
    ) -> asyncio.Handle:
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        if isinstance(threading.current_thread(), threading._DummyThread):
            WAITING.append(threading.get_native_id())
            FINALIZING.wait(RUN_DEADLINE_S)
        return handle


FINALIZING = threading.Event()
WAITING: list[int] = []  # the threads waiting in ForeignWakeLoop.call_soon_threadsafe


class FinalizationSignal:
    """Deleted when the interpreter drops its modules, which it does once it
    finalizes (see `signal_finalization`). Then lets the waiting threads try for
    the GIL."""

    def __init__(self) -> None:
        # What __del__ needs, held here: module globals may be gone by then.
        self.finalizing = FINALIZING
        self.waiting = WAITING
        self.sleep = time.sleep

    def __del__(self) -> None:
        self.finalizing.set()
        if self.waiting:
            # Releases the GIL (as finalization does when it closes a socket) long
            # enough for a waiting thread, however loaded the machine, to run into
            # it: the process then aborts, and this sleep ends with it.
            self.sleep(HANDOVER_S)


def signal_finalization() -> None:
    """Sets FINALIZING when the interpreter finalizes.

    A module of its own holds the signal: a thread waiting in this module's
    code keeps this module's globals alive past the finalization.
    """
    holder = types.ModuleType("client_exit_scripts_finalization")
    holder.signal = FinalizationSignal()  # type: ignore[attr-defined]
    sys.modules[holder.__name__] = holder


def sync_calls(url: str, closed: bool) -> None:
    if closed:
        with SyncClient(url) as client:
            client.get(client.enqueue("exit-test", "text").id)
    else:
        client = SyncClient(url)
        client.get(client.enqueue("exit-test", "text").id)


async def async_calls(url: str, closed: bool) -> None:
    if closed:
        async with Client(url) as client:
            await client.get((await client.enqueue("exit-test", b"bytes")).id)
    else:
        client = Client(url)
        await client.get((await client.enqueue("exit-test", b"bytes")).id)


async def pyqwest_asyncio_calls(url: str, closed: bool) -> None:
    client = JobServiceClient(url)
    job = (await client.enqueue_job(pb.EnqueueJobRequest(type="exit-test", payload=b"bytes"))).job
    assert job is not None
    await client.get_job(pb.GetJobRequest(id=job.id))
    if closed:
        await client.close()


def program(url: str, run: int, pyqwest_asyncio: bool) -> None:
    """Run `run`'s program: its bits pick the sleep, the closing, the loop and the clients."""
    sleep_s = SLEEP_S if run & 1 else 0.0
    closed = bool(run & 2)
    loop_factory = ForeignWakeLoop if run & 4 else None
    for step in PROGRAMS[(run >> 3) % len(PROGRAMS)].split(" then "):
        if step == "sync":
            sync_calls(url, closed)
        else:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run((pyqwest_asyncio_calls if pyqwest_asyncio else async_calls)(url, closed))
        if sleep_s:
            time.sleep(sleep_s)


def main() -> bool:
    """Forks the runs; True in a child, which then has its program to end."""
    url, runs, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pyqwest_asyncio = "--pyqwest-asyncio" in sys.argv[4:]
    codes: collections.Counter[str] = collections.Counter()
    running: dict[int, float] = {}  # pid -> its deadline

    def reap_one() -> None:
        """Waits until a child ends, or kills one past its deadline."""
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                del running[pid]
                codes[str(os.waitstatus_to_exitcode(status))] += 1
                return
            now = time.monotonic()
            for late, deadline in running.items():
                if now > deadline:
                    os.kill(late, signal.SIGKILL)
                    os.waitpid(late, 0)
                    del running[late]
                    codes["hung"] += 1
                    return
            time.sleep(POLL_S)

    for run in range(runs):
        while len(running) >= parallel:
            reap_one()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            signal_finalization()
            program(url, run, pyqwest_asyncio)
            return True
        running[pid] = time.monotonic() + RUN_DEADLINE_S
    while running:
        reap_one()
    print(json.dumps(dict(codes)), flush=True)
    return False


if __name__ == "__main__":
    main()
