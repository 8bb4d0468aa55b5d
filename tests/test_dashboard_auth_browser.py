"""The dashboard with auth on (docs/security.md), in headless Chromium: the page and
its files are open, the app asks for a token once, keeps it for the tab, sends it on
every call, and shows only what the token's role may do."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from jobqueue.auth import ROLES
from jobqueue.auth.tokens import file_line, new_token
from jobqueue.client import Client, SyncClient

from .browser import chromium, needs_chromium
from .conftest import jobqueue_server
from .edge import error_lines

pytestmark = needs_chromium

SHOWN_MS = 20_000
FAR_FUTURE_MS = 4_102_444_800_000  # 2100
JOB_TYPE = "auth-dash"


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {role: new_token() for role in ROLES}


@pytest.fixture(scope="module")
def api(redis_url: str, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("dashboard-auth")
    path = directory / "tokens"
    path.write_text("".join(f"{file_line(role, token)}\n" for role, token in tokens.items()))
    log = directory / "server.log"
    with jobqueue_server(
        redis_url, log, JOBQUEUE_AUTH_TOKENS_FILE=str(path), JOBQUEUE_PREFIX="dash-auth"
    ) as url:
        yield url
    text = log.read_text(errors="replace")
    assert not error_lines(text), text[-3000:]
    leaked = [role for role, token in tokens.items() if token in text]
    assert not leaked, f"tokens of {leaked} in the server's log"


@pytest.fixture(scope="module")
def job_id(api: str, tokens: dict[str, str]) -> str:
    """A job that waits: a queue for the table, a job for the detail."""
    with urllib.request.urlopen(f"{api}/", timeout=30) as page:  # the page needs no token
        assert page.status == 200
    with SyncClient(api, token=tokens["admin"]) as client:
        return client.enqueue(JOB_TYPE, "waits", execution_time_ms=FAR_FUTURE_MS).id


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


async def sign_in(page: Page, api: str, token: str) -> None:
    await page.goto(f"{api}/")
    await expect(page.get_by_test_id("token-form")).to_be_visible(timeout=SHOWN_MS)
    await page.get_by_test_id("token-input").fill(token)
    await page.get_by_test_id("token-submit").click()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=SHOWN_MS)


async def test_a_wrong_token_is_asked_again_and_a_reader_sees_without_buttons(
    browser: BrowserContext, api: str, tokens: dict[str, str], job_id: str
) -> None:
    page = await browser.new_page()
    await page.goto(f"{api}/")
    await expect(page.get_by_test_id("token-form")).to_be_visible(timeout=SHOWN_MS)
    await expect(page.get_by_test_id("token-error")).to_have_text("")
    await page.get_by_test_id("token-input").fill(new_token())
    await page.get_by_test_id("token-submit").click()
    await expect(page.get_by_test_id("token-error")).to_have_text(
        "WhoAmI: unauthenticated: invalid token", timeout=SHOWN_MS
    )
    await page.get_by_test_id("token-input").fill(tokens["reader"])
    await page.get_by_test_id("token-submit").click()
    await expect(page.get_by_test_id("whoami")).to_have_text("role: reader", timeout=SHOWN_MS)
    await expect(page.get_by_test_id("token-form")).to_be_hidden()

    row = page.get_by_test_id(f"queue-{JOB_TYPE}")
    await expect(row.get_by_test_id("count-pending")).to_have_text("1", timeout=SHOWN_MS)
    for button in (f"pause-{JOB_TYPE}", f"resume-{JOB_TYPE}", f"retry-dead-{JOB_TYPE}"):
        await expect(page.get_by_test_id(button)).to_be_hidden()
    await expect(page.get_by_test_id("enqueue-form")).to_be_hidden()
    await expect(page.locator("#workers")).to_be_visible()  # ListWorkers is a reader's
    await page.goto(f"{api}/#job={job_id}")  # kept for the tab: no token asked again
    await expect(page.get_by_test_id("job-status")).to_have_text("PENDING", timeout=SHOWN_MS)
    await expect(page.get_by_test_id("token-form")).to_be_hidden()
    await expect(page.get_by_test_id("job-cancel")).to_be_hidden()
    await expect(page.get_by_test_id("notice-error")).to_have_count(0)

    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("token-form")).to_be_visible(timeout=SHOWN_MS)
    assert await page.evaluate("sessionStorage.getItem('jobqueue.token')") is None


async def test_a_producer_enqueues_and_cancels_and_is_shown_nothing_it_may_not_read(
    browser: BrowserContext, api: str, tokens: dict[str, str]
) -> None:
    page = await browser.new_page()
    await sign_in(page, api, tokens["producer"])
    await expect(page.get_by_test_id("whoami")).to_have_text("role: producer")
    for section in ("#queues", "#jobs", "#workers"):  # GetQueueStats, ListJobs, ListWorkers: not a producer's
        await expect(page.locator(section)).to_be_hidden()
    await page.get_by_test_id("enqueue-type").fill(JOB_TYPE)
    await page.get_by_test_id("enqueue-delay").fill("3600")
    await page.get_by_test_id("enqueue-submit").click()
    await expect(page.get_by_test_id("job-status")).to_have_text("PENDING", timeout=SHOWN_MS)
    job = await page.get_by_test_id("job-id").text_content()
    await page.get_by_test_id("job-cancel").click()
    await expect(page.get_by_test_id("job-status")).to_have_text("CANCELLED", timeout=SHOWN_MS)
    await expect(page.get_by_test_id("job-retry")).to_be_visible()
    async with Client(api, token=tokens["reader"]) as client:
        assert (await client.get(str(job))).status.name == "CANCELLED"
    # Nothing it may not call was called: no permission_denied in the page.
    await expect(page.get_by_test_id("notice-error")).to_have_count(0)
