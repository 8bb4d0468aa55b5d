"""CORS for browser Connect and gRPC-Web clients (connectrpc has none built in).

The header lists follow connectrpc.com/cors. Origins are an explicit allow-list;
"*" allows any origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ALLOW_METHODS = b"GET, POST"
ALLOW_HEADERS = (
    b"Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Accept-Encoding, "
    b"Connect-Content-Encoding, Grpc-Timeout, X-Grpc-Web, X-User-Agent, Authorization"
)
EXPOSE_HEADERS = b"Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin"
MAX_AGE = b"7200"


class CORSMiddleware:
    def __init__(self, app: Any, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(allowed_origins)
        self.any_origin = "*" in self.origins

    def _allowed(self, origin: bytes | None) -> bool:
        return origin is not None and (self.any_origin or origin.decode("latin-1") in self.origins)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if not self._allowed(origin):
            # Answers differ by Origin, so caches must key on it even when refusing.
            await self.app(scope, receive, _with_headers(send, [(b"vary", b"Origin")]))
            return
        assert origin is not None
        vary = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await send({
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    *vary,
                    (b"access-control-allow-methods", ALLOW_METHODS),
                    (b"access-control-allow-headers", ALLOW_HEADERS),
                    (b"access-control-max-age", MAX_AGE),
                ],
            })  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return

        expose = (b"access-control-expose-headers", EXPOSE_HEADERS)
        await self.app(scope, receive, _with_headers(send, [*vary, expose]))


def _with_headers(send: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    """`send`, adding `extra` to the response's headers."""

    async def send_with_headers(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_headers
