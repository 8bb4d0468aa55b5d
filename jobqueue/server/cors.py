"""CORS for browser Connect and gRPC-Web clients (connectrpc has none built in).

Origins are an explicit allow-list; "*" allows any (each answer names the
caller's origin). The header lists are those connect-es (`cors` of
@connectrpc/connect) and connectrpc.com/cors recommend, merged: the allowed
request headers of every protocol, compression ones included, plus
Authorization; the exposed response headers gRPC-Web needs to read a status, and
the compression ones. A deployment adds its own request headers with
`extra_headers` (JOBQUEUE_CORS_ALLOW_HEADERS, e.g. `traceparent` from
OpenTelemetry's fetch instrumentation, `X-Request-Id`).

Credentials (cookies, HTTP authentication, client certificates) are off unless
asked for, and then only with an explicit list of origins: with "*", any site a
user visits could call the API as that user. `CORSMiddleware` refuses that
combination.

Preflights are cached by browsers for MAX_AGE_S: 2 hours, Chromium's upper bound
(Firefox allows 24 h); an allow-list that changes reaches browsers within that time.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable
from typing import Any

ALLOW_METHODS = b"GET, POST"
ALLOW_HEADERS = (
    "Content-Type",
    "Connect-Protocol-Version",
    "Connect-Timeout-Ms",
    "Connect-Content-Encoding",
    "Connect-Accept-Encoding",
    "Content-Encoding",
    "Accept-Encoding",
    "Grpc-Timeout",
    "Grpc-Message-Type",
    "X-Grpc-Web",
    "X-User-Agent",
    "Authorization",
)
EXPOSE_HEADERS = (
    "Grpc-Status",
    "Grpc-Message",
    "Grpc-Status-Details-Bin",
    "Content-Encoding",
    "Connect-Content-Encoding",
)
MAX_AGE_S = 7200
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110)


def check_cors(origins: Iterable[str], extra_headers: Iterable[str], allow_credentials: bool) -> None:
    """Refuses a CORS configuration that is unsafe or malformed, with the reason
    (at startup, before the server listens)."""
    if allow_credentials and "*" in origins:
        raise ValueError(
            "CORS credentials cannot be allowed for any origin ('*'): any site a user visits "
            "could then call the API as that user; list the allowed origins instead"
        )
    for header in extra_headers:
        if not _TOKEN.fullmatch(header):
            raise ValueError(f"CORS allowed header {header!r} is not a header name")


class CORSMiddleware:
    def __init__(
        self,
        app: Any,
        allowed_origins: Iterable[str],
        *,
        extra_headers: Iterable[str] = (),
        allow_credentials: bool = False,
    ) -> None:
        self.app = app
        self.origins = frozenset(allowed_origins)
        self.any_origin = "*" in self.origins
        extra_headers = tuple(extra_headers)
        check_cors(self.origins, extra_headers, allow_credentials)
        allowed = list(ALLOW_HEADERS)
        known = {h.lower() for h in allowed}
        for header in extra_headers:
            if header.lower() not in known:
                allowed.append(header)
                known.add(header.lower())
        credentials = [(b"access-control-allow-credentials", b"true")] if allow_credentials else []
        self.preflight_headers = [
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ", ".join(allowed).encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
            *credentials,
        ]
        self.response_headers = [
            (b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode()),
            *credentials,
        ]

    def _allowed(self, origin: bytes | None) -> bool:
        return origin is not None and (self.any_origin or origin.decode("latin-1") in self.origins)

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine: it returns the app's, adding no frame to the request's task (see edge.py).
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if not self._allowed(origin):
            # Answers differ by Origin, so caches must key on it even when refusing.
            return self.app(scope, receive, _with_headers(send, [(b"vary", b"Origin")]))  # type: ignore[no-any-return]
        assert origin is not None
        vary = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            return _preflight(send, [*vary, *self.preflight_headers])
        return self.app(scope, receive, _with_headers(send, [*vary, *self.response_headers]))  # type: ignore[no-any-return]


async def _preflight(send: Any, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_headers(send: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    """`send`, adding `extra` to the response's headers."""

    async def send_with_headers(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_headers
