#!/usr/bin/env python3
"""What a typed payload costs per job (docs/performance.md, "Typed payloads").

    python bench/codec_cost.py [--calls 20000] [--rounds 7]

In-process, without Redis: for each payload type and codec, the time to encode
one payload (what `enqueue(..., codec=)` adds before its call) and the time of a
worker's call of the handler: the decoding wrapper `Worker` makes for a typed
handler against the plain handler of a Job (not wrapped: the baseline). Each
figure is the median of --rounds rounds of --calls calls, rounds of the kinds
alternating; the handlers do nothing, so the decoding's share is as large as it
can be. The payload: an email (3 fields, one a list of 2) of about 80 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pydantic

from jobqueue.codecs import get_codec
from jobqueue.model import Job, JobStatus
from jobqueue.worker.typed import adapt


@dataclasses.dataclass
class EmailData:
    to: str
    subject: str
    tags: list[str]


class EmailDict(TypedDict):
    to: str
    subject: str
    tags: list[str]


class EmailModel(pydantic.BaseModel):
    to: str
    subject: str
    tags: list[str]


FIELDS = {"to": "ada@example.com", "subject": "your receipt, order 42", "tags": ["receipt", "eu"]}
KINDS: dict[str, tuple[Any, Any]] = {  # name: (annotation, the object enqueued)
    "dataclass": (EmailData, EmailData(**FIELDS)),
    "TypedDict": (EmailDict, dict(FIELDS)),
    "pydantic": (EmailModel, EmailModel(**FIELDS)),
}


def _handler(annotation: Any) -> Callable[..., Awaitable[None]]:
    async def handler(payload: Any) -> None:
        pass

    handler.__annotations__["payload"] = annotation
    return handler


async def _plain(job: Job) -> None:
    pass


def _job(payload: bytes) -> Job:
    return Job("0000", "t", payload, JobStatus.RUNNING, 0, 0, 0)


def _per_call_us(run: Callable[[], None], calls: int) -> float:
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    calls = args.calls
    loop = asyncio.new_event_loop()

    def calling(handler: Callable[[Job], Awaitable[None]], job: Job) -> Callable[[], None]:
        async def many() -> None:
            for _ in range(calls):
                await handler(job)

        return lambda: loop.run_until_complete(many())

    def encoding(codec_name: str, obj: Any) -> Callable[[], None]:
        encode = get_codec(codec_name).encode

        def many() -> None:
            for _ in range(calls):
                encode(obj)

        return many

    runs: dict[str, Callable[[], None]] = {"plain handler (baseline)": calling(_plain, _job(b"{}"))}
    encodes: dict[str, Callable[[], None]] = {}
    for codec_name in ("json", "msgpack"):
        for kind, (annotation, obj) in KINDS.items():
            label = f"{kind}, {codec_name}"
            wrapped, codec = adapt(_handler(annotation), codec_name)
            payload = codec.encode(obj)
            runs[label] = calling(wrapped, _job(payload))
            encodes[label] = encoding(codec_name, obj)
    timings: dict[str, list[float]] = {label: [] for label in runs}
    timings.update({"encode: " + label: [] for label in encodes})
    for _ in range(args.rounds):
        for label, run in runs.items():
            timings[label].append(_per_call_us(run, calls))
        for label, run in encodes.items():
            timings["encode: " + label].append(_per_call_us(run, calls))
    loop.close()
    base = statistics.median(timings["plain handler (baseline)"])
    print(f"python {sys.version.split()[0]}, {calls} calls x {args.rounds} rounds; medians, us per call")
    print(f"{'':34} {'handler call':>12} {'decoding adds':>13} {'encode':>8}")
    print(f"{'plain handler (baseline)':34} {base:12.2f}")
    for label in encodes:
        call = statistics.median(timings[label])
        encode = statistics.median(timings["encode: " + label])
        print(f"{label:34} {call:12.2f} {call - base:13.2f} {encode:8.2f}")


if __name__ == "__main__":
    main()
