"""jobqueue.testing, used as a user would: a handler tested inline, a handler tested
against the private Redis with a real worker, and code that enqueues tested with the
inline queue as its client (docs/testing.md shows the same)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis as AsyncRedis

from jobqueue import Backoff, EnqueueRequest, JobOptions, Producer, Settings
from jobqueue.client import Client
from jobqueue.testing import InlineQueue, async_private_redis, drain, private_redis, run_worker
from jobqueue.worker import Job, JobStatus, PermanentError, RetryAfter, Worker

pytest_plugins = ["jobqueue.testing.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent

# -- the user's application -------------------------------------------------------------

SENT: list[bytes] = []


async def send_welcome(job: Job) -> str:
    if not job.payload:
        raise PermanentError("no address")
    SENT.append(job.payload)
    return "sent"


async def sign_up(client: Client | InlineQueue | Producer, email: str) -> str:
    """Code that enqueues: one welcome mail per address, however often it is called."""
    options = JobOptions(idempotency_key=f"welcome:{email}")
    job = await client.enqueue("welcome_email", email.encode(), options=options)
    return job.id


def flaky(failures: int, error: Callable[[], Exception]) -> Callable[[Job], Awaitable[None]]:
    """A handler that fails its first `failures` runs with `error()`."""

    async def handler(job: Job) -> None:
        if job.attempt <= failures:
            raise error()

    return handler


@pytest.fixture(autouse=True)
def _no_mail_sent() -> None:
    SENT.clear()


# -- a handler tested inline ------------------------------------------------------------


async def test_inline_enqueue_runs_the_handler_and_returns_the_final_job() -> None:
    queue = InlineQueue(Worker("welcome_email", send_welcome))
    job = await queue.enqueue("welcome_email", "a@example.com")
    assert job.status is JobStatus.COMPLETED
    assert job.attempt == 1
    assert SENT == [b"a@example.com"]
    assert [run.returned for run in queue.runs] == ["sent"]
    assert (await queue.get(job.id)).status is JobStatus.COMPLETED


@dataclasses.dataclass
class Invoice:
    number: int
    to: str


async def test_inline_typed_handlers_get_their_payload_decoded_as_a_worker_does() -> None:
    received: list[Invoice] = []

    async def send_invoice(invoice: Invoice) -> None:
        received.append(invoice)

    queue = InlineQueue(Worker("invoice", send_invoice))
    job = await queue.enqueue("invoice", Invoice(7, "b@example.com"), codec="json")
    assert job.status is JobStatus.COMPLETED
    assert received == [Invoice(7, "b@example.com")]
    as_dict = await queue.enqueue("invoice", {"number": 8, "to": "c"}, codec="json")
    assert as_dict.status is JobStatus.COMPLETED
    assert received[-1] == Invoice(8, "c")
    broken = await queue.enqueue("invoice", b"not json")
    assert broken.status is JobStatus.FAILED and "PayloadDecodeError" in broken.last_error


async def test_inline_failures_are_retried_by_the_workers_rules() -> None:
    backoff = Backoff(base_ms=1000, factor=2.0)
    queue = InlineQueue(Worker("flaky", flaky(2, lambda: ValueError("smtp down")), backoff=backoff))
    job = await queue.enqueue("flaky")
    assert job.status is JobStatus.COMPLETED
    assert job.attempt == 3
    first, second, third = queue.runs
    assert (first.job.attempt, second.job.attempt, third.job.attempt) == (1, 2, 3)
    assert first.error == second.error == "ValueError: smtp down"
    # Equal jitter: half of 1 s, then of 2 s, fixed; the delays are recorded, not waited for.
    assert first.retry_in_s is not None and 0.5 <= first.retry_in_s <= 1.0
    assert second.retry_in_s is not None and 1.0 <= second.retry_in_s <= 2.0
    assert third.error == "" and third.retry_in_s is None


async def test_inline_retry_after_sets_the_delay_and_permanent_error_fails_at_once() -> None:
    queue = InlineQueue(
        Worker("later", flaky(1, lambda: RetryAfter(30, "rate limited"))),
        Worker("welcome_email", send_welcome),
    )
    later = await queue.enqueue("later")
    assert later.status is JobStatus.COMPLETED
    assert queue.runs[0].retry_in_s == 30
    assert queue.runs[0].error == "jobqueue.worker.errors.RetryAfter: rate limited"

    refused = await queue.enqueue("welcome_email", b"")
    assert refused.status is JobStatus.FAILED
    assert refused.attempt == 1
    assert refused.last_error == "jobqueue.worker.errors.PermanentError: no address"
    assert queue.runs[-1].retry_in_s is None


async def test_inline_job_fails_for_good_after_its_own_max_attempts() -> None:
    queue = InlineQueue(Worker("broken", flaky(99, lambda: RuntimeError("boom")), max_attempts=5))
    job = await queue.enqueue("broken", options=JobOptions(max_attempts=2))
    assert job.status is JobStatus.FAILED
    assert (job.attempt, job.max_attempts, job.last_error_attempt) == (2, 2, 2)
    assert job.last_error == "RuntimeError: boom"
    assert [run.retry_in_s is None for run in queue.runs] == [False, True]


async def test_inline_run_is_cut_at_the_jobs_timeout() -> None:
    never = asyncio.Event()

    async def hangs(job: Job) -> None:
        await never.wait()

    queue = InlineQueue(Worker("hangs", hangs, max_attempts=1))
    job = await queue.enqueue("hangs", options=JobOptions(timeout_ms=50))
    assert job.status is JobStatus.FAILED
    assert job.last_error == "timed out after 0.05 s"


# -- code that enqueues, tested with the inline queue as its client ---------------------


async def test_code_that_enqueues_is_tested_with_the_inline_client() -> None:
    queue = InlineQueue(eager=False)  # no handler: jobs are only recorded
    first = await sign_up(queue, "a@example.com")
    again = await sign_up(queue, "a@example.com")
    await sign_up(queue, "b@example.com")
    assert first == again  # the idempotency key
    enqueued = queue.enqueued("welcome_email")
    assert [(j.payload, j.status) for j in enqueued] == [
        (b"a@example.com", JobStatus.PENDING),
        (b"b@example.com", JobStatus.PENDING),
    ]
    assert queue.enqueued("other") == []
    assert SENT == []

    queue.register(Worker("welcome_email", send_welcome))
    runs = await queue.run_pending()
    assert len(runs) == 2
    assert SENT == [b"a@example.com", b"b@example.com"]
    assert {j.status for j in queue.enqueued()} == {JobStatus.COMPLETED}


async def test_run_pending_runs_retries_and_the_jobs_handlers_enqueue() -> None:
    queue = InlineQueue(eager=False)

    async def order(job: Job) -> None:
        await queue.enqueue("welcome_email", job.payload)

    queue.register(Worker("order", order))
    queue.register(Worker("welcome_email", send_welcome))
    queue.register(Worker("flaky", flaky(1, lambda: ValueError("once"))))
    await queue.enqueue_many([EnqueueRequest("order", b"c@example.com"), EnqueueRequest("flaky")])
    assert {j.status for j in queue.enqueued()} == {JobStatus.PENDING}
    runs = await queue.run_pending()
    assert sorted((r.job.type, r.job.attempt) for r in runs) == [
        ("flaky", 1),
        ("flaky", 2),
        ("order", 1),
        ("welcome_email", 1),
    ]
    assert SENT == [b"c@example.com"]
    assert await queue.run_pending() == []


async def test_run_pending_is_bounded() -> None:
    queue = InlineQueue(eager=False)

    async def forever(job: Job) -> None:
        await queue.enqueue("forever")

    queue.register(Worker("forever", forever))
    await queue.enqueue("forever")
    with pytest.raises(RuntimeError, match="still pending after 20 runs"):
        await queue.run_pending(max_runs=20)


async def test_inline_cancel_and_retry() -> None:
    queue = InlineQueue(Worker("welcome_email", send_welcome), eager=False)
    job = await queue.enqueue("welcome_email", b"a@example.com")
    await queue.cancel(job.id)
    assert await queue.run_pending() == []
    assert (await queue.get(job.id)).status is JobStatus.CANCELLED
    with pytest.raises(ConnectError) as caught:
        await queue.cancel(job.id)
    assert caught.value.code is Code.FAILED_PRECONDITION

    again = await queue.retry(job.id)
    assert (again.status, again.attempt) == (JobStatus.PENDING, 0)
    await queue.run_pending()
    assert (await queue.get(job.id)).status is JobStatus.COMPLETED
    assert SENT == [b"a@example.com"]


async def test_inline_cancel_of_a_running_job_drops_its_outcome() -> None:
    queue = InlineQueue()

    async def cancels_itself(job: Job) -> None:
        await queue.cancel(job.id)
        raise ValueError("never recorded")

    queue.register(Worker("selfish", cancels_itself))
    job = await queue.enqueue("selfish")
    assert job.status is JobStatus.CANCELLED
    assert (job.attempt, job.last_error) == (1, "")
    assert len(queue.runs) == 1


def test_blocking_code_that_enqueues_is_tested_with_the_inline_sync_client() -> None:
    queue = InlineQueue(Worker("welcome_email", send_welcome))
    client = queue.sync()

    def sign_up_blocking(email: str) -> str:  # as in a WSGI view, with a SyncClient
        return client.enqueue("welcome_email", email, options=JobOptions(idempotency_key=email)).id

    job_id = sign_up_blocking("a@example.com")
    assert sign_up_blocking("a@example.com") == job_id
    assert client.get(job_id).status is JobStatus.COMPLETED
    assert SENT == [b"a@example.com"]
    with pytest.raises(ConnectError) as caught:
        client.cancel(job_id)
    assert caught.value.code is Code.FAILED_PRECONDITION


async def test_the_inline_sync_client_refuses_calls_from_a_coroutine() -> None:
    client = InlineQueue().sync()
    with pytest.raises(RuntimeError, match="called from a coroutine"):
        client.enqueue("welcome_email", b"a@example.com")


async def refusal(call: Awaitable[object]) -> tuple[Code, str]:
    with pytest.raises(ConnectError) as caught:
        await call
    return caught.value.code, str(caught.value)


async def test_inline_refusals_are_the_servers(server_url: str) -> None:
    """The same bad calls, to the inline queue and to the real server through Client:
    the same Connect codes and messages."""
    missing = "0000aaaa-0000-4000-8000-000000000000"
    bad_many = [EnqueueRequest("ok"), EnqueueRequest("no spaces")]
    queue = InlineQueue(eager=False)
    async with Client(server_url) as client:
        for calls in (
            lambda c: c.enqueue("bad type"),
            lambda c: c.enqueue("ok", options=JobOptions(max_attempts=0)),
            lambda c: c.enqueue("ok", execution_time_ms=-1),
            lambda c: c.enqueue("ok", b"x" * ((1 << 20) + 1)),
            lambda c: c.enqueue_many(bad_many),
            lambda c: c.get(missing),
            lambda c: c.get("not-an-id"),
            lambda c: c.cancel(missing),
            lambda c: c.retry(missing),
        ):
            inline, real = await refusal(calls(queue)), await refusal(calls(client))
            assert inline == real
        with pytest.raises(TypeError, match="payload"):
            await queue.enqueue("ok", 42)  # type: ignore[arg-type]
    assert queue.enqueued() == []


# -- the private Redis --------------------------------------------------------------------


def test_private_redis_runs_until_the_block_ends() -> None:
    with private_redis() as server:
        assert server.url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        data_dir = server.data_dir
    assert server.process is not None and server.process.poll() is not None
    assert not data_dir.exists()


async def test_async_private_redis_runs_until_the_block_ends() -> None:
    async with async_private_redis() as server:
        client = AsyncRedis.from_url(server.url)
        assert await client.ping()
        await client.aclose()
    assert server.process is not None and server.process.poll() is not None


# -- a handler tested against the private Redis with a real worker ------------------------


async def test_worker_drains_the_queue_on_the_private_redis(jobqueue_settings: Settings) -> None:
    async with Producer.connect(jobqueue_settings) as producer:
        first = await sign_up(producer, "a@example.com")
        await sign_up(producer, "b@example.com")
        await sign_up(producer, "a@example.com")  # the same job
        missing = await producer.enqueue("welcome_email", b"")  # PermanentError
        await drain(Worker("welcome_email", send_welcome), settings=jobqueue_settings, timeout_s=30)
        assert sorted(SENT) == [b"a@example.com", b"b@example.com"]
        assert (await producer.get(first)).status is JobStatus.COMPLETED
        failed = await producer.get(missing.id)
        assert failed.status is JobStatus.FAILED
        assert failed.last_error == "jobqueue.worker.errors.PermanentError: no address"


async def test_run_worker_serves_retries_until_the_block_ends(jobqueue_settings: Settings) -> None:
    worker = Worker("flaky", flaky(1, lambda: RetryAfter(0)))
    async with (
        Producer.connect(jobqueue_settings) as producer,
        run_worker(worker, settings=jobqueue_settings) as running,
    ):
        job = await producer.enqueue("flaky")
        await running.drain(timeout_s=30)
        done = await producer.get(job.id)
        assert (done.status, done.attempt) == (JobStatus.COMPLETED, 2)
        later = await producer.enqueue("flaky")
        await running.drain(timeout_s=30)
        assert (await producer.get(later.id)).status is JobStatus.COMPLETED


async def test_drain_times_out_naming_what_is_left(jobqueue_settings: Settings) -> None:
    never = asyncio.Event()

    async def stuck(job: Job) -> None:
        await never.wait()

    worker = Worker("stuck", stuck, shutdown_grace_s=0.1)
    async with Producer.connect(jobqueue_settings) as producer:
        job = await producer.enqueue("stuck")
        with pytest.raises(TimeoutError, match=r"did not drain within 0.5 s; left: stuck: "):
            await drain(worker, settings=jobqueue_settings, timeout_s=0.5)
        # Stopped: its job handed back, or never taken.
        assert (await producer.get(job.id)).status is JobStatus.PENDING


def test_the_plugins_fixtures_in_a_users_project(tmp_path: Path) -> None:
    """A project of its own turns the plugin on in its conftest.py: each test gets the
    session's Redis flushed, and Settings on it."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["jobqueue.testing.pytest_plugin"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import redis
            from jobqueue.testing import InlineQueue

            def test_writes(jobqueue_redis_url):
                redis.Redis.from_url(jobqueue_redis_url).set("left", "over")

            def test_finds_it_flushed(jobqueue_redis_url, jobqueue_settings, jobqueue_redis):
                assert jobqueue_settings.redis_url == jobqueue_redis_url == jobqueue_redis.url
                assert redis.Redis.from_url(jobqueue_redis_url).get("left") is None

            def test_inline(jobqueue_inline):
                assert isinstance(jobqueue_inline, InlineQueue) and jobqueue_inline.eager
            """
        )
    )
    assert "3 passed" in run_pytest(tmp_path)


def test_the_docs_example_project_passes(tmp_path: Path) -> None:
    """docs/testing.md's complete example: its files, written out and run as they are."""
    text = (ROOT / "docs" / "testing.md").read_text()
    files = re.findall(r"```python\n# (\w+\.py)\n(.*?)```", text, flags=re.DOTALL)
    assert [name for name, _ in files] == ["myapp.py", "conftest.py", "test_myapp.py"]
    for name, body in files:
        (tmp_path / name).write_text(body)
    assert "3 passed" in run_pytest(tmp_path)


def run_pytest(project: Path) -> str:
    """Runs pytest in `project` as its own rootdir; returns its output, failing the test unless all pass."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_jobqueue_testing_does_not_import_pytest() -> None:
    code = "import sys, jobqueue.testing; assert 'pytest' not in sys.modules, 'pytest imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
