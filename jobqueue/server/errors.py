"""Turns every exception a handler raises into a precise Connect error.

connectrpc sends any non-ConnectError exception as `unknown` with its text,
which leaks internals. Here domain errors get their code and message, Redis
outages become `unavailable` (clients may retry; the outage is logged once by
the process's `Outage`, not per call), and anything else becomes `internal` with
a generic message while the traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from ..errors import (
    InvalidInput,
    JobAlreadyFinished,
    JobNotFound,
    JobNotRetryable,
    NotReplicated,
    PayloadTooLarge,
    QueueFull,
)
from ..outage import Outage
from ..supervise import CLUSTER_UNSETTLED, REDIS_DOWN

log = logging.getLogger("jobqueue.server")

REQ = TypeVar("REQ")
RES = TypeVar("RES")

_CODES: tuple[tuple[type[Exception], Code], ...] = (
    (PayloadTooLarge, Code.RESOURCE_EXHAUSTED),
    (QueueFull, Code.RESOURCE_EXHAUSTED),
    (InvalidInput, Code.INVALID_ARGUMENT),
    (JobNotFound, Code.NOT_FOUND),
    (JobAlreadyFinished, Code.FAILED_PRECONDITION),
    (JobNotRetryable, Code.FAILED_PRECONDITION),
    (NotReplicated, Code.UNAVAILABLE),
)


def to_connect_error(exc: Exception, method: str, outage: Outage) -> ConnectError:
    if isinstance(exc, ConnectError):
        return exc
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return ConnectError(code, str(exc))
    if isinstance(exc, REDIS_DOWN):
        outage.failed(exc)
        log.debug("%s: Redis unavailable: %s", method, exc)
        if isinstance(exc, CLUSTER_UNSETTLED):
            return ConnectError(
                Code.UNAVAILABLE,
                "job storage is unavailable (its Redis Cluster is changing: a failover or a slot "
                "migration); retry later",
            )
        return ConnectError(Code.UNAVAILABLE, "job storage is unavailable; retry later")
    log.exception("%s: unexpected error", method, exc_info=exc)
    return ConnectError(Code.INTERNAL, "internal error (details are in the server log)")


class ErrorInterceptor:
    def __init__(self, outage: Outage | None = None) -> None:
        """`outage`: where the calls report Redis' outages (the store's); None: an app
        without Redis."""
        self.outage = outage or Outage("redis://(none)")

    async def intercept_unary(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> RES:
        began_in = self.outage.generation
        try:
            response = await call_next(request, ctx)
        except Exception as exc:  # noqa: BLE001 - every error must leave with a deliberate code
            raise to_connect_error(exc, ctx.method.name, self.outage) from None
        if self.outage.down:
            self.outage.back(began_in)
        return response

    async def intercept_server_stream(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], AsyncIterator[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[RES]:
        responses = call_next(request, ctx)
        try:
            async for response in responses:
                yield response
        except Exception as exc:  # noqa: BLE001 - every error must leave with a deliberate code
            raise to_connect_error(exc, ctx.method.name, self.outage) from None
        finally:
            # Closed with this one (the client went away, the server shuts down), not
            # left to the garbage collector, so that the handler's cleanup runs now.
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()
