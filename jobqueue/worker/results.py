"""A handler's return value as the bytes stored with its job (`result`): one function,
with the worker's codec (the one its payloads decode with)."""

from __future__ import annotations

from ..codecs import Codec
from .errors import PermanentError

SETTING = "max_result_bytes, JOBQUEUE_MAX_RESULT_BYTES"


class ResultTooLarge(PermanentError):
    """The handler's result is over the limit: its run fails for good (a retry would
    return the same)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"result of {size} bytes is over the limit of {limit} bytes ({SETTING})")


class UnsupportedResult(PermanentError):
    """The handler returned a value its worker's codec cannot encode."""

    def __init__(self, value: object, codec: Codec, why: TypeError) -> None:
        super().__init__(
            f"the handler returned {type(value).__name__}, which codec {codec.name!r} cannot encode "
            f"as its result ({why})"
        )


def result_bytes(value: object, limit: int, codec: Codec) -> bytes:
    """The bytes stored as a run's result: b"" for None (nothing stored), bytes as they
    are, anything else as `codec` encodes it (the bytes codec: str as UTF-8). Raises
    UnsupportedResult for a value the codec cannot encode, and ResultTooLarge above
    `limit` bytes."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        result = value
    elif isinstance(value, bytearray | memoryview):
        result = bytes(value)
    else:
        try:
            result = codec.encode(value)
        except TypeError as exc:
            raise UnsupportedResult(value, codec, exc) from None
    if len(result) > limit:
        raise ResultTooLarge(len(result), limit)
    return result
