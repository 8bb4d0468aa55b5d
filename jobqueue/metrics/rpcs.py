"""The RPCs' metrics: a connectrpc metadata interceptor that counts each call by
service, method and code when it ends (a stream when it ends), and times it.

First in the server's list of interceptors, connectrpc runs it before the
request is read: a call refused for its body (malformed, too large) or by an
interceptor after it (auth) is counted with its code too. Requests that never
reach connectrpc are not: an unknown path, a refusal at the server's edge
(server/edge.py, server/refusals.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from .histogram import DURATION_BUCKETS_S, Histogram

OK = "ok"


class RpcMetrics:
    """A connectrpc interceptor (give it first to the ASGI applications) and a
    prometheus_client collector."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str], int] = {}  # (service, method, code) -> calls
        self.durations: dict[tuple[str, str], Histogram] = {}  # (service, method) -> seconds

    async def on_start(self, ctx: RequestContext[Any, Any]) -> float:
        return time.perf_counter()

    async def on_end(self, token: float, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        seconds = time.perf_counter() - token
        method = (ctx.method.service_name, ctx.method.name)
        code = OK if error is None else _code(error)
        key = (*method, code)
        self.calls[key] = self.calls.get(key, 0) + 1
        durations = self.durations.get(method)
        if durations is None:
            durations = self.durations[method] = Histogram(DURATION_BUCKETS_S)
        durations.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "jobqueue_rpcs",
            "RPCs served, by service, method and Connect code (ok for success), counted as they end.",
            labels=["service", "method", "code"],
        )
        for (service, method, code), count in sorted(self.calls.items()):
            calls.add_metric([service, method, code], count)
        yield calls
        durations = HistogramMetricFamily(
            "jobqueue_rpc_duration_seconds",
            "How long RPCs took, from their start to their end (a stream's: its whole life).",
            labels=["service", "method"],
        )
        for (service, method), histogram in sorted(self.durations.items()):
            histogram.add_to(durations, [service, method])
        yield durations


def _code(error: Exception) -> str:
    # connectrpc sends any other exception as `unknown` (server/errors.py turns
    # the handlers' own into ConnectErrors before they get here).
    return error.code.value if isinstance(error, ConnectError) else "unknown"
