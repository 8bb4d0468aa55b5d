"""gRPC requests whose answer could not carry its status: a precise refusal.

gRPC sends its status in HTTP trailers, and the HTTP servers send trailers only
when they can and were asked to:
- Hypercorn has ASGI's trailers extension over HTTP/2 only. For gRPC over
  HTTP/1.1, connectrpc raises a RuntimeError and the client gets `unknown`
  with a message about ASGI.
- Both servers send trailers only to a request that says `te: trailers` (as
  gRPC clients must). Without it Hypercorn drops the status, so the client sees
  a call that never ends properly; h2corn refuses the answer with a 500 and an
  error in its log.
Here such requests get a trailers-only answer (the status in the headers, which
always arrive): `unimplemented` for gRPC over HTTP/1.1 without trailers,
`invalid_argument` for a missing `te: trailers`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

NO_TRAILERS = "gRPC needs HTTP/2 here (this server has no HTTP/1.1 trailers)"
NO_TE = "gRPC requests need the header te: trailers"
_UNIMPLEMENTED, _INVALID_ARGUMENT = b"12", b"3"


class GrpcNeedsTrailers:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine: it returns the app's, adding no frame to the request's task (see edge.py).
        if scope["type"] == "http":
            content_type, te = _headers(scope)
            # As connectrpc tells gRPC (not gRPC-Web) from the other protocols.
            if content_type == b"application/grpc" or content_type.startswith(b"application/grpc+"):
                if "http.response.trailers" not in scope.get("extensions", {}):
                    return _refuse(send, content_type, _UNIMPLEMENTED, NO_TRAILERS)
                if b"trailers" not in te:
                    return _refuse(send, content_type, _INVALID_ARGUMENT, NO_TE)
        return self.app(scope, receive, send)  # type: ignore[no-any-return]


def _headers(scope: Any) -> tuple[bytes, bytes]:
    content_type = te = b""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = bytes(value)
        elif name == b"te":
            te = bytes(value).lower()
    return content_type, te


async def _refuse(send: Any, content_type: bytes, status: bytes, message: str) -> None:
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", content_type),
            (b"grpc-status", status),
            (b"grpc-message", quote(message).encode()),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": b""})
