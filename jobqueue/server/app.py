"""Builds the server's ASGI app: JobService, health, reflection, CORS, streams that
end (streams.py), gRPC-Web text mode (grpc_web_text.py), and the read of what is
left of a refused request (drain.py)."""

from __future__ import annotations

from typing import Any

from connectrpc.interceptor import Interceptor
from connectrpc_grpcreflect import (
    ServerReflectionAlphaASGIApplication,
    ServerReflectionAlphaService,
    ServerReflectionASGIApplication,
    ServerReflectionService,
)

from .._gen.grpc.health.v1 import health_pb
from .._gen.grpc.health.v1.health_connect import HealthASGIApplication
from .._gen.mpataki.jobqueue.v1 import jobqueue_pb
from .._gen.mpataki.jobqueue.v1.jobqueue_connect import JobServiceASGIApplication
from ..producer import Producer
from .cors import CORSMiddleware
from .drain import DrainUnreadBody
from .errors import ErrorInterceptor
from .grpc_web_text import GrpcWebText
from .health import HealthService
from .router import Hook, Router
from .service import JobServiceHandler
from .streams import Streams

# Room for the rest of the request around the payload, and for base64 in JSON.
_ENVELOPE_BYTES = 64 * 1024


def create_app(
    producer: Producer,
    *,
    cors_origins: tuple[str, ...] = (),
    cors_allow_headers: tuple[str, ...] = (),
    cors_allow_credentials: bool = False,
    streams: Streams | None = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> Any:
    streams = streams or Streams()
    interceptors: list[Interceptor] = [streams, ErrorInterceptor()]
    # A request is refused (resource_exhausted) before it is decoded when it could
    # not fit a payload under the limit even as base64 JSON; a payload just over
    # the limit is refused by the store with a message that names the field.
    read_max_bytes = producer.store.settings.max_payload_bytes * 4 // 3 + _ENVELOPE_BYTES
    descriptors = (jobqueue_pb.desc(), health_pb.desc())
    jobs = JobServiceHandler(producer)
    router = Router([
        JobServiceASGIApplication(jobs, interceptors=interceptors, read_max_bytes=read_max_bytes),
        HealthASGIApplication(HealthService(producer.store.redis), interceptors=interceptors),
        ServerReflectionASGIApplication(ServerReflectionService(*descriptors)),
        ServerReflectionAlphaASGIApplication(ServerReflectionAlphaService(*descriptors)),
    ], on_startup=on_startup, on_shutdown=on_shutdown)  # fmt: skip
    app: Any = GrpcWebText(streams.asgi(router))
    if cors_origins:
        app = CORSMiddleware(
            app, cors_origins, extra_headers=cors_allow_headers, allow_credentials=cors_allow_credentials
        )
    return DrainUnreadBody(app)
