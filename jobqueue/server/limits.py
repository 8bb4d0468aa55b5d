"""Bounds on what a request may make the decoders do, checked before they run.

protobuf-py's native JSON decoder recurses once per level of nesting with no
limit of its own: a small body like `{"type": [[[[...]]]]}`, deep enough,
overflows the C stack and kills the process (the binary decoder is depth-limited
and answers invalid_argument). So every JSON message, on every route and
protocol (Connect unary POST and GET, Connect streaming, gRPC and gRPC-Web with
`+json`), passes through `BoundedJSONCodec`, which counts bracket depth outside
strings before the decoder sees a byte, and refuses anything nested deeper than
MAX_JSON_DEPTH. The check runs after decompression and unframing, on exactly
the bytes the decoder would get.

Also here: the decoders' error messages made fit for a client (no Python type
reprs, no echo of a megabyte of input), and a cap on the messages of one
client or bidi stream.

Bounds that hold elsewhere: the size of a message, compressed or not, is
connectrpc's `read_max_bytes` (gzip is inflated at most that far, then
resource_exhausted); a unary or server-streaming call takes one message (a
second one is unimplemented); header sizes, HTTP/2 streams per connection and
idle connections are the HTTP servers' (see main.py); slow clients are bounded
by slow.py; rapid HTTP/2 stream resets by hypercorn_guard.py under Hypercorn (h2corn
has its own guard).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import accumulate
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.codec import Codec, proto_binary_codec, proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from .json_enums import check_enum_values

# Deep enough for any message of our APIs (EnqueueJobs is 4 levels at most,
# reflection 3), shallow enough that no decoder comes near its stack's end.
MAX_JSON_DEPTH = 64
# A client or bidi stream (only reflection has one) answers each message; a
# client sending more than this in one stream is not a reflection client.
MAX_STREAM_MESSAGES = 1000
# Decoder messages may quote the input; a client needs the start of it only.
MAX_ERROR_CHARS = 300

REQ = TypeVar("REQ")
RES = TypeVar("RES")

# A backslash and the byte it escapes: inside a string they can hide a quote;
# outside one they are invalid JSON, which the decoder refuses.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_SMALL = 16 * 1024
# Openers to +1, closers to -1 (as signed bytes), for a running sum.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_depth_exceeds(data: bytes | bytearray, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in `data` nest deeper than `limit`, counting
    brackets outside strings. Never less than the depth a JSON decoder reaches:
    a closer the decoder would refuse can only make the count lower after the
    decoder has already stopped."""
    # Fewer brackets than the limit cannot nest past it: most bodies stop here.
    # count() is quickest on a small body; on a large one, find() (memchr,
    # stopping at the limit) is many times quicker than count().
    if len(data) <= limit:
        return False
    if len(data) < _SMALL:
        if data.count(b"[") + data.count(b"{") <= limit:
            return False
    elif _at_most(data, limit, b"[", b"{"):
        return False
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    # With escapes gone, quotes alternate: text between an odd quote and the
    # next is inside a string (an unclosed string runs to the end of the body).
    brackets = b"".join(bytes(data).translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    if len(brackets) <= limit:
        return False
    return max(accumulate(array("b", brackets.translate(_STEPS)))) > limit


def _at_most(data: bytes | bytearray, limit: int, *needles: bytes) -> bool:
    """Whether `data` holds at most `limit` of the `needles` in all."""
    found = 0
    for needle in needles:
        at = data.find(needle)
        while at >= 0:
            found += 1
            if found > limit:
                return False
            at = data.find(needle, at + 1)
    return True


_PY_TYPE = re.compile(r"<class '(\w+)'>")
_JSON_KIND = {
    "list": "array",
    "dict": "object",
    "str": "string",
    "int": "number",
    "float": "number",
    "bool": "boolean",
    "NoneType": "null",
}


def client_message(text: str) -> str:
    """A decoder's error text as a client may see it: JSON kinds instead of Python
    type reprs, and at most MAX_ERROR_CHARS characters."""
    text = _PY_TYPE.sub(lambda m: _JSON_KIND.get(m[1], "value"), text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


def _unmarshal_error(exc: Exception) -> ConnectError:
    # The prefix connectrpc itself gives a message that does not decode.
    return ConnectError(Code.INVALID_ARGUMENT, "unmarshal message: " + client_message(str(exc)))


class BoundedJSONCodec:
    """connectrpc's JSON codec, refusing nesting deeper than `max_depth` first."""

    def __init__(self, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.max_depth = max_depth
        self._inner: Codec = proto_json_codec()
        # The inner codec's own methods, not a Python call around each (every answer is encoded).
        self.name: Callable[[], str] = self._inner.name
        self.encode: Callable[[Any], bytes] = self._inner.encode

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        # The scan's first test, here: most bodies are too short to nest past the limit.
        if len(data) > self.max_depth and json_depth_exceeds(data, self.max_depth):
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"JSON nesting: arrays and objects nested deeper than {self.max_depth} levels",
            )
        check_enum_values(data, message_class)
        try:
            return self._inner.decode(data, message_class)
        except Exception as exc:  # any decode failure is the input's fault
            raise _unmarshal_error(exc) from exc


class CleanBinaryCodec:
    """connectrpc's binary codec, with error messages fit for a client."""

    def __init__(self) -> None:
        self._inner: Codec = proto_binary_codec()
        self.name: Callable[[], str] = self._inner.name
        self.encode: Callable[[Any], bytes] = self._inner.encode

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        try:
            return self._inner.decode(data, message_class)
        except Exception as exc:  # any decode failure is the input's fault
            raise _unmarshal_error(exc) from exc


def codecs() -> list[Codec]:
    """The codecs of every service the server mounts."""
    return [CleanBinaryCodec(), BoundedJSONCodec()]


class StreamMessageLimit:
    """Refuses (resource_exhausted) a client or bidi stream past `max_messages`."""

    def __init__(self, max_messages: int = MAX_STREAM_MESSAGES) -> None:
        self.max_messages = max_messages

    async def _counted(self, messages: AsyncIterator[REQ]) -> AsyncIterator[REQ]:
        count = 0
        async for message in messages:
            count += 1
            if count > self.max_messages:
                raise ConnectError(
                    Code.RESOURCE_EXHAUSTED, f"more than {self.max_messages} messages in one stream"
                )
            yield message

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[REQ], RequestContext[Any, Any]], Awaitable[RES]],
        request: AsyncIterator[REQ],
        ctx: RequestContext[Any, Any],
    ) -> RES:
        return await call_next(self._counted(request), ctx)

    def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[REQ], RequestContext[Any, Any]], AsyncIterator[RES]],
        request: AsyncIterator[REQ],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[RES]:
        return call_next(self._counted(request), ctx)
