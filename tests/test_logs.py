"""Logs that inform: a Redis outage told once per process (and its end), a hung Redis
found within seconds with API calls failing fast, one line per job outcome with a
traceback only for a handler's unexpected exception, shutdown lines that say what they
wait for and what they count, and the log level from the environment."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.client import SyncClient
from jobqueue.events import Counts, Event
from jobqueue.model import Backoff, Job, JobOptions, JobStatus
from jobqueue.outage import Outage, duration
from jobqueue.process import log_level
from jobqueue.producer import Producer
from jobqueue.redis_server import RedisServer, find_server_binary, free_port
from jobqueue.settings import Settings
from jobqueue.store import Store
from jobqueue.worker import PermanentError, RetryAfter, Worker

from .conftest import ROOT, eventually, jobqueue_process, jobqueue_server_process, status_is, until
from .harness import Harness
from .test_worker import running

needs_redis_server = pytest.mark.skipif(find_server_binary() is None, reason="needs redis-server")

# -- the outage reporter, on a clock of the test's own ---------------------------------


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]


def test_an_outage_is_told_once_reminded_every_30_s_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = 1000.0
    outage = Outage("redis://:secret@db:6379/0", clock=lambda: now)
    down = ConnectionError("Connection refused")
    with caplog.at_level(logging.INFO, logger="jobqueue.redis"):
        before = outage.generation  # a call begun before the outage, answered during it
        for step in range(91):  # a failure report a second, from many loops, for 90 s
            now = 1000.0 + step
            for _ in range(5):
                outage.failed(down)
        assert outage.down
        outage.back(before)  # proves nothing about Redis now: still down
        assert outage.down
        during = outage.generation
        outage.back(during)
        outage.back(during)  # a second success says nothing more
        now += 1
        outage.failed(TimeoutError())  # a new outage
    at, why = "Redis at redis://***@db:6379/0", "(ConnectionError: Connection refused)"
    assert _lines(caplog, "jobqueue.redis") == [
        ("WARNING", f"{at}: unavailable {why}; retrying"),
        ("WARNING", f"{at}: still unavailable after 30 s {why}"),
        ("WARNING", f"{at}: still unavailable after 1m00s {why}"),
        ("WARNING", f"{at}: still unavailable after 1m30s {why}"),
        ("INFO", f"{at}: back after 1m30s"),
        ("WARNING", f"{at}: unavailable (TimeoutError); retrying"),
    ]


def test_durations_read_as_a_person_would_say_them() -> None:
    assert [duration(s) for s in (0.24, 9.9, 10.2, 42.4, 59.6, 90, 3599, 7500)] == [
        "0.2 s", "9.9 s", "10 s", "42 s", "1m00s", "1m30s", "59m59s", "2h05m",
    ]  # fmt: skip


# -- a worker process through a Redis killed, then restarted ---------------------------

THREE_TYPES = """
from jobqueue.worker import Worker

async def handle(job):
    pass

workers = [Worker(t, handle, heartbeat_s=0.2, liveness_s=5.0) for t in ("logs-a", "logs-b", "logs-c")]
"""
TYPES = ("logs-a", "logs-b", "logs-c")


def _count(log: Path, pattern: str) -> int:
    return len(re.findall(pattern, log.read_text(errors="replace"), re.MULTILINE))


@contextmanager
def _worker(tmp_path: Path, redis_url: str, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`jobqueue worker` with 3 types, logging at DEBUG (from the environment)."""
    app = tmp_path / "three_types.py"
    app.write_text(THREE_TYPES)
    with jobqueue_process(
        ["worker", str(app)], log, JOBQUEUE_REDIS_URL=redis_url, JOBQUEUE_LOG_LEVEL="DEBUG", **env
    ) as process:
        yield process


def _retries(log: Path, loop: str) -> int:
    """How many times `loop` found Redis unavailable (supervise's DEBUG line)."""
    return _count(log, rf" DEBUG jobqueue\.supervise: {loop}: Redis unavailable")


async def _completed_one_job_of_each_type(redis_url: str) -> None:
    async with Producer.connect(Settings(redis_url=redis_url)) as producer:
        jobs = [await producer.enqueue(job_type) for job_type in TYPES]

        async def all_done() -> bool:
            statuses = [(await producer.get(job.id)).status for job in jobs]
            return statuses == [JobStatus.COMPLETED] * len(jobs)

        await eventually(all_done, timeout=60, what="a job of each type completed")


@needs_redis_server
def test_a_killed_redis_is_one_warning_and_its_return_one_info(tmp_path: Path) -> None:
    """A worker with 3 types (a fetcher, heartbeat, reaper and scheduler each) used to log
    about 130 warnings in 10 s; now its loops retry quietly (at DEBUG) and the process
    says it once."""
    redis = RedisServer(tmp_path / "redis", port=free_port())  # restarted on the same port
    redis.start()
    log = tmp_path / "worker.log"
    try:
        with _worker(tmp_path, redis.url, log):
            until(lambda: _count(log, r"worker \S+: handling") == 3, "the 3 workers", 60)
            redis.kill()
            # Every loop of every worker has found Redis down, several times over.
            for loop in ("fetcher", "heartbeat", "reaper", "scheduler"):
                until(lambda loop=loop: _retries(log, loop) >= 6, f"the {loop}s' retries", 60)  # type: ignore[misc]
            assert _count(log, r" WARNING ") == 1, log.read_text()
            assert (
                _count(log, r" WARNING jobqueue\.redis: Redis at redis://127\.0\.0\.1:\d+/0: unavailable \(")
                == 1
            )
            redis.start()  # the same port
            back = r" INFO jobqueue\.redis: Redis at \S+: back after [\d.]+ s$"
            until(lambda: _count(log, back), "Redis back", 60)
            asyncio.run(_completed_one_job_of_each_type(redis.url))
            text = log.read_text()
            assert _count(log, r" WARNING ") == 1, text
            assert _count(log, r" jobqueue\.redis: ") == 2, text
    finally:
        redis.stop()


# -- a hung Redis: logged within seconds, API calls fail fast --------------------------


@needs_redis_server
def test_a_hung_redis_is_logged_within_seconds_and_api_calls_fail_fast(tmp_path: Path) -> None:
    """SIGSTOP: Redis accepts connections and never answers. A worker and a server each
    log it once, after their command timeout; an API call answers `unavailable` after
    about that long, well before the client's own deadline."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    timeout = {"JOBQUEUE_REDIS_TIMEOUT_S": "2"}
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    hung = r" WARNING jobqueue\.redis: Redis at \S+: unavailable \(TimeoutError: "
    try:
        with (
            jobqueue_server_process(redis.url, server_log, **timeout) as (url, _),
            _worker(tmp_path, redis.url, worker_log, **timeout),
            ExitStack() as stack,
        ):
            until(lambda: _count(worker_log, r"worker \S+: handling") == 3, "the 3 workers", 60)
            client = stack.enter_context(SyncClient(url, timeout_s=120))
            job = client.enqueue("nobody-serves-this")
            assert process_state(redis) == "running"
            os.kill(redis.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            try:
                began = time.monotonic()
                with pytest.raises(ConnectError) as refused:
                    client.get(job.id)
                took = time.monotonic() - began
                assert refused.value.code is Code.UNAVAILABLE, refused.value
                assert took < 60, f"the call took {took:.1f} s: it waited for a client deadline"
                until(lambda: _count(worker_log, hung) == 1, "the worker's warning", 60)
                until(lambda: _count(server_log, hung) == 1, "the server's warning", 60)
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
            back = r" INFO jobqueue\.redis: Redis at \S+: back after "
            until(lambda: _count(worker_log, back) == 1, "the worker's 'back'", 60)
            assert client.get(job.id).status is JobStatus.PENDING
        assert _count(worker_log, r" WARNING ") == 1, worker_log.read_text()
    finally:
        redis.stop()


@needs_redis_server
async def test_own_connections_time_out_on_a_hung_redis_but_let_a_pop_block(tmp_path: Path) -> None:
    """The fetcher's connection: a command gets `timeout_s` for its reply, a blocking pop
    its block time more; the pooled clients' commands time out likewise."""
    with RedisServer(tmp_path / "redis") as redis:
        settings = Settings(redis_url=redis.url, redis_timeout_s=1.0)
        store = Store.open(settings)
        connection = store.own_connection()
        try:
            assert (
                await connection.execute("BLMOVE", "nothing", "popped", "RIGHT", "LEFT", 1.5, blocks_s=1.5)
                is None
            )
            os.kill(redis.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            try:
                with pytest.raises(RedisTimeoutError, match=r"no reply from Redis within 1 s"):
                    await connection.execute("PING")
                with pytest.raises(RedisTimeoutError):
                    await store.redis.ping()
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
            assert await connection.execute("PING") == b"PONG"  # a new connection
        finally:
            await connection.aclose()
            await store.aclose()


async def test_a_handler_may_block_on_worker_redis_beyond_the_command_timeout(
    store: Harness, settings: Settings
) -> None:
    """Handlers' commands (Worker.redis) go through a pool without the timeout."""
    popped: list[object] = []

    async def handler(job: Job) -> None:
        popped.append(await worker.redis.blpop(["logs-nothing"], timeout=0.6))

    quick = dataclasses.replace(settings, redis_timeout_s=0.3)
    worker = Worker("logs-blocking", handler, settings=quick, heartbeat_s=0.1, lease_s=5.0, max_attempts=1)
    async with running(worker):
        job = await store.enqueue("logs-blocking")
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="the blocking handler")
    assert popped == [None]


def test_the_command_timeout_must_be_positive() -> None:
    assert Settings.from_env({"JOBQUEUE_REDIS_TIMEOUT_S": "2.5"}).redis_timeout_s == 2.5
    with pytest.raises(ValueError, match=r"JOBQUEUE_REDIS_TIMEOUT_S\) must be > 0, got 0"):
        Settings.from_env({"JOBQUEUE_REDIS_TIMEOUT_S": "0"})


def process_state(redis: RedisServer) -> str:
    """'running', or why not: the test must not stop a Redis that already exited."""
    assert redis.process is not None
    return "running" if redis.process.poll() is None else f"exited {redis.process.returncode}"


# -- one line per job outcome ----------------------------------------------------------


def _job_lines(caplog: pytest.LogCaptureFixture, job_id: str) -> list[tuple[str, str, bool]]:
    """(level, message, has a traceback) of the INFO+ lines about one job."""
    return [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == "jobqueue.jobs" and r.levelno >= logging.INFO and job_id in r.getMessage()
    ]


async def test_each_outcome_is_one_line_and_only_a_handlers_bug_has_a_traceback(
    store: Harness, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(job: Job) -> None:
        if job.payload == b"permanent":
            raise PermanentError("malformed payload")
        if job.payload == b"later":
            raise RetryAfter(30, "rate limited")
        if job.payload == b"slow":
            await asyncio.sleep(60)
        raise ValueError("boom")

    quick = Backoff(base_ms=10, cap_ms=10)  # retries at once: the next attempt's line follows
    twice = JobOptions(max_attempts=2, backoff=quick)
    worker = Worker("logs-outcomes", handler, settings=settings, heartbeat_s=0.1, lease_s=5.0)
    with caplog.at_level(logging.INFO, logger="jobqueue"):
        async with running(worker):
            permanent = await store.enqueue("logs-outcomes", b"permanent", None, twice)
            later = await store.enqueue("logs-outcomes", b"later", None, twice)
            slow = await store.enqueue("logs-outcomes", b"slow", None, JobOptions(2, 200, quick))
            boom = await store.enqueue("logs-outcomes", b"boom", None, twice)
            for job in (permanent, slow, boom):
                await eventually(status_is(store, job.id, JobStatus.FAILED), what=f"{job.payload!r} failed")

            async def retry_scheduled() -> bool:
                return (await store.get(later.id)).attempt == 1 and worker.stats[Event.RETRY_SCHEDULED] >= 3

            await eventually(retry_scheduled, what="the RetryAfter recorded")
    dead = "(a dead letter: RetryJob runs it again)"
    prefix = "logs-outcomes) failed"
    assert _job_lines(caplog, permanent.id) == [
        ("INFO", f"job {permanent.id} ({prefix} permanently (attempt 1/2): "
                 f"jobqueue.worker.errors.PermanentError: malformed payload {dead}", False),
    ]  # fmt: skip
    assert _job_lines(caplog, later.id) == [
        ("INFO", f"job {later.id} ({prefix} (attempt 1/2): "
                 "jobqueue.worker.errors.RetryAfter: rate limited; retrying in 30.0 s", False),
    ]  # fmt: skip
    assert _job_lines(caplog, slow.id) == [
        ("INFO", f"job {slow.id} ({prefix} (attempt 1/2): timed out after 0.2 s; retrying in 0.0 s", False),
        (
            "WARNING",
            f"job {slow.id} ({prefix} for good after 2 attempts: timed out after 0.2 s {dead}",
            False,
        ),
    ]
    assert _job_lines(caplog, boom.id) == [
        ("WARNING", f"job {boom.id} ({prefix} (attempt 1/2): ValueError: boom; retrying in 0.0 s", True),
        ("WARNING", f"job {boom.id} ({prefix} for good after 2 attempts: ValueError: boom {dead}", True),
    ]
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 2, [r.getMessage() for r in tracebacks]


# -- shutdown ---------------------------------------------------------------------------


async def test_shutdown_says_what_it_waits_for_and_counts_by_name(
    store: Harness, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A job its user cancels counts as cancelled, not as a lost lease; a job still running
    after the grace period is cancelled and handed back."""
    started: dict[str, asyncio.Event] = {}

    async def handler(job: Job) -> None:
        started.setdefault(job.id, asyncio.Event()).set()
        if job.payload != b"quick":
            await asyncio.sleep(60)

    def handler_started(job_id: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return job_id in started

        return check

    worker = Worker(
        "logs-stop", handler, settings=settings, heartbeat_s=0.1, lease_s=5.0, shutdown_grace_s=0.2
    )
    with caplog.at_level(logging.INFO, logger="jobqueue"):
        async with running(worker):
            quick = await store.enqueue("logs-stop", b"quick")
            await eventually(status_is(store, quick.id, JobStatus.COMPLETED), what="the quick job")
            cancelled = await store.enqueue("logs-stop", b"cancel me")
            # Its handler running, not only its claim stored: a stop or a cancel before
            # the handler starts meets no running job.
            await eventually(handler_started(cancelled.id), what="the job to cancel running")
            await store.cancel(cancelled.id)

            async def cancel_seen() -> bool:
                return worker.stats[Event.CANCELLED] == 1

            await eventually(cancel_seen, what="the cancel reaching its handler")
            stuck = await store.enqueue("logs-stop", b"stuck")
            await eventually(handler_started(stuck.id), what="the stuck job running")
    lines = [m for level, m in _lines(caplog, "jobqueue.worker") if level == "INFO"]
    me = f"worker {worker.worker_id}"
    assert lines[1:] == [
        f"{me}: stopping: waiting up to 0.2 s for 1 running job",
        f"{me}: cancelled 1 job still running after 0.2 s; handed back",
        f"{me}: stopped; jobs: completed 1, retried 0, failed 0, cancelled 1, handed back 1",
    ], lines
    assert (await store.get(stuck.id)).status is JobStatus.PENDING
    assert worker.stats[Event.LEASE_LOST] == 0


def test_the_summary_names_rarer_outcomes_only_when_they_happened() -> None:
    counts = Counts({Event.COMPLETED: 12, Event.LEASE_LOST: 1, Event.CLAIMED: 14})
    assert counts.summary() == "completed 12, retried 0, failed 0, cancelled 0, handed back 0, taken back 1"


# -- the log level ----------------------------------------------------------------------


def test_the_log_level_comes_from_the_caller_then_the_environment() -> None:
    assert log_level("debug") == logging.DEBUG
    assert log_level(None, {"JOBQUEUE_LOG_LEVEL": "warning"}) == logging.WARNING
    assert log_level(None, {}) == logging.INFO
    with pytest.raises(ValueError, match="JOBQUEUE_LOG_LEVEL 'loud' is not one of DEBUG, INFO"):
        log_level(None, {"JOBQUEUE_LOG_LEVEL": "loud"})


LEVEL_SEEN = """
import asyncio, logging, sys
from jobqueue.process import configure_logging, run_until_stopped

if sys.argv[1] != "-":
    configure_logging(sys.argv[1])  # what `jobqueue --log-level` does first

async def main(stop):
    print(logging.getLevelName(logging.getLogger().getEffectiveLevel()))

run_until_stopped(main)
"""


@pytest.mark.parametrize(
    ("given", "env", "seen"),
    [("-", "", "INFO"), ("-", "debug", "DEBUG"), ("WARNING", "debug", "WARNING"), ("error", "", "ERROR")],
)
def test_run_until_stopped_keeps_the_level_set_before_it(given: str, env: str, seen: str) -> None:
    """Worker.run() and every command go through run_until_stopped: a level set by the
    command line stays; without one, JOBQUEUE_LOG_LEVEL decides."""
    environ = {k: v for k, v in os.environ.items() if k != "JOBQUEUE_LOG_LEVEL"}
    if env:
        environ["JOBQUEUE_LOG_LEVEL"] = env
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LEVEL_SEEN), given],
        env=environ, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (ran.returncode, ran.stdout.strip()) == (0, seen), ran.stderr


DROPPED_NODE = """
import asyncio
from jobqueue.process import DROPPED_CLUSTER_NODE, run_until_stopped

async def main(stop):
    loop = asyncio.get_running_loop()
    # What redis-py reports when a cluster node it dropped after a failover is collected.
    loop.call_exception_handler({"message": DROPPED_CLUSTER_NODE, "client": "[host=127.0.0.1]"})
    loop.call_exception_handler({"message": "something else"})

run_until_stopped(main)
"""


def test_a_cluster_node_dropped_in_a_failover_is_no_error_line() -> None:
    """redis-py tells the loop of a node it dropped from its map with a connection open
    (asyncio logs that at ERROR): a failover, not a bug. Anything else still is one."""
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DROPPED_NODE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Unclosed ClusterNode" not in ran.stderr
    assert "ERROR asyncio: something else" in ran.stderr
