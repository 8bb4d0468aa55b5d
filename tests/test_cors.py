"""CORS configuration: connect-es's header lists by default, headers of one's own,
credentials, and refusals at startup (the browser's view is in test_cors_browser.py)."""

from __future__ import annotations

import sys

import pytest

from jobqueue.server.cors import MAX_AGE_S
from jobqueue.settings import Settings

from .test_api import SERVICE, curl, post_json, run

# connect-es's `cors.allowedHeaders` and connectrpc.com/cors's AllowedHeaders, merged,
# and Authorization; their exposed headers likewise.
CONNECT_ALLOWED = {
    "content-type", "connect-protocol-version", "connect-timeout-ms", "connect-content-encoding",
    "connect-accept-encoding", "content-encoding", "accept-encoding", "grpc-timeout",
    "grpc-message-type", "x-grpc-web", "x-user-agent", "authorization",
}  # fmt: skip
CONNECT_EXPOSED = {
    "grpc-status", "grpc-message", "grpc-status-details-bin", "content-encoding", "connect-content-encoding",
}  # fmt: skip


def header_list(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


async def test_default_lists(server_url: str) -> None:
    """The suite's server: https://app.example allowed, nothing else configured."""
    origin = ("-H", "Origin: https://app.example")
    preflight = await curl(
        "-X", "OPTIONS", *origin, "-H", "Access-Control-Request-Method: POST",
        f"{server_url}/{SERVICE}/EnqueueJob",
    )  # fmt: skip
    assert preflight.status == 204, preflight
    assert header_list(preflight.headers["access-control-allow-headers"]) == CONNECT_ALLOWED
    assert preflight.headers["access-control-max-age"] == str(MAX_AGE_S)
    assert "access-control-allow-credentials" not in preflight.headers
    reply = await post_json(server_url, "EnqueueJob", '{"type": "cors"}', *origin)
    assert header_list(reply.headers["access-control-expose-headers"]) == CONNECT_EXPOSED
    assert "access-control-allow-credentials" not in reply.headers


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--cors-origin", "*", "--cors-allow-credentials"],
            {},
            "credentials cannot be allowed for any origin",
        ),
        ([], {"JOBQUEUE_CORS_ORIGINS": "*", "JOBQUEUE_CORS_ALLOW_CREDENTIALS": "yes"}, "any origin"),
        (["--cors-origin", "https://a.example", "--cors-allow-header", "X-Bad:1"], {}, "not a header name"),
        ([], {"JOBQUEUE_CORS_ALLOW_CREDENTIALS": "maybe"}, "JOBQUEUE_CORS_ALLOW_CREDENTIALS='maybe'"),
    ],
)
@pytest.mark.parametrize("server", ["hypercorn", "h2corn"])
async def test_refused_at_startup(server: str, args: list[str], env: dict[str, str], message: str) -> None:
    """Before the server listens (h2corn: before it is started), with the reason."""
    command = [sys.executable, "-m", "jobqueue.cli", "server", "--server", server, "--port", "1", *args]
    ran = await run("env", *(f"{k}={v}" for k, v in env.items()), *command)
    assert ran.code == 1, ran
    assert message in ran.err, ran.err


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env({
        "JOBQUEUE_CORS_ORIGINS": "https://a.example",
        "JOBQUEUE_CORS_ALLOW_HEADERS": "traceparent, X-Request-Id,",
        "JOBQUEUE_CORS_ALLOW_CREDENTIALS": "true",
        "JOBQUEUE_SERVER_SHUTDOWN_GRACE_S": "2.5",
    })  # fmt: skip
    assert settings.cors_allow_headers == ("traceparent", "X-Request-Id")
    assert settings.cors_allow_credentials is True
    assert settings.server_shutdown_grace_s == 2.5
    assert Settings.from_env({"JOBQUEUE_CORS_ALLOW_CREDENTIALS": "0"}).cors_allow_credentials is False
    assert Settings.from_env({}).cors_allow_credentials is False
