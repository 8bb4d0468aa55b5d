"""Builds the server's ASGI app: JobService, health, reflection, the dashboard
(dashboard.py), /metrics (metrics/), bearer tokens and roles (auth.py), CORS,
spans (tracing.py, when on), streams that end (streams.py), gRPC-Web text mode
(grpc_web_text.py), the read of what is left of a refused request (drain.py), and
the bounds on hostile or slow clients (limits.py, slow.py, quiet.py,
grpc_trailers.py), and refusals that explain themselves (refusals.py). The bounds
that see every message share one layer (edge.py), the outermost."""

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
from ..metrics.exposition import ServerMetrics
from ..producer import Producer
from ..settings import Settings
from .auth import Guard
from .cors import CORSMiddleware
from .dashboard import dashboard_apps
from .edge import Edge
from .errors import ErrorInterceptor
from .grpc_trailers import GrpcNeedsTrailers
from .grpc_web_text import GrpcWebText
from .health import HealthService
from .limits import StreamMessageLimit, codecs
from .refusals import ExplainedRefusals
from .router import Hook, Router
from .service import JobServiceHandler
from .slow import SlowClientTimeouts
from .streams import Streams

# Room for the rest of the request around the payload, and for base64 in JSON.
_ENVELOPE_BYTES = 64 * 1024


def create_app(
    producer: Producer,
    *,
    streams: Streams | None = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    metrics: ServerMetrics | None = None,
) -> Any:
    """The app on `producer`'s store, with its settings (CORS, bounds on slow clients);
    with `metrics`, its RPCs counted and GET /metrics served."""
    settings = producer.store.settings
    streams = streams or Streams()
    interceptors: list[Interceptor] = [streams, ErrorInterceptor(producer.store.outage)]
    # Before every other, the role check too: it sees every call's code (metrics/rpcs.py).
    counted: list[Interceptor] = [metrics.rpcs] if metrics is not None else []
    # A request is refused (resource_exhausted) before it is decoded when it could
    # not fit a payload under the limit even as base64 JSON; a payload just over
    # the limit is refused by the store with a message that names the field.
    read_max_bytes = settings.max_payload_bytes * 4 // 3 + _ENVELOPE_BYTES
    descriptors = (jobqueue_pb.desc(), health_pb.desc())
    guard = Guard.from_settings(settings)  # bearer tokens (server/auth.py); health stays open
    jobs = JobServiceHandler(producer, guard, streams)
    # A span per JobService call (not health checks), outermost: it sees every error as its code.
    job_interceptors = [*_tracing_interceptors(settings), *guard.jobs(interceptors)]
    # Health and reflection requests are a name or two: no need for connectrpc's 4 MiB.
    small: dict[str, Any] = {"read_max_bytes": _ENVELOPE_BYTES, "codecs": codecs()}
    reflection = {**small, "interceptors": guard.reflection([StreamMessageLimit()])}
    router = Router([
        JobServiceASGIApplication(
            jobs, interceptors=[*counted, *job_interceptors], read_max_bytes=read_max_bytes, codecs=codecs()
        ),
        HealthASGIApplication(
            HealthService(producer.store.redis), interceptors=[*counted, *interceptors], **small
        ),
        ServerReflectionASGIApplication(ServerReflectionService(*descriptors), **reflection),
        ServerReflectionAlphaASGIApplication(ServerReflectionAlphaService(*descriptors), **reflection),
        *([metrics] if metrics is not None else []),
        *dashboard_apps(),
    ], on_startup=on_startup, on_shutdown=on_shutdown)  # fmt: skip
    refusals = ExplainedRefusals(router.route, max_payload_bytes=settings.max_payload_bytes)
    app: Any = _ByProtocol(grpc=GrpcWebText(GrpcNeedsTrailers(refusals)), connect=guard.paths(router.route))
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            settings.cors_origins,
            extra_headers=settings.cors_allow_headers,
            allow_credentials=settings.cors_allow_credentials,
        )
    slow = SlowClientTimeouts(
        body_idle_s=settings.body_idle_timeout_s,
        body_total_s=settings.body_timeout_s,
        send_s=settings.send_timeout_s,
    )
    return Edge(app, slow, refusals)


def _tracing_interceptors(settings: Settings) -> list[Interceptor]:
    if not settings.tracing:
        return []
    from ..tracing import server_interceptor  # noqa: PLC0415 - only with tracing on

    return [server_interceptor()]


_GRPC = b"application/grpc"


class _ByProtocol:
    """gRPC and gRPC-Web requests to `grpc`, the layers that only they need;
    any other request (Connect, or a Content-Type no protocol takes) to `connect`.

    Safe because those layers act only on a Content-Type that starts with
    application/grpc (gRPC-Web text is application/grpc-web-text), and
    connectrpc answers any other request in the Connect protocol, which carries
    no grpc-message (its 415 and 429 are explained by the edge). Not a coroutine:
    it returns the app's, adding no frame to the request's task (see edge.py).
    """

    def __init__(self, *, grpc: Any, connect: Any) -> None:
        self.grpc = grpc
        self.connect = connect

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-type" and value[: len(_GRPC)].lower() == _GRPC:
                    return self.grpc(scope, receive, send)
        return self.connect(scope, receive, send)
