"""grpc.health.v1.Health: SERVING exactly while Redis answers a PING."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._gen.grpc.health.v1 import health_pb as pb
from .._gen.grpc.health.v1.health_connect import Health

Status: TypeAlias = pb.HealthCheckResponse.ServingStatus
JOB_SERVICE = "mpataki.jobqueue.v1.JobService"
# "" is the whole server, as gRPC health checking defines it.
SERVICES = ("", JOB_SERVICE)


class HealthService(Health):
    def __init__(self, redis: Redis, *, ping_timeout_s: float = 1.0, watch_interval_s: float = 1.0) -> None:
        self.redis = redis
        self.ping_timeout_s = ping_timeout_s
        self.watch_interval_s = watch_interval_s

    async def status(self) -> Status:
        try:
            async with asyncio.timeout(self.ping_timeout_s):
                await self.redis.ping()
        except (RedisError, OSError, TimeoutError):
            return Status.NOT_SERVING
        return Status.SERVING

    async def check(
        self, request: pb.HealthCheckRequest, ctx: RequestContext[Any, Any]
    ) -> pb.HealthCheckResponse:
        _known(request.service)
        return pb.HealthCheckResponse(status=await self.status())

    async def list(
        self, request: pb.HealthListRequest, ctx: RequestContext[Any, Any]
    ) -> pb.HealthListResponse:
        status = await self.status()
        return pb.HealthListResponse(statuses={s: pb.HealthCheckResponse(status=status) for s in SERVICES})

    async def watch(
        self, request: pb.HealthCheckRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.HealthCheckResponse]:
        """Sends the status now and again each time it changes. For an unknown service,
        SERVICE_UNKNOWN, and the stream stays open, as the gRPC health contract has it
        (the service may come to exist; clients watch on instead of failing). The
        stream ends when the client goes or the server shuts down (streams.py)."""
        if request.service not in SERVICES:
            yield pb.HealthCheckResponse(status=Status.SERVICE_UNKNOWN)
            await asyncio.Event().wait()  # no service comes to exist while a server runs
        last = None
        while True:
            status = await self.status()
            if status != last:
                yield pb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self.watch_interval_s)


def _known(service: str) -> None:
    """Check of an unknown service is `not_found`, as the gRPC health contract has it."""
    if service not in SERVICES:
        raise ConnectError(
            Code.NOT_FOUND, f"unknown service {service!r}; known: {', '.join(map(repr, SERVICES))}"
        )
