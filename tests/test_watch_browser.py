"""WatchJob from a browser: headless Chromium on another origin reads the server
stream with fetch (the Connect protocol, JSON, HTTP/1.1), as a browser app would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from .browser import chromium, needs_chromium, page_origin, run_in_page
from .conftest import jobqueue_server
from .test_api import SERVICE

pytestmark = needs_chromium

# Enqueue, watch, cancel once the watch has the job's state, read to the end of the stream.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>jobqueue watch</title></head>
<body><script>
const call = async (api, method, body) => {
  const response = await fetch(`${api}/SERVICE/${method}`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
    body: JSON.stringify(body),
  });
  return response.json();
};
window.watchOneJob = async (api) => {
  try {
    const {job} = await call(api, "EnqueueJob", {type: "browser-watch"});
    const json = new TextEncoder().encode(JSON.stringify({id: job.id}));
    const request = new Uint8Array(5 + json.length);
    new DataView(request.buffer).setUint32(1, json.length);
    request.set(json, 5);
    const response = await fetch(`${api}/SERVICE/WatchJob`, {
      method: "POST", headers: {"Content-Type": "application/connect+json"}, body: request,
    });
    const reader = response.body.getReader();
    let buffer = new Uint8Array(0);
    const statuses = [];
    let end = null;
    let cancelled = false;
    let lastCursor = null;
    while (end === null) {
      const {value, done} = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
      while (buffer.length >= 5) {
        const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
        if (buffer.length < 5 + length) break;
        const flags = buffer[0];
        const message = JSON.parse(new TextDecoder().decode(buffer.slice(5, 5 + length)));
        buffer = buffer.slice(5 + length);
        if (flags & 2) { end = message; break; }
        if (message.event.cursor === lastCursor) continue;  // a repeat: HTTP/1.1's keepalive
        lastCursor = message.event.cursor;
        statuses.push(message.event.status);
        if (!cancelled) { cancelled = true; await call(api, "CancelJob", {id: job.id}); }
      }
    }
    return {status: response.status, statuses, end};
  } catch (error) {
    return {error: String(error)};
  }
};
</script></body></html>
""".replace(b"SERVICE", SERVICE.encode())


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with page_origin({"/app.html": ("text/html; charset=utf-8", PAGE)}) as url:
        yield url


@pytest.fixture(scope="module")
def api(redis_url: str, origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("watch-browser") / "server.log"
    with jobqueue_server(redis_url, log, JOBQUEUE_CORS_ORIGINS=origin) as url:
        yield url


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "profile") as context:
        yield context


async def test_a_browser_watches_a_job_to_its_end(browser: BrowserContext, api: str, origin: str) -> None:
    result = await run_in_page(browser, f"{origin}/app.html", "([api]) => window.watchOneJob(api)", api)
    assert result.get("status") == 200, result
    assert result["statuses"] == ["JOB_STATUS_PENDING", "JOB_STATUS_CANCELLED"], result
    assert result["end"] == {}, result  # the stream ended OK after the final status
