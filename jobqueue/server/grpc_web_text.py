"""gRPC-Web text mode: `application/grpc-web-text`, base64 on the wire.

It is the default mode of Google's grpc-web JavaScript client; connectrpc speaks
only the binary mode (`application/grpc-web+proto`) and answers text with 415. This
layer translates: a text request reaches connectrpc as binary gRPC-Web, its body
base64-decoded, and the answer goes back base64-encoded, as text.

- The request body is decoded in whole 4-character groups, whatever the chunks it
  arrives in; a client may also pad in mid-body (each flush base64-encoded on its
  own), which the gRPC-Web protocol allows, so each padded group ends a segment.
  Anything not base64 is `invalid_argument`.
- Each chunk of the answer is encoded on its own, with its padding: connectrpc
  writes one message (or the trailers frame) per chunk, so a message reaches the
  client as soon as it is written, which a server stream needs; the protocol tells
  clients to expect padding between chunks.
- A binary request whose Accept asks for text (as the protocol describes) gets text.
- The answer's Content-Type becomes `application/grpc-web-text+proto` (clients pick
  the decoding by it); answers that are not gRPC-Web (404, 415) pass unchanged.
- Binary trailer values stay base64 inside the trailers frame, as connectrpc
  writes them (the protocol would have them raw in text mode; no client we know
  of reads them).

Any other request only costs a look at its Content-Type.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

_TEXT = b"application/grpc-web-text"
_BINARY = b"application/grpc-web"
_WHITESPACE = b" \t\r\n"


class GrpcWebText:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine: it returns the app's, adding no frame to the request's task (see edge.py).
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-type":
                    if value[: len(_BINARY)].lower() == _BINARY:
                        return self._grpc_web(scope, receive, send, value.lower())
                    break
        return self.app(scope, receive, send)  # type: ignore[no-any-return]

    async def _grpc_web(self, scope: Any, receive: Any, send: Any, content_type: bytes) -> None:
        if content_type.startswith(_TEXT):
            scope = {**scope, "headers": _binary_request_headers(scope["headers"], content_type)}
            receive = _decoding(receive)
        elif not any(name == b"accept" and _TEXT in value.lower() for name, value in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _encoding(send))


Headers = list[tuple[bytes, bytes]]


def _binary_request_headers(headers: Headers, content_type: bytes) -> Headers:
    """The headers with the binary Content-Type (`+proto` when none is named) and no
    Content-Length (decoding changes the length)."""
    subtype = content_type[len(_TEXT) :].split(b";", 1)[0].strip()
    if subtype.startswith(b"-base64"):  # the protocol's explicit name of the default encoding
        subtype = subtype[len(b"-base64") :]
    binary = _BINARY + (subtype or b"+proto")
    return [
        (name, binary if name == b"content-type" else value)
        for name, value in headers
        if name != b"content-length"
    ]


def _decoding(receive: Any) -> Any:
    held = b""  # the end of the last chunk that did not make a whole 4-character group

    async def receive_decoded() -> Any:
        nonlocal held
        message = await receive()
        if message["type"] != "http.request":
            return message
        text = held + message.get("body", b"").translate(None, _WHITESPACE)
        more = message.get("more_body", False)
        whole = len(text) - len(text) % 4 if more else len(text)
        held = text[whole:]
        return {**message, "body": decode(text[:whole])}

    return receive_decoded


def decode(text: bytes) -> bytes:
    """Base64 text made of whole groups, padded at the end or between segments."""
    try:
        if b"=" not in text[:-2]:
            return binascii.a2b_base64(text, strict_mode=True)
        segments = []
        start = 0
        while start < len(text):
            pad = text.find(b"=", start)
            end = len(text) if pad < 0 else min(len(text), (pad // 4 + 1) * 4)
            segments.append(binascii.a2b_base64(text[start:end], strict_mode=True))
            start = end
        return b"".join(segments)
    except binascii.Error as exc:
        raise ConnectError(Code.INVALID_ARGUMENT, f"gRPC-Web text body is not base64: {exc}") from None


def _encoding(send: Any) -> Any:
    encode = False  # the answer is gRPC-Web (not a 404 or a 415)

    async def send_encoded(message: Any) -> None:
        nonlocal encode
        if message["type"] == "http.response.start":
            headers = []
            for name, value in message.get("headers", []):
                if name == b"content-type" and value.lower().startswith(_BINARY):
                    encode = True
                    value = _TEXT + value[len(_BINARY) :]  # noqa: PLW2901 - the rewritten header
                elif name == b"content-length":
                    continue
                headers.append((name, value))
            if encode:
                message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and encode and message.get("body"):
            message = {**message, "body": base64.b64encode(message["body"])}
        await send(message)

    return send_encoded
