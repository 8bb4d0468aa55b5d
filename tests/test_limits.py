"""The decoding bounds of server/limits.py, without a server: the JSON depth scan
agrees with a real parser on where strings are, refuses before protobuf-py's
decoder recurses, and decoder errors reach clients without Python internals.
Their effect through the HTTP servers is in test_edge.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from hypothesis import given, settings
from hypothesis import strategies as st

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.server.limits import (
    MAX_ERROR_CHARS,
    MAX_JSON_DEPTH,
    BoundedJSONCodec,
    CleanBinaryCodec,
    client_message,
    json_depth_exceeds,
)

from .test_api import assert_clean


def nested(depth: int, field: str = "type") -> bytes:
    """A message whose `field` holds arrays nested so that the whole body is `depth` deep."""
    inner = depth - 1
    return b'{"' + field.encode() + b'": ' + b"[" * inner + b"]" * inner + b"}"


def true_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(true_depth, value.values()), default=0)
    return 0


@pytest.mark.parametrize("depth", [1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_depth_within_the_limit_passes(depth: int) -> None:
    assert not json_depth_exceeds(nested(depth))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 14_000, 1_000_000])
def test_depth_past_the_limit_is_refused(depth: int) -> None:
    assert json_depth_exceeds(nested(depth))
    with pytest.raises(ConnectError) as caught:
        BoundedJSONCodec().decode(nested(depth), pb.EnqueueJobRequest)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == (
        f"JSON nesting: arrays and objects nested deeper than {MAX_JSON_DEPTH} levels"
    )


def test_protobuf_py_itself_crashes_on_deep_nesting() -> None:
    """Why the check exists: the decoder alone kills the process (SIGSEGV). If a
    protobuf-py release bounds it, this fails, and the check may be reconsidered."""
    code = (
        "from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb\n"
        "n = 200_000\n"
        "try:\n"
        "    pb.EnqueueJobRequest.from_json(b'{\"type\": ' + b'[' * n + b']' * n + b'}')\n"
        "except Exception:\n"
        "    pass\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    assert ran.returncode < 0, ran


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b'{"type": "' + b"[" * 100 + b'"}', False),  # brackets inside a string
        (b'{"type": "\\"' + b"[" * 100 + b'"}', False),  # after an escaped quote, still inside
        (b'{"type": "\\\\"' + b"[" * 100 + b"}", True),  # an escaped backslash ends the string
        (b'{"type": "\\\\\\"' + b"[" * 100 + b'"}', False),
        (b'"' + b"[" * 100, False),  # an unclosed string runs to the end
        (b"[" * 100 + b'"', True),
        (b'{"a": "\\u005b' + b"[" * 100 + b'"}', False),
    ],
)
def test_strings_and_escapes(body: bytes, deep: bool) -> None:
    assert json_depth_exceeds(body) is deep


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('[]{}"\\ab\n\u00e9')),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet=st.sampled_from('[]{}"\\k'), max_size=3), children, max_size=3)
    ),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(min_value=0, max_value=12), spaces=st.booleans())
def test_depth_matches_a_real_parser(value: object, limit: int, spaces: bool) -> None:
    """On valid JSON the scan finds the parser's depth exactly, strings and escapes included."""
    text = json.dumps(value, indent=1 if spaces else None, ensure_ascii=False).encode()
    assert json_depth_exceeds(text, limit) is (true_depth(value) > limit)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), limit=st.integers(min_value=0, max_value=8))
def test_depth_on_any_bytes(data: bytes, limit: int) -> None:
    """Any bytes are scanned without error, and where a parser accepts them, they agree."""
    deep = json_depth_exceeds(data, limit)
    try:
        value = json.loads(data.decode())  # UTF-8 only, as protobuf-py reads it
    except ValueError:
        return
    assert deep is (true_depth(value) > limit)


def test_decode_errors_are_clean() -> None:
    codec = BoundedJSONCodec()
    cases = {
        b'{"type": [1]}': "unmarshal message: expected string got: array for field "
        "mpataki.jobqueue.v1.EnqueueJobRequest.type",
        b'{"type": {"a": 1}}': "unmarshal message: expected string got: object for field "
        "mpataki.jobqueue.v1.EnqueueJobRequest.type",
    }
    for body, expected in cases.items():
        with pytest.raises(ConnectError) as caught:
            codec.decode(body, pb.EnqueueJobRequest)
        assert (caught.value.code, caught.value.message) == (Code.INVALID_ARGUMENT, expected)
    with pytest.raises(ConnectError) as caught:
        codec.decode(b'{"backoff": "' + b"x" * 100_000 + b'"}', pb.EnqueueJobRequest)
    assert len(caught.value.message) <= len("unmarshal message: ") + MAX_ERROR_CHARS
    assert_clean(caught.value.message)


def test_binary_depth_is_bounded_by_protobuf_py() -> None:
    """Deeply nested unknown groups: the binary decoder stops at its own depth limit."""
    start, end = bytes([0xC3, 0x3E]), bytes([0xC4, 0x3E])  # field 1000, start/end group
    with pytest.raises(ConnectError) as caught:
        CleanBinaryCodec().decode(start * 100_000 + end * 100_000, pb.EnqueueJobRequest)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "recursion depth" in caught.value.message


def test_client_message() -> None:
    assert client_message("got: <class 'NoneType'> and <class 'Weird'>") == "got: null and value"
    assert len(client_message("x" * 10_000)) == MAX_ERROR_CHARS
