"""Typed handlers: the payload decoded into the type the handler's first parameter names.

    async def send_email(job: Job) -> None: ...                 # the job; payload bytes (as ever)
    async def send_email(payload: bytes, job: Job) -> None: ... # the payload bytes, then the job
    async def send_email(email: Email) -> None: ...             # Email decoded from JSON
    async def send_email(email: Email, job: Job) -> None: ...   # ... and the job (id, attempt...)

`adapt` reads the annotation once, when the worker is made, and gives the
worker a handler of a Job as before: a plain handler unchanged (no cost per
job), a typed one wrapped in a decode step. A payload that does not decode
fails its job at once (PayloadDecodeError, no retry: it would not decode the
next time either).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..codecs import PAYLOAD_TYPES, Codec, DecodeError, get_codec, is_payload_type, type_name
from ..model import Job
from .errors import PayloadDecodeError

# What a handler returns is the job's result (worker/results.py).
Handler = Callable[[Job], Awaitable[object]]
# A plain Handler, or a typed one: (payload) or (payload, job).
AnyHandler = Callable[..., Awaitable[object]]
# How a handler is called: with the job, then its arguments (the job, or the payload
# and maybe the job): sync_handlers.SyncRuns, which calls a plain function in a pool.
Invoke = Callable[..., Awaitable[object]]

_SUPPORTED = f"Job, bytes, or {PAYLOAD_TYPES}"


def adapt(
    handler: Callable[..., object], codec: Codec | str | None, invoke: Invoke | None = None
) -> tuple[Handler, Codec]:
    """The handler the worker calls with each Job, and the codec of the type's payloads.

    The codec is `codec` when given, else inferred: bytes for a handler of a Job
    or of bytes, json for one of a type. A TypeError or ValueError names the
    handler and what does not fit. With `invoke`, the handler (a plain function)
    is called through it: `invoke(job, *arguments)`.
    """
    chosen = get_codec(codec) if codec is not None else None
    name = getattr(handler, "__qualname__", None) or repr(handler)
    parameters = _positional_parameters(handler, name)
    first = parameters[0].annotation if parameters else inspect.Parameter.empty
    if first is inspect.Parameter.empty or first is Job:
        if chosen is not None and chosen.name != "bytes":
            raise ValueError(
                f"handler {name}: its first parameter takes the Job (payload bytes); annotate it with the "
                f"payload's type ({_SUPPORTED}) to decode payloads with codec {chosen.name!r}"
            )
        return cast(Handler, invoke or handler), chosen or get_codec("bytes")
    if first is bytes:
        if chosen is not None and chosen.name != "bytes":
            raise ValueError(
                f"handler {name}: its payload parameter is bytes; codec {chosen.name!r} decodes objects"
            )
        return _decoding(handler, parameters, get_codec("bytes"), bytes, name, invoke=invoke), get_codec(
            "bytes"
        )
    if not is_payload_type(first):
        raise TypeError(
            f"handler {name}: its first parameter {parameters[0].name!r} is annotated {type_name(first)}; "
            f"annotate it with {_SUPPORTED}"
        )
    if chosen is not None and chosen.name == "bytes":
        raise ValueError(
            f"handler {name}: codec 'bytes' cannot decode into {type_name(first)}; use json or msgpack"
        )
    chosen = chosen or get_codec("json")
    return _decoding(handler, parameters, chosen, first, name, invoke=invoke), chosen


def _decoding(
    handler: Callable[..., object],
    parameters: list[inspect.Parameter],
    codec: Codec,
    into: Any,
    name: str,
    *,
    invoke: Invoke | None,
) -> Handler:
    if len(parameters) > 2:
        raise TypeError(
            f"handler {name}: a typed handler takes (payload) or (payload, job), not {len(parameters)}"
        )
    if len(parameters) == 2 and parameters[1].annotation not in (inspect.Parameter.empty, Job):
        raise TypeError(f"handler {name}: its second parameter {parameters[1].name!r} receives the Job")
    passes_job = len(parameters) == 2
    decode, into_name = codec.decode, type_name(into)

    async def decoding(job: Job) -> object:
        try:
            payload = decode(job.payload, into)
        except DecodeError as exc:
            raise PayloadDecodeError(
                f"payload does not decode with codec {codec.name!r} into {into_name}: {exc}"
            ) from None
        arguments = (payload, job) if passes_job else (payload,)
        if invoke is not None:
            return await invoke(job, *arguments)
        return await cast(AnyHandler, handler)(*arguments)

    decoding.__qualname__ = f"decoding({name})"
    return decoding


def _positional_parameters(handler: Callable[..., object], name: str) -> list[inspect.Parameter]:
    """The parameters a worker may pass positionally, their annotations resolved."""
    try:
        signature = inspect.signature(handler, eval_str=True)
    except (ValueError, TypeError):  # no signature (some builtins): a plain handler of a Job
        return []
    except Exception:  # noqa: BLE001 - an annotation string that does not evaluate
        signature = inspect.signature(handler)
        first = next(iter(signature.parameters.values()), None)
        if first is not None and first.annotation in ("Job", "jobqueue.Job", "jobqueue.worker.Job"):
            return []  # a plain handler whose `Job` is imported for type checking only
        shown = first.annotation if first is not None else "?"
        raise TypeError(
            f"handler {name}: the annotation {shown!r} of its payload parameter does not resolve; "
            "import its type at run time, not only for type checking"
        ) from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        p for p in signature.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty
    ]
