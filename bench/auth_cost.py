#!/usr/bin/env python3
"""What the bearer-token check costs per call (docs/performance.md, "Auth").

    python bench/auth_cost.py [--calls 4000] [--rounds 7]

1. The app alone, without an HTTP server or Redis: `create_app` driven in-process
   as Hypercorn drives it over HTTP/2 (16 Connect-JSON calls at a time) with
   `WhoAmI`, the cheapest RPC (it reads nothing from Redis), so that the check's
   share is as large as it can be. Auth off, then on (an admin token, a file of
   three), alternating for --rounds rounds; prints each mode's median time per call
   and the ratio on/off, and the same of each mode's fastest round (on a loaded
   machine the least disturbed one); then the Python frames entered per call in each mode
   (sys.setprofile: a call or a coroutine resumed), which the machine's load does
   not move. WhoAmI checks the token twice (the check, then the answer): an upper bound.
2. The lookup alone: `Tokens.role_of` with files of 3 and of 100 tokens (every
   entry is compared each time), the median of --rounds timings.

Loopback only, nothing listens; bounded by --calls and --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_ab import asgi_call  # bench/, this script's folder

from jobqueue.auth import ROLES, file_line, new_token
from jobqueue.auth.tokens import Tokens, parse_tokens
from jobqueue.producer import Producer
from jobqueue.server.app import create_app
from jobqueue.settings import Settings
from jobqueue.store import Store

PATH = "/mpataki.jobqueue.v1.JobService/WhoAmI"
BODY = b"{}"
AT_ONCE = 16


def _scope(token: str) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "2",
        "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
        "headers": headers, "extensions": {"http.response.trailers": {}},
    }  # fmt: skip


async def _frames_per_call(app: Any, scope: dict[str, Any], calls: int) -> float:
    frames = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal frames
        if event == "call":
            frames += 1

    sys.setprofile(profile)
    try:
        await _per_call_us(app, scope, calls)
    finally:
        sys.setprofile(None)
    return frames / calls


async def _per_call_us(app: Any, scope: dict[str, Any], calls: int) -> float:
    began = time.perf_counter()
    for start in range(0, calls, AT_ONCE):
        await asyncio.gather(*(asgi_call(app, scope, BODY) for _ in range(min(AT_ONCE, calls - start))))
    return (time.perf_counter() - began) / calls * 1e6


def _app(tokens_file: str) -> Any:
    # No lifespan: nothing starts, and WhoAmI reads nothing from Redis.
    settings = Settings(redis_url="redis://127.0.0.1:1/0", auth_tokens_file=tokens_file)
    return create_app(Producer(Store.open(settings)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    tokens = {role: new_token() for role in ROLES}
    with tempfile.NamedTemporaryFile("w", suffix=".tokens") as file:
        file.write("\n".join(file_line(role, token) for role, token in tokens.items()) + "\n")
        file.flush()
        modes = {"off": (_app(""), _scope("")), "on": (_app(file.name), _scope(tokens["admin"]))}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        frames: dict[str, float] = {}

        async def run() -> None:
            for app, scope in modes.values():
                await _per_call_us(app, scope, args.calls // 4)  # warm-up
            for round_ in range(args.rounds):
                order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
                for mode in order:
                    times[mode].append(await _per_call_us(*modes[mode], args.calls))
            for mode, (app, scope) in modes.items():
                frames[mode] = await _frames_per_call(app, scope, 320)

        asyncio.run(run())
    off, on = (statistics.median(times[mode]) for mode in ("off", "on"))
    print(f"WhoAmI in-process, {args.calls} calls x {args.rounds} rounds, {AT_ONCE} at a time")
    for mode in modes:
        print(f"  auth {mode:>3}: " + " ".join(f"{t:.1f}" for t in times[mode]) + " us/call")
    print(f"  medians: off {off:.1f} us, on {on:.1f} us; on/off {on / off:.3f} (+{on - off:.1f} us/call)")
    least = {mode: min(times[mode]) for mode in modes}
    print(
        f"  fastest rounds (the least disturbed): off {least['off']:.1f} us, on {least['on']:.1f} us; "
        f"on/off {least['on'] / least['off']:.3f}"
    )
    print(f"  Python frames entered per call: off {frames['off']:.1f}, on {frames['on']:.1f}")
    for count in (3, 100):
        entries = Tokens(
            parse_tokens("\n".join(file_line("reader", new_token()) for _ in range(count)), "bench")
        )
        token = new_token()
        runs = timeit.repeat(
            lambda entries=entries, token=token: entries.role_of(token), number=10_000, repeat=args.rounds
        )
        print(f"Tokens.role_of, {count} tokens: {statistics.median(runs) / 10_000 * 1e6:.2f} us (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
