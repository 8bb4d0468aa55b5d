"""A Connect-JSON request's enum values, checked against the proto's before decoding.

connectrpc's JSON codec ignores unknown fields (a newer client's), and with that
option protobuf-py also drops an enum value it does not know, number or name, to
the field's zero value: `"status": 99` would read as UNSPECIFIED (for ListJobs,
every unfinished job) instead of being refused. Binary protobuf keeps such a
number (proto3 enums are open) and the handlers refuse it (wire.py); this is the
same refusal for JSON. Only requests whose message type has an enum field, at any
depth, are parsed here a second time; a value the enum does not define is
`invalid_argument` naming the field by its proto path (e.g. `filter.status`).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from protobuf import (
    DescEnum,
    DescFieldValueEnum,
    DescFieldValueList,
    DescFieldValueMap,
    DescFieldValueMessage,
    DescMessage,
)


def check_enum_values(data: bytes | bytearray, message_class: type[Any]) -> None:
    """Raises invalid_argument for an enum value of the request JSON `data` that its
    enum does not define; leaves any other fault to the decoder."""
    plan = _plan(message_class.desc())
    if not plan:
        return
    try:
        value = json.loads(data)
    except ValueError:
        return  # the decoder says what is wrong with it
    _check_message(plan, value, "")


# What to look at in a message's JSON: per field that is, or leads to, an enum, its
# JSON and proto names, whether it is one value, a list or a map, and its enum or
# the plan of its message.
_Field = tuple[str, str, str, "DescEnum | _Plan"]
_Plan = tuple[_Field, ...]


@functools.cache
def _plan(desc: DescMessage, _seen: frozenset[str] = frozenset()) -> _Plan:
    """The fields of the message to look at (none: no enum at any depth). Recursive
    types are followed once; well-known types have JSON forms of their own."""
    if desc.type_name in _seen or desc.type_name.startswith("google.protobuf."):
        return ()
    seen = _seen | {desc.type_name}
    fields: list[_Field] = []
    for field in desc.fields:
        kind = field.value
        element: object
        if isinstance(kind, DescFieldValueEnum):
            shape, element = "one", kind.enum
        elif isinstance(kind, DescFieldValueMessage):
            shape, element = "one", kind.message
        elif isinstance(kind, DescFieldValueList):
            shape, element = "list", kind.element
        elif isinstance(kind, DescFieldValueMap):
            shape, element = "map", kind.value
        else:
            continue
        target: DescEnum | _Plan | None = element if isinstance(element, DescEnum) else None
        if isinstance(element, DescMessage):
            target = _plan(element, seen) or None
        if target is not None:
            fields.append((field.json_name, field.name, shape, target))
    return tuple(fields)


def _check_message(plan: _Plan, value: object, path: str) -> None:
    if not isinstance(value, dict):
        return
    for json_name, name, shape, target in plan:
        found = value.get(json_name, value.get(name))
        if found is None:
            continue
        if shape == "one":
            _check_value(target, found, path + name)
        elif shape == "list" and isinstance(found, list):
            for i, item in enumerate(found):
                _check_value(target, item, f"{path}{name}[{i}]")
        elif shape == "map" and isinstance(found, dict):
            for key, item in found.items():
                _check_value(target, item, f"{path}{name}[{key}]")


def _check_value(target: DescEnum | _Plan, value: object, name: str) -> None:
    if isinstance(target, DescEnum):
        _check_enum(target, value, name)
    else:
        _check_message(target, value, name + ".")


def _check_enum(enum: DescEnum, value: object, name: str) -> None:
    numbers, names = _defined(enum)
    if isinstance(value, bool):
        return  # not an enum value at all: the decoder refuses it
    if isinstance(value, int) and value not in numbers:
        raise ConnectError(Code.INVALID_ARGUMENT, f"{name}: {value} is not a {enum.name} value")
    if isinstance(value, str) and value not in names:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"{name}: {shown!r} is not a {enum.name} value (one of {', '.join(sorted(names))})",
        )


@functools.cache
def _defined(enum: DescEnum) -> tuple[frozenset[int], frozenset[str]]:
    """The enum's numbers, and its names as JSON may give them."""
    return frozenset(v.number for v in enum.values), frozenset(v.name for v in enum.values)
