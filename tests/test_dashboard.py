"""The dashboard's files as the server answers them (server/dashboard.py): types,
caching, and the headers that keep the page to its own files. What the page does
is tests/test_dashboard_browser.py's."""

from __future__ import annotations

import gzip
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from jobqueue.server.dashboard import CONTENT_TYPES

from .conftest import ROOT

DASHBOARD = ROOT / "jobqueue" / "dashboard"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    vary: list[str]  # one Vary is ours; CORS may add its own


def fetch(url: str, method: str = "GET", **headers: str) -> Reply:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            vary = reply.headers.get_all("vary") or []
            return Reply(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read(), vary)
    except urllib.error.HTTPError as error:
        vary = error.headers.get_all("vary") or []
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read(), vary)


def test_the_page_is_served_at_the_root_with_a_strict_policy(server_url: str) -> None:
    page = fetch(f"{server_url}/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.body == (DASHBOARD / "index.html").read_bytes()
    policy = page.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy and "script-src 'self';" in policy and "connect-src 'self'" in policy
    )
    assert "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', page.headers["etag"])  # strong: no W/
    # Nothing inline for the policy to refuse: every script and style is a file.
    assert not re.search(rb"<script(?![^>]*\bsrc=)", page.body) and b"<style" not in page.body
    assert b" style=" not in page.body and b" onclick=" not in page.body


def test_every_asset_the_page_names_is_served_with_its_type(server_url: str) -> None:
    page = fetch(f"{server_url}/").body.decode()
    named = set(re.findall(r'(?:src|href)="assets/([^"]+)"', page))
    assert named == {"app.js", "app.css", "favicon.svg"}
    for name in named:
        asset = fetch(f"{server_url}/assets/{name}")
        assert asset.status == 200, name
        assert asset.headers["content-type"] == CONTENT_TYPES[name]
        assert asset.body == (DASHBOARD / name).read_bytes()
        assert asset.headers["x-content-type-options"] == "nosniff"


def test_a_revalidation_with_the_etag_costs_a_304_and_no_body(server_url: str) -> None:
    first = fetch(f"{server_url}/assets/app.js")
    again = fetch(f"{server_url}/assets/app.js", **{"If-None-Match": first.headers["etag"]})
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", first.headers["etag"])
    other = fetch(f"{server_url}/assets/app.js", **{"If-None-Match": '"0123"'})
    assert (other.status, other.body) == (200, first.body)
    # Another file has another tag.
    assert fetch(f"{server_url}/assets/app.css").headers["etag"] != first.headers["etag"]


def test_head_answers_the_headers_alone_and_gzip_goes_to_those_who_accept_it(server_url: str) -> None:
    whole = fetch(f"{server_url}/assets/app.js")
    head = fetch(f"{server_url}/assets/app.js", method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(len(whole.body)))
    zipped = fetch(f"{server_url}/assets/app.js", **{"Accept-Encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip" and "accept-encoding" in zipped.vary
    assert len(zipped.body) < len(whole.body) / 2 and gzip.decompress(zipped.body) == whole.body
    assert (
        "content-encoding"
        not in fetch(f"{server_url}/assets/app.js", **{"Accept-Encoding": "gzip;q=0"}).headers
    )


@pytest.mark.parametrize(
    "path", ["/assets/nope.js", "/assets/index.html", "/assets/", "/assets", "/index.html", "/x"]
)
def test_unknown_paths_keep_their_answer(server_url: str, path: str) -> None:
    reply = fetch(f"{server_url}{path}")
    assert (reply.status, reply.body) == (404, b"no such service\n")


def test_other_methods_are_refused_naming_the_allowed_ones(server_url: str) -> None:
    reply = fetch(f"{server_url}/", method="POST")
    assert (reply.status, reply.headers["allow"]) == (405, "GET, HEAD")
    assert b"POST" in reply.body
