"""A handler's return value as the bytes stored with its job (`result`).

One function turns a return value into bytes, so that a codec (typed payloads)
can later encode other objects in one place.
"""

from __future__ import annotations

from .errors import PermanentError

SETTING = "max_result_bytes, JOBQUEUE_MAX_RESULT_BYTES"


class ResultTooLarge(PermanentError):
    """The handler's result is over the limit: its run fails for good (a retry would
    return the same)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"result of {size} bytes is over the limit of {limit} bytes ({SETTING})")


class UnsupportedResult(PermanentError):
    """The handler returned a value that is not bytes, str or None."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"the handler returned {type(value).__name__}; a result is bytes, str (stored as UTF-8) or None"
        )


def result_bytes(value: object, limit: int) -> bytes:
    """The bytes stored as a run's result: b"" for None (nothing stored), bytes as
    they are, str as UTF-8. Raises UnsupportedResult for another type, and
    ResultTooLarge above `limit` bytes."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        result = value
    elif isinstance(value, str):
        result = value.encode()
    elif isinstance(value, bytearray | memoryview):
        result = bytes(value)
    else:
        raise UnsupportedResult(value)
    if len(result) > limit:
        raise ResultTooLarge(len(result), limit)
    return result
