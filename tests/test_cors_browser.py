"""CORS as a real browser sees it: headless Chromium, a page on another origin, fetch.

The API runs on one loopback port; the page is served from two others, one an
allowed origin and one not. The page calls the API the way a browser app does:
Connect JSON with OpenTelemetry's `traceparent` and an `X-Request-Id`, which the
server allows only because it is configured to (JOBQUEUE_CORS_ALLOW_HEADERS), and
with credentials (JOBQUEUE_CORS_ALLOW_CREDENTIALS).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from .browser import chromium, needs_chromium, page_origin, run_in_page
from .conftest import jobqueue_server
from .test_api import SERVICE

pytestmark = needs_chromium

EXTRA_HEADERS = ("traceparent", "X-Request-Id")
TRACING = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "X-Request-Id": "req-42",
}
# The page's own code: one call of the API, and what the page can see of the answer.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>jobqueue CORS</title></head>
<body><script>
window.enqueue = async (api, extraHeaders, credentials) => {
  try {
    const response = await fetch(api + "/SERVICE/EnqueueJob", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Connect-Protocol-Version": "1", ...extraHeaders},
      body: JSON.stringify({type: "browser", payload: btoa("from " + location.origin)}),
      credentials: credentials ? "include" : "same-origin",
    });
    return {
      status: response.status,
      job: (await response.json()).job,
      contentEncoding: response.headers.get("content-encoding"),
      vary: response.headers.get("vary"),
    };
  } catch (error) {
    return {error: String(error)};
  }
};
</script></body></html>
""".replace(b"SERVICE", SERVICE.encode())
CALL = "([api, headers, credentials]) => window.enqueue(api, headers, credentials)"


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    files = {"/app.html": ("text/html; charset=utf-8", PAGE)}
    with page_origin(files) as allowed, page_origin(files) as refused:
        yield allowed, refused


@pytest.fixture(scope="module")
def api(redis_url: str, origins: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("cors") / "server.log"
    with jobqueue_server(
        redis_url, log,
        JOBQUEUE_CORS_ORIGINS=origins[0],
        JOBQUEUE_CORS_ALLOW_HEADERS=",".join(EXTRA_HEADERS),
        JOBQUEUE_CORS_ALLOW_CREDENTIALS="true",
    ) as url:  # fmt: skip
        yield url


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


async def test_browser_app_on_another_origin(
    browser: BrowserContext, api: str, origins: tuple[str, str]
) -> None:
    allowed, refused = origins

    async def call(origin: str, headers: dict[str, str], credentials: bool) -> Any:
        return await run_in_page(browser, f"{origin}/app.html", CALL, api, headers, credentials)

    # An allowed origin: the preflight lets traceparent and X-Request-Id through, the
    # call goes, with credentials, and the page reads the exposed headers only.
    result = await call(allowed, TRACING, credentials=True)
    assert result.get("status") == 200, result
    assert result["job"]["type"] == "browser"
    assert result["contentEncoding"] is not None  # exposed
    assert result["vary"] is None  # sent, but not exposed: the browser hides it
    # A header the server was not told of fails the preflight, even from that origin.
    unknown = await call(allowed, {**TRACING, "X-Unknown": "1"}, credentials=False)
    assert "Failed to fetch" in unknown.get("error", ""), unknown
    # Another origin fails the preflight.
    other = await call(refused, TRACING, credentials=False)
    assert "Failed to fetch" in other.get("error", ""), other
