"""Codecs: how a typed payload becomes a job's bytes and back (docs/payloads.md).

A job's payload is bytes on the wire and in Redis. A codec turns an object into
those bytes (`encode`, on the enqueue side) and bytes into an object
(`decode`, in the worker), optionally shaped `into` a type:

    json     JSON text (UTF-8); the default for typed handlers
    msgpack  MessagePack; needs the `msgpack` extra (pip install 'jobqueue[msgpack]')
    bytes    the payload as it is (the default everywhere else: no encoding at all)

Objects encode as JSON/MessagePack data: dicts, lists, str, numbers, bools,
None, and dataclass instances and pydantic models (at any depth). A decoded
payload is shaped into a dataclass, a TypedDict, a pydantic model, a dict or a
list (see `decode`). Names are what workers, clients and the docs call them;
a codec of one's own subclasses `Codec` and is passed as an instance.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .model import EnqueueRequest, payload_bytes

# What `decode` shapes a payload into.
PAYLOAD_TYPES = "a dataclass, TypedDict, pydantic model, dict or list"
MSGPACK_EXTRA = "pip install 'jobqueue[msgpack]'"


class DecodeError(ValueError):
    """A payload that the codec cannot read, or that does not fit the type asked for."""


class Codec:
    """Encodes objects into payload bytes and decodes them back.

    Subclasses set `name` and implement `encode` and `load` (bytes to plain
    data); `decode` shapes the plain data into the type asked for.
    """

    name: ClassVar[str]

    def encode(self, obj: object) -> bytes:
        """The payload of `obj`; a TypeError names what cannot be encoded."""
        raise NotImplementedError

    def decode(self, data: bytes, into: Any = None) -> Any:
        """`data` as an object of type `into` (None: the plain data); DecodeError if it is not one."""
        if into is not None and _is_pydantic_model(into):
            return self._validate_model(data, into)
        return shape(self.load(data), into)

    def load(self, data: bytes) -> Any:
        """`data` as plain data (dicts, lists, str, numbers...); DecodeError if it is not in this format."""
        raise NotImplementedError

    def _validate_model(self, data: bytes, model: Any) -> Any:
        try:
            return model.model_validate(self.load(data))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise DecodeError(str(exc)) from None

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


class BytesCodec(Codec):
    """The payload as it is: bytes, or str sent as UTF-8. Today's behaviour."""

    name = "bytes"

    def encode(self, obj: object) -> bytes:
        return payload_bytes(obj)  # type: ignore[arg-type]  # its TypeError names the type

    def decode(self, data: bytes, into: Any = None) -> Any:
        if into not in (None, bytes):
            raise TypeError(f"codec 'bytes' decodes into bytes, not {type_name(into)}")
        return data


class JsonCodec(Codec):
    """JSON text in UTF-8, compact (no spaces), non-ASCII characters as they are."""

    name = "json"

    def encode(self, obj: object) -> bytes:
        if _is_pydantic_model(type(obj)):
            text: str = obj.model_dump_json()  # type: ignore[attr-defined]
            return text.encode()
        try:
            dumped = json.dumps(
                obj, default=_plain, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
        except ValueError as exc:  # NaN or infinity, or a circular reference
            raise TypeError(f"payload cannot be encoded as json: {exc}") from None
        return dumped.encode()

    def load(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            raise DecodeError(f"not JSON: {exc}") from None

    def _validate_model(self, data: bytes, model: Any) -> Any:
        try:
            return model.model_validate_json(data)  # parses and validates in one pass
        except ValueError as exc:
            raise DecodeError(str(exc)) from None


class MsgpackCodec(Codec):
    """MessagePack (the `msgpack` package: the `msgpack` extra)."""

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack  # noqa: PLC0415 - an optional extra
        except ImportError:
            raise ModuleNotFoundError(
                f"codec 'msgpack' needs the msgpack package: {MSGPACK_EXTRA}", name="msgpack"
            ) from None
        self._msgpack = msgpack

    def encode(self, obj: object) -> bytes:
        try:
            packed: bytes = self._msgpack.packb(obj, default=_plain)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"payload cannot be encoded as msgpack: {exc}") from None
        return packed

    def load(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (ValueError, TypeError, self._msgpack.UnpackException) as exc:
            raise DecodeError(f"not MessagePack: {exc}") from None


CODECS: dict[str, type[Codec]] = {codec.name: codec for codec in (BytesCodec, JsonCodec, MsgpackCodec)}


def get_codec(codec: Codec | str) -> Codec:
    """The codec named `codec` ('bytes', 'json', 'msgpack'), or `codec` itself."""
    if isinstance(codec, Codec):
        return codec
    if not isinstance(codec, str):
        raise TypeError(f"codec must be a Codec or a name, not {type(codec).__name__}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODECS)}; or pass a Codec)")
    return CODECS[codec]()


def encode_payload(payload: object, codec: Codec | str | None) -> bytes:
    """What the clients and the producer send: `payload` through `codec`; None: bytes,
    or str as UTF-8, as ever (anything else is a TypeError)."""
    return get_codec(codec or "bytes").encode(payload)


def encode_requests(
    requests: Sequence[EnqueueRequest], codec: Codec | str | None
) -> Sequence[EnqueueRequest]:
    """enqueue_many's requests with their payloads through `codec`; None: as they are
    (bytes or str, checked where they are sent). A payload the codec cannot encode
    is a TypeError naming it (`requests[i].payload`), before any call."""
    if codec is None:
        return requests
    encoder = get_codec(codec)
    encoded = []
    for i, request in enumerate(requests):
        try:
            payload = encoder.encode(request.payload)
        except TypeError as exc:
            raise TypeError(f"requests[{i}].payload: {exc}") from None
        encoded.append(dataclasses.replace(request, payload=payload))
    return encoded


# -- shapes ---------------------------------------------------------------------


def is_payload_type(into: Any) -> bool:
    """Whether `decode` can shape a payload into `into`."""
    origin = typing.get_origin(into) or into
    return (
        origin in (dict, list)
        or typing.is_typeddict(into)
        or (isinstance(into, type) and dataclasses.is_dataclass(into))
        or _is_pydantic_model(into)
    )


def shape(plain: Any, into: Any) -> Any:
    """Plain decoded data as an `into`: a dataclass is made from an object's fields
    (its nested values stay plain: a pydantic model validates in depth), a
    TypedDict is an object with its required keys, dict and list (generics too)
    are checked at the top only."""
    return plain if into is None else _shaper(into)(plain)


@functools.lru_cache(maxsize=256)
def _shaper(into: Any) -> Callable[[Any], Any]:
    """How to shape plain data into `into`: worked out once per type, not per job."""
    origin = typing.get_origin(into) or into
    if origin is dict or typing.is_typeddict(into):
        required = frozenset(getattr(into, "__required_keys__", ()))
        return functools.partial(_object, required=required)
    if origin is list:
        return _array
    if isinstance(into, type) and dataclasses.is_dataclass(into):
        return functools.partial(_fields, into)
    raise TypeError(f"cannot decode into {type_name(into)} ({PAYLOAD_TYPES})")


def _object(plain: Any, required: frozenset[str]) -> Any:
    if not isinstance(plain, dict):
        raise DecodeError(f"expected an object, got {_kind(plain)}")
    if required and not required <= plain.keys():
        raise DecodeError(f"missing keys: {', '.join(sorted(required - plain.keys()))}")
    return plain


def _array(plain: Any) -> Any:
    if not isinstance(plain, list):
        raise DecodeError(f"expected an array, got {_kind(plain)}")
    return plain


def _fields(into: Callable[..., Any], plain: Any) -> Any:
    if not isinstance(plain, dict):
        raise DecodeError(f"expected an object, got {_kind(plain)}")
    try:
        return into(**plain)
    except TypeError as exc:  # a missing or unexpected field
        raise DecodeError(str(exc)) from None


def type_name(into: Any) -> str:
    return getattr(into, "__qualname__", None) or repr(into)


def _is_pydantic_model(into: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # not imported: nothing can be a model
    return pydantic is not None and isinstance(into, type) and issubclass(into, pydantic.BaseModel)


def _plain(obj: Any) -> Any:
    """json's and msgpack's `default`: a dataclass instance or a pydantic model as plain data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # One level: the encoder calls this again for the dataclasses inside
        # (dataclasses.asdict would deep-copy every value first).
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    if _is_pydantic_model(type(obj)):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not encodable (a dict, list, str, number, dataclass or model)")


# Made once: json.dumps with arguments makes an encoder per call.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)


def _kind(plain: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(plain), type(plain).__name__
    )
