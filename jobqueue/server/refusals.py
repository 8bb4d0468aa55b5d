"""Two of connectrpc's refusals, made to explain themselves on their way out.

- A request whose Content-Type no protocol takes (`curl -d` sends
  application/x-www-form-urlencoded) gets a 415 with an empty body, whose
  Accept-Post header names Connect's two unary types only. The 415 stays; its
  body lists the content types of every protocol the server speaks.
- A request larger than connectrpc's `read_max_bytes` (after inflation) gets
  `message is larger than configured max N`, where N is derived from the payload
  limit (room for a payload as base64 JSON, and for the rest of the request) and
  named by no setting. The message becomes one that names the payload limit in
  bytes and its setting (see `oversized_message`), with the same code, in
  whatever form the protocol carries it: a Connect unary error body;
  `grpc-message` in a gRPC answer's headers (trailers-only) or trailers; or in
  the trailers frame that ends a gRPC-Web body (connectrpc writes it as a chunk
  of its own, gzipped if the client accepts gzip; explained, it goes out
  uncompressed, which the frame's flag says). A Connect stream's end message is left as it is: only health's
  Watch and reflection take a request in one, whose limit is 64 KiB as
  documented (docs/guarantees.md), and their clients send a name or two.

connectrpc's own checks stay the only ones: nothing here decides whether to
refuse, so no limit is checked twice or can disagree with connectrpc's.

Who does it: the edge (edge.py) holds the start of every 415 or 429 until its
body, and has `explained` rewrite them (a look at the status of each answer's
start is all other answers cost); `ExplainedRefusals`, a layer only gRPC and
gRPC-Web requests pass (app.py), rewrites their grpc-message.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote, unquote

from connectrpc.compression.gzip import GzipCompression
from connectrpc.errors import ConnectError

SETTING = "JOBQUEUE_MAX_PAYLOAD_BYTES"
ENQUEUE_JOB = "/mpataki.jobqueue.v1.JobService/EnqueueJob"
ENQUEUE_JOBS = "/mpataki.jobqueue.v1.JobService/EnqueueJobs"

_TOO_LARGE = re.compile(r"message is larger than configured max (\d+)")
_TOO_LARGE_ENCODED = quote("message is larger than configured max ", safe="").encode()
_GRPC_WEB = b"application/grpc-web"
_TRAILERS_FRAME = 0x80  # the gRPC-Web envelope flag of the frame that carries the trailers
_COMPRESSED = 0x01  # the envelope flag of a compressed frame
_MAX_TRAILERS_BYTES = 64 * 1024
_UNSUPPORTED_MEDIA_TYPE = 415
_RESOURCE_EXHAUSTED_HTTP = 429  # the Connect protocol's HTTP status of resource_exhausted

ACCEPTED_CONTENT_TYPES = """\
  Connect:  application/json, application/proto
            (streaming methods: application/connect+json, application/connect+proto;
            GET: ?encoding=json or ?encoding=proto)
  gRPC:     application/grpc, application/grpc+proto, application/grpc+json
  gRPC-Web: application/grpc-web, application/grpc-web+proto, application/grpc-web+json,
            application/grpc-web-text, application/grpc-web-text+proto, application/grpc-web-text+json
"""


def unsupported_media_type_body(content_type: str) -> bytes:
    """The 415's body: what was sent, what is accepted, and the usual cause."""
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    return (
        f"unsupported media type: the request has {sent}; this server accepts\n"
        f"{ACCEPTED_CONTENT_TYPES}"
        "With curl, add -H 'Content-Type: application/json' "
        "(-d alone sends application/x-www-form-urlencoded).\n"
    ).encode()


def oversized_message(path: str, read_max_bytes: int, max_payload_bytes: int) -> str:
    """What a request over `read_max_bytes` is told, by method: EnqueueJob's is over
    for its payload; an EnqueueJobs call's jobs share one request's room."""
    if path == ENQUEUE_JOB:
        return f"payload: over the limit of {max_payload_bytes} bytes ({SETTING})"
    if path == ENQUEUE_JOBS:
        return (
            f"jobs: the request is over the {read_max_bytes} bytes one call may carry, which is "
            f"room for one payload at the limit ({max_payload_bytes} bytes, {SETTING}) as base64 "
            "JSON; send fewer jobs per call"
        )
    return f"request: over the limit of {read_max_bytes} bytes"


# The statuses of the refusals whose start waits for its body, to be explained with it.
EXPLAINED_STATUSES = frozenset({_UNSUPPORTED_MEDIA_TYPE, _RESOURCE_EXHAUSTED_HTTP})


class ExplainedRefusals:
    """The explanations (see the module's docstring); as an ASGI layer, of the
    grpc-message of gRPC and gRPC-Web answers."""

    def __init__(self, app: Any, *, max_payload_bytes: int) -> None:
        self.app = app
        self.max_payload_bytes = max_payload_bytes

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine: it returns the app's, adding no frame to the request's task (see edge.py).
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        grpc_web = False
        gzipped = False

        async def explaining_send(message: Any) -> None:
            nonlocal grpc_web, gzipped
            kind = message["type"]
            if kind == "http.response.start":
                message = self._with_grpc_message(scope, message)
                grpc_web = _content_type(message).startswith(_GRPC_WEB)
                gzipped = grpc_web and (b"grpc-encoding", b"gzip") in message.get("headers", ())
            elif kind == "http.response.trailers":
                message = self._with_grpc_message(scope, message)
            elif (
                kind == "http.response.body" and grpc_web and message.get("body", b"")[:1] in _TRAILERS_FLAGS
            ):
                message = self._with_grpc_web_trailers(scope, message, gzipped)
            await send(message)

        return self.app(scope, receive, explaining_send)  # type: ignore[no-any-return]

    def explained(self, scope: Any, start: Any, body: Any) -> tuple[Any, Any]:
        """The start and whole body of a 415 or 429, explained if they are connectrpc's."""
        headers = list(start.get("headers", ()))
        if start["status"] == _UNSUPPORTED_MEDIA_TYPE:
            if body.get("body"):
                return start, body
            text = unsupported_media_type_body(_content_type(scope).decode("latin-1"))
            headers = [(n, v) for n, v in headers if n.lower() not in (b"content-type", b"content-length")]
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
            return {**start, "headers": headers}, {**body, "body": text}
        try:
            error = json.loads(body.get("body", b""))
            found = _TOO_LARGE.fullmatch(error["message"])
        except (ValueError, TypeError, KeyError):
            return start, body
        if found is None or error.get("code") != "resource_exhausted":
            return start, body
        error["message"] = oversized_message(scope.get("path", ""), int(found[1]), self.max_payload_bytes)
        text = json.dumps(error, separators=(",", ":")).encode()
        headers = [(n, str(len(text)).encode() if n.lower() == b"content-length" else v) for n, v in headers]
        return {**start, "headers": headers}, {**body, "body": text}

    def _grpc_message(self, scope: Any, value: bytes) -> bytes | None:
        """A grpc-message value (percent-encoded) explained; None if it is not
        connectrpc's size refusal."""
        if not value.startswith(_TOO_LARGE_ENCODED):
            return None
        found = _TOO_LARGE.fullmatch(unquote(value.decode("ascii", "replace")))
        if found is None:
            return None
        text = oversized_message(scope.get("path", ""), int(found[1]), self.max_payload_bytes)
        return quote(text, safe="").encode()

    def _with_grpc_message(self, scope: Any, message: Any) -> Any:
        """A gRPC or gRPC-Web start or trailers message, its grpc-message explained."""
        headers = message.get("headers", ())
        for index, (name, value) in enumerate(headers):
            if name.lower() == b"grpc-message":
                explained = self._grpc_message(scope, bytes(value))
                if explained is None:
                    return message
                headers = list(headers)
                headers[index] = (name, explained)
                return {**message, "headers": headers}
        return message

    def _with_grpc_web_trailers(self, scope: Any, message: Any, gzipped: bool) -> Any:
        """A gRPC-Web body chunk that is one trailers frame, its grpc-message explained."""
        body = bytes(message["body"])
        if len(body) < 5 or struct.unpack(">I", body[1:5])[0] != len(body) - 5:
            return message
        trailers = body[5:]
        if body[0] & _COMPRESSED:
            if not gzipped:
                return message
            try:
                trailers = _GZIP.decompress(trailers, _MAX_TRAILERS_BYTES)
            except ConnectError:  # not trailers connectrpc wrote: left as they are
                return message
        lines = trailers.split(b"\r\n")
        for index, line in enumerate(lines):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"grpc-message":
                explained = self._grpc_message(scope, value.strip())
                if explained is None:
                    return message
                lines[index] = b"grpc-message: " + explained
                trailers = b"\r\n".join(lines)
                frame = bytes([_TRAILERS_FRAME]) + struct.pack(">I", len(trailers)) + trailers
                return {**message, "body": frame}
        return message


_TRAILERS_FLAGS = (bytes([_TRAILERS_FRAME]), bytes([_TRAILERS_FRAME | _COMPRESSED]))
_GZIP = GzipCompression()


def _content_type(message_or_scope: Any) -> bytes:
    """The Content-Type of a request's scope or an answer's start."""
    for name, value in message_or_scope.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value)
    return b""
