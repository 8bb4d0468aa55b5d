"""The dashboard in a real browser (Debian's headless Chromium, tests/browser.py),
against a `jobqueue server` of its own keyspace and in-process workers: enqueue
through the form and see the job complete live, cancel a scheduled job, bulk-retry
dead letters, list and page jobs, read the counts, the workers and the charts.

JOBQUEUE_DASHBOARD_SCREENSHOT=docs/dashboard.png also saves the screenshot there
(the README's picture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Dialog, Page, Request, expect
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.model import EnqueueRequest, Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.worker import PermanentError, Worker

from .browser import chromium, needs_chromium
from .conftest import ROOT, eventually, jobqueue_server, status_is
from .edge import error_lines
from .harness import Harness
from .test_api import SERVICE
from .test_worker import running

pytestmark = needs_chromium

# How long the page may take to show a change: its counts refresh every 2 s.
SHOWN_MS = 20_000
expect.set_options(timeout=SHOWN_MS)  # for every expect() of the module (only these tests use it)
FAR_FUTURE_S = 3600
BATCH = 40
FAR_FUTURE_MS = 4_102_444_800_000  # 2100


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"dash-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(redis_url: str, prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of the dashboard tests' own keyspace: the page shows only their queues.
    Whatever the page does, it may log no error."""
    log = tmp_path_factory.mktemp("dashboard") / "server.log"
    with jobqueue_server(redis_url, log, JOBQUEUE_PREFIX=prefix) as url:
        yield url
    errors = error_lines(log.read_text(errors="replace"))
    assert not errors, "the dashboard's server logged errors:\n" + "\n---\n".join(errors[:10])


@pytest.fixture
def worker_settings(settings: Settings, prefix: str) -> Settings:
    return dataclasses.replace(settings, prefix=prefix)


@pytest.fixture
def own(redis: Redis, worker_settings: Settings) -> Harness:
    """The store of the dashboard's server."""
    return Harness(redis, worker_settings)


@pytest.fixture
def problems() -> list[str]:
    """The errors the page logged (a test removes those it provoked)."""
    return []


@pytest.fixture
async def page(tmp_path: Path, api: str, problems: list[str]) -> AsyncIterator[Page]:
    """The dashboard, loaded and signed in; the test fails on any error the page logs."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    async with chromium(tmp_path / "profile") as browser:
        page = await browser.new_page()
        await page.set_viewport_size({"width": 1400, "height": 1000})
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{api}/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        yield page
        assert not problems, problems


def queue_count(page: Page, job_type: str, count: str) -> object:
    return page.get_by_test_id(f"queue-{job_type}").get_by_test_id(f"count-{count}")


async def enqueue_in_form(page: Page, job_type: str, payload: str = "", delay_s: float | None = None) -> str:
    """Fills and submits the enqueue form; the new job's id, once its detail shows."""
    await page.get_by_test_id("enqueue-type").fill(job_type)
    await page.get_by_test_id("enqueue-payload").fill(payload)
    await page.get_by_test_id("enqueue-delay").fill("" if delay_s is None else str(delay_s))
    previous = await page.get_by_test_id("enqueued-id").text_content()
    await page.get_by_test_id("enqueue-submit").click()
    await expect(page.get_by_test_id("enqueued-id")).not_to_have_text(previous or "")
    job_id = await page.get_by_test_id("enqueued-id").text_content()
    assert job_id is not None
    await expect(page.get_by_test_id("job-id")).to_have_text(job_id)
    return job_id


async def test_enqueue_watch_cancel_retry_and_bulk_retry_from_the_page(
    page: Page, own: Harness, worker_settings: Settings, api: str, tmp_path: Path
) -> None:
    await expect(page.get_by_test_id("whoami")).to_have_text("role: admin (auth off)")
    await expect(page.get_by_test_id("sign-out")).to_be_hidden()

    async def send(job: Job) -> None:
        pass

    emails = Worker("email", send, settings=worker_settings, heartbeat_s=0.2)
    async with running(emails):
        # Enqueued through the form, it completes live in the page (WatchJob).
        done = await enqueue_in_form(page, "email", '{"to": "ada@example.com", "n": 1}')
        await expect(page.get_by_test_id("job-status")).to_have_text("COMPLETED")
        assert (await own.get(done)).status is JobStatus.COMPLETED
        await expect(page.get_by_test_id("job-attempts")).to_have_text("1 of 3")
        await expect(page.get_by_test_id("job-worker")).to_have_text(emails.worker_id)
        await expect(page.get_by_test_id("job-event").last).to_contain_text("COMPLETED attempt 1")
        await page.get_by_test_id("payload-json").click()
        await expect(page.get_by_test_id("job-payload")).to_have_text(
            '{\n  "to": "ada@example.com",\n  "n": 1\n}'
        )
        await page.get_by_test_id("payload-hex").click()
        await expect(page.get_by_test_id("job-payload")).to_contain_text("00000000  7b 22 74 6f 22")

        # Scheduled for later, it is cancelled with the button.
        later = await enqueue_in_form(page, "email", "later", delay_s=FAR_FUTURE_S)
        await expect(page.get_by_test_id("job-status")).to_have_text("PENDING")
        await page.get_by_test_id("job-cancel").click()
        await expect(page.get_by_test_id("job-status")).to_have_text("CANCELLED")
        await expect(page.get_by_test_id("job-cancel")).to_be_hidden()
        await expect(page.get_by_test_id("job-retry")).to_be_visible()
        await eventually(status_is(own, later, JobStatus.CANCELLED), what="the cancel stored")

        email_row = page.get_by_test_id("queue-email")
        await expect(queue_count(page, "email", "completed")).to_have_text("1")
        await expect(queue_count(page, "email", "cancelled")).to_have_text("1")
        await expect(queue_count(page, "email", "workers")).to_have_text("1")
        await expect(email_row.get_by_test_id("state")).to_have_text("active")
        await expect(page.get_by_test_id("worker")).to_contain_text(emails.worker_id)

        # Retried with the button, it runs now, and the page follows it to its end.
        await page.get_by_test_id("job-retry").click()
        await expect(page.get_by_test_id("job-status")).to_have_text("COMPLETED")
        await eventually(status_is(own, later, JobStatus.COMPLETED), what="the retried job completed")
        await expect(queue_count(page, "email", "cancelled")).to_have_text("0")

        # A batch: the counts follow, and the throughput chart has something to show.
        async with Client(api) as client:
            await client.enqueue_many([EnqueueRequest("email", f"batch {i}".encode()) for i in range(BATCH)])
        completed = str(2 + BATCH)
        await expect(queue_count(page, "email", "completed")).to_have_text(completed)

        # Dead letters: jobs whose handler fails for good.
        async def refuse(job: Job) -> None:
            raise PermanentError("disk full")

        async with (
            running(Worker("reports", refuse, settings=worker_settings, heartbeat_s=0.2)),
            Client(api) as client,
        ):
            dead = [await client.enqueue("reports", f"report {i}") for i in range(3)]
            for job in dead:
                await eventually(status_is(own, job.id, JobStatus.FAILED), what="a dead letter")
        await expect(queue_count(page, "reports", "failed")).to_have_text("3")

        # Listed by the error filter...
        await page.get_by_test_id("filter-type").fill("reports")
        await page.get_by_test_id("filter-status").select_option(str(JobStatus.FAILED.value))
        await page.get_by_test_id("filter-error").fill("disk")
        await page.get_by_test_id("filter-apply").click()
        rows = page.get_by_test_id("job-row")
        await expect(rows).to_have_count(3)
        await expect(rows.first).to_contain_text("disk full")
        await page.get_by_test_id("filter-error").fill("no such error")
        await page.get_by_test_id("filter-apply").click()
        await expect(rows).to_have_count(0)

        # ... then retried in bulk, after the confirm.
        confirms: list[str] = []

        async def accept(dialog: Dialog) -> None:
            confirms.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        await page.get_by_test_id("retry-dead-reports").click()
        await expect(queue_count(page, "reports", "failed")).to_have_text("0")
        await expect(queue_count(page, "reports", "pending")).to_have_text("3")
        assert confirms == ["Retry the 3 dead letters (FAILED jobs) of reports?"]
        for job in dead:
            assert (await own.get(job.id)).status is JobStatus.PENDING
        await expect(page.get_by_test_id("notice-info").first.locator("span")).to_have_text(
            "RetryJobs: 3 dead letters of reports retried"
        )
        await expect(page.get_by_test_id("retry-dead-reports")).to_be_disabled()

        # The totals, and a chart line per type.
        total = page.get_by_test_id("queue-total")
        await expect(total.get_by_test_id("count-pending")).to_have_text("3")
        await expect(total.get_by_test_id("count-completed")).to_have_text(completed)
        await expect(total.get_by_test_id("count-workers")).to_have_text("1")
        await expect(email_row.get_by_test_id("throughput")).to_have_text(re.compile(r"^\d+/min"))
        await expect(
            email_row.locator("svg.sparkline rect").first
        ).to_be_attached()  # this hour's completions
        legend = page.get_by_test_id("chart-depth").locator("li")
        await expect(legend.filter(has_text="reports:")).to_have_text("reports: 3 pending")
        await expect(legend.filter(has_text="email:")).to_have_text("email: 0 pending")
        await expect(page.get_by_test_id("notice-error")).to_have_count(0)

        await page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
        if target := os.environ.get("JOBQUEUE_DASHBOARD_SCREENSHOT"):
            await page.screenshot(path=ROOT / target, full_page=True)


async def test_pause_and_resume_from_the_page(page: Page, own: Harness, api: str) -> None:
    async with Client(api) as client:
        await client.enqueue("paused-type", "x", execution_time_ms=FAR_FUTURE_MS)
    row = page.get_by_test_id("queue-paused-type")
    await expect(row.get_by_test_id("state")).to_have_text("active")
    await expect(page.get_by_test_id("resume-paused-type")).to_be_hidden()
    await page.get_by_test_id("pause-paused-type").click()
    await expect(row.get_by_test_id("state")).to_have_text("paused")
    await expect(page.get_by_test_id("pause-paused-type")).to_be_hidden()
    async with Client(api) as client:
        assert (await client.stats("paused-type")).queues[0].paused
    await page.get_by_test_id("resume-paused-type").click()
    await expect(row.get_by_test_id("state")).to_have_text("active")
    async with Client(api) as client:
        assert not (await client.stats("paused-type")).queues[0].paused


async def test_jobs_come_a_page_at_a_time(page: Page, api: str) -> None:
    async with Client(api) as client:
        for i in range(25):
            await client.enqueue("paged", str(i), execution_time_ms=FAR_FUTURE_MS)
    await page.get_by_test_id("filter-type").fill("paged")
    await page.get_by_test_id("filter-status").select_option(str(JobStatus.PENDING.value))
    await page.get_by_test_id("filter-order").select_option("2")  # oldest first
    await page.get_by_test_id("filter-apply").click()
    rows = page.get_by_test_id("job-row")
    await expect(rows).to_have_count(20)
    await expect(page.get_by_test_id("jobs-prev")).to_be_disabled()
    await page.get_by_test_id("jobs-next").click()
    await expect(rows).to_have_count(5)
    await expect(page.get_by_test_id("jobs-page")).to_have_text("page 2")
    await expect(page.get_by_test_id("jobs-next")).to_be_disabled()
    await page.get_by_test_id("jobs-prev").click()
    await expect(rows).to_have_count(20)
    # A row opens the job's detail.
    await rows.first.get_by_test_id("job-link").click()
    await expect(page.get_by_test_id("job-payload")).to_have_text("0")


async def test_an_error_shows_its_connect_code_and_message(page: Page, problems: list[str]) -> None:
    await page.get_by_test_id("enqueue-type").fill("no spaces allowed")
    await page.get_by_test_id("enqueue-submit").click()
    error = page.get_by_test_id("notice-error").locator("span")
    await expect(error).to_have_text(re.compile(r"^EnqueueJob: invalid_argument: .*\btype\b"))
    # Chromium logs the refused call (Connect answers invalid_argument as HTTP 400).
    assert problems == ["Failed to load resource: the server responded with a status of 400 ()"]
    problems.clear()
    await page.get_by_test_id("enqueue-type").fill("ok")
    await page.get_by_test_id("enqueue-delay").fill("1")
    await page.get_by_test_id("enqueue-at").fill("2030-01-01T00:00:00")
    await page.get_by_test_id("enqueue-submit").click()
    await expect(page.get_by_test_id("enqueue-problem")).to_have_text("give a delay or a time, not both")


async def test_a_token_kept_for_the_session_goes_with_every_call_until_sign_out(
    page: Page, api: str, problems: list[str]
) -> None:
    # With auth off the server ignores the token; what is tested is the page's side:
    # a token in sessionStorage (as the token form leaves it) goes with every call.
    # A tab of its own (its own sessionStorage), holding the token before its first load.
    tab = await page.context.new_page()
    tab.on("pageerror", lambda error: problems.append(str(error)))
    await tab.add_init_script(
        "if (!sessionStorage.getItem('test.seeded')) {"
        " sessionStorage.setItem('test.seeded', '1'); sessionStorage.setItem('jobqueue.token', 's3cret'); }"
    )
    sent: list[str | None] = []

    def note(request: Request) -> None:  # at once, in the order the page sends
        if request.method == "POST" and f"/{SERVICE}/" in request.url:
            sent.append(request.headers.get("authorization"))

    async def calls_noted(count: int) -> None:
        async def enough() -> bool:
            return len(sent) >= count

        await eventually(enough, timeout=SHOWN_MS / 1000, what=f"{count} calls from the page")

    tab.on("request", note)
    await tab.goto(f"{api}/")
    await expect(tab.locator("body")).to_have_attribute("data-ready", "true")
    await expect(tab.get_by_test_id("sign-out")).to_be_visible()
    await expect(tab.get_by_test_id("token-form")).to_be_hidden()
    await calls_noted(4)  # WhoAmI, GetQueueStats, ListJobs, WatchJobs...
    assert set(sent) == {"Bearer s3cret"}, sent

    await tab.get_by_test_id("sign-out").click()
    await expect(tab.get_by_test_id("sign-out")).to_be_hidden()
    await expect(tab.locator("body")).to_have_attribute("data-ready", "true")
    assert await tab.evaluate("sessionStorage.getItem('jobqueue.token')") is None
    # The calls of the reloaded page, every 2 s: none carries a token.
    sent.clear()
    await calls_noted(3)
    assert set(sent) == {None}, sent
    await tab.close()


SET_HIDDEN = """(hidden) => {
  Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


async def test_a_hidden_tab_lets_go_of_its_streams_and_takes_them_again_when_shown(page: Page) -> None:
    # A browser opens at most six HTTP/1.1 connections to a server for all its tabs:
    # background tabs holding streams would leave none for the one in front.
    started: list[str] = []
    ended: list[str] = []
    page.on("request", lambda request: started.append(request.url.rsplit("/", 1)[1]))
    page.on("requestfailed", lambda request: ended.append(request.url.rsplit("/", 1)[1]))
    page.on("requestfinished", lambda request: ended.append(request.url.rsplit("/", 1)[1]))
    await enqueue_in_form(page, "hidden-tab", delay_s=FAR_FUTURE_S)  # watched while it waits

    async def count(calls: list[str], method: str, at_least: int) -> None:
        async def enough() -> bool:
            return calls.count(method) >= at_least

        await eventually(enough, timeout=SHOWN_MS / 1000, what=f"{at_least} {method} in {calls}")

    await count(started, "WatchJob", 1)
    assert ended.count("WatchJobs") == ended.count("WatchJob") == 0
    watches = started.count("WatchJobs")
    await page.evaluate(SET_HIDDEN, True)
    await count(ended, "WatchJobs", 1)
    await count(ended, "WatchJob", 1)
    await page.evaluate(SET_HIDDEN, False)
    await count(started, "WatchJobs", watches + 1)
    await count(started, "WatchJob", 2)
    await expect(page.get_by_test_id("job-status")).to_have_text("PENDING")


async def test_the_job_list_follows_job_events(page: Page, api: str) -> None:
    # The list has no timer: a job enqueued elsewhere shows through WatchJobs' events.
    await page.get_by_test_id("filter-type").fill("followed")
    await page.get_by_test_id("filter-apply").click()
    await expect(page.get_by_test_id("jobs-body")).to_contain_text("no jobs on this page")
    async with Client(api) as client:
        job = await client.enqueue("followed", "x", execution_time_ms=FAR_FUTURE_MS)
        await expect(page.locator(f'[data-testid=job-row][data-id="{job.id}"]')).to_contain_text("PENDING")
        await client.cancel(job.id)
    # Unfinished jobs only: the cancelled one leaves the list.
    await expect(page.get_by_test_id("job-row")).to_have_count(0)


async def test_the_job_view_shows_progress_as_it_comes(page: Page, worker_settings: Settings) -> None:
    """The job view asks WatchJob for progress: each report shows in place, as it comes,
    without a line in the events list (those are changes of status)."""
    steps = [asyncio.Event(), asyncio.Event()]

    async def report(job: Job) -> None:
        for i, step in enumerate(steps):
            job.set_progress((i + 1) / 4, f"step {i + 1}")
            await asyncio.wait_for(step.wait(), 30)

    worker = Worker("reporting", report, settings=worker_settings, heartbeat_s=0.2, progress_interval_s=0.05)
    async with running(worker):
        await enqueue_in_form(page, "reporting")
        shown = page.get_by_test_id("job-progress")
        await expect(shown).to_contain_text("25% step 1")
        logged = await page.get_by_test_id("job-event").count()  # its start is in: it came first
        steps[0].set()
        await expect(shown).to_contain_text("50% step 2")  # no GetJob: only the event brings it
        await expect(page.get_by_test_id("job-event")).to_have_count(logged)
        steps[1].set()
        await expect(page.get_by_test_id("job-status")).to_have_text("COMPLETED")
    await expect(page.get_by_test_id("notice-error")).to_have_count(0)
