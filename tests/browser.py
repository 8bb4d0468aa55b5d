"""A real browser for the tests: Debian's headless Chromium driven by Playwright,
and pages served from loopback origins of their own.

Nothing here downloads a browser: Chromium is the system's (`apt install chromium`;
.ci/run installs it), and tests that need it skip, saying so, where it is missing.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, async_playwright

from jobqueue.redis_server import free_port

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))),
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt install chromium; .ci/run installs it)"
)

# Without the background-networking ones, Chromium keeps calling home, which a closed
# network refuses.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    """Headless Chromium with a new, empty profile in `profile`."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True, timeout=60_000
        )
        try:
            yield context
        finally:
            await context.close()


@contextlib.contextmanager
def page_origin(files: Mapping[str, tuple[str, bytes]]) -> Iterator[str]:
    """A loopback origin (http://127.0.0.1:PORT) serving `files`: path -> (content type, body)."""

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


async def run_in_page(browser: BrowserContext, url: str, script: str, *args: Any) -> Any:
    """Opens `url` and runs `script` (a JavaScript function of `args`) in it."""
    page = await browser.new_page()
    try:
        await page.goto(url)
        return await page.evaluate(script, list(args))
    finally:
        await page.close()
