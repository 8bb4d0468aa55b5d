"""The dashboard's files: its page at `/` and its assets under `/assets/`.

They are a fixed set shipped in the package (`jobqueue/dashboard/`, built from
web/ by scripts/build_dashboard.sh), read once and answered from memory. The
page holds no data: the app in it calls the API from the browser like any other
client (docs/dashboard.md), so it is served to anyone, auth or not.

Every answer carries a strong ETag (a revalidation costs a 304 and no body),
`Cache-Control: no-cache` (the names are fixed, so a browser must ask whether a
file changed after an upgrade), and headers that keep the page to its own files:
`nosniff`, and a Content-Security-Policy that allows scripts, styles and calls
from this origin only, nothing inline. Unknown names under `/assets/` answer as
any unknown path does.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .router import ServiceApp, _not_found

# The files, by name, and how they are served; nothing else in the folder is.
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE = "index.html"
ASSETS_PATH = "/assets"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"vary", b"accept-encoding"),
]
# Smaller than this, gzip saves too little to be worth a second copy.
_GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class StaticFile:
    content_type: bytes
    body: bytes
    gzipped: bytes | None
    etag: bytes


def load_files() -> dict[str, StaticFile]:
    folder = resources.files("jobqueue").joinpath("dashboard")
    files: dict[str, StaticFile] = {}
    for name, content_type in CONTENT_TYPES.items():
        body = folder.joinpath(name).read_bytes()
        # mtime=0: the same bytes every time, like the ETag, which names the uncompressed body.
        gzipped = gzip.compress(body, mtime=0) if len(body) >= _GZIP_MIN_BYTES else None
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        files[name] = StaticFile(content_type.encode(), body, gzipped, etag)
    return files


class _Files:
    """Serves the file `name_of` finds for a request's path (None: an unknown path)."""

    def __init__(self, path: str, files: dict[str, StaticFile], name_of: Callable[[str], str | None]) -> None:
        self._path = path
        self._files = files
        self._name_of = name_of

    @property
    def path(self) -> str:
        return self._path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = self._name_of(scope.get("path", ""))
        found = self._files.get(name) if name is not None else None
        if found is None:
            await _not_found(send)  # as for any unknown path
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            headers = [(b"content-type", b"text/plain"), (b"allow", b"GET, HEAD")]
            await _answer(send, 405, headers, f"{method} not allowed: GET or HEAD\n".encode())
            return
        request_headers = dict(scope.get("headers", ()))
        headers = [(b"content-type", found.content_type), (b"etag", found.etag), *_COMMON_HEADERS]
        if _matches(found.etag, request_headers.get(b"if-none-match", b"")):
            await _answer(send, 304, headers, b"", head=True)
            return
        body = found.body
        if found.gzipped is not None and _accepts_gzip(request_headers.get(b"accept-encoding", b"")):
            body = found.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await _answer(send, 200, headers, body, head=method == "HEAD")


def _page_name(path: str) -> str | None:
    return PAGE if path == "/" else None


def _asset_name(path: str) -> str | None:
    name = path.removeprefix(ASSETS_PATH + "/")
    return name if name != PAGE else None


def dashboard_apps() -> list[ServiceApp]:
    """The router's apps for the page (path `/`) and its assets (under `/assets/`)."""
    files = load_files()
    return [_Files("", files, _page_name), _Files(ASSETS_PATH, files, _asset_name)]


def _matches(etag: bytes, if_none_match: bytes) -> bool:
    """If-None-Match compares weakly (RFC 9110): a W/ prefix does not matter."""
    tags = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
    return etag in tags or b"*" in tags


def _accepts_gzip(header: bytes) -> bool:
    for coding in header.lower().split(b","):
        name, _, params = coding.strip().partition(b";")
        if name.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def _answer(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, head: bool = False
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
