"""OpenTelemetry traces, off unless the `tracing` setting is on (the `otel` extra).

With tracing on, one trace shows a job from its enqueue to each of its runs:

- the server's JobService RPCs get SERVER spans (connectrpc-otel), children of the
  caller's `traceparent` header; the `Client` sends its caller's (CLIENT spans);
- an enqueue stores the W3C trace context current at the call (the RPC's span on
  the server, the caller's span with a `Producer`) in the job's hash, the field
  `trace_context`: `traceparent`, then a space and `tracestate` if there is one;
- a worker runs each attempt in a CONSUMER span named after the job type, child
  of that stored context, whose attributes say how long the job waited.

Only this module imports opentelemetry, and only processes with tracing on import
it: with tracing off no field is stored, no span is made, and the extra need not
be installed. Spans go to the global TracerProvider: the program's own if it set
one, else the one `start` installs from the standard OTEL_* variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Coroutine, Iterator
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from .errors import TracingUnavailable
from .events import Event, Failure
from .model import Job

try:
    from connectrpc_otel import OpenTelemetryInterceptor
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import AttributeValue
except ImportError as missing:  # pragma: no cover - the extra is in the dev install
    raise TracingUnavailable(
        f"tracing (JOBQUEUE_TRACING, --tracing) needs the otel extra: pip install 'jobqueue[otel]' "
        f"({missing.name or missing} is not installed)"
    ) from None

TRACER = "jobqueue"

# The span attributes of a run (docs/observability.md lists them).
JOB_ID = "jobqueue.job.id"
JOB_TYPE = "jobqueue.job.type"
JOB_ATTEMPT = "jobqueue.job.attempt"
JOB_WAIT_MS = "jobqueue.job.wait_ms"
JOB_INTERRUPTED = "jobqueue.job.interrupted"

_W3C = TraceContextTextMapPropagator()
_tracer = trace.get_tracer(TRACER)


# -- enqueue -------------------------------------------------------------------


def stored_context() -> str:
    """The current span's W3C trace context as a job stores it; '' without one."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    parent = carrier.get("traceparent")
    if parent is None:
        return ""
    state = carrier.get("tracestate")
    return f"{parent} {state}" if state else parent


def enqueued(job: Job) -> None:
    """Names the job on the current span (the enqueue's), so a trace can be found by job id."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({JOB_ID: job.id, JOB_TYPE: job.type})


# -- a worker's run ------------------------------------------------------------


class Run(Protocol):
    """What a traced run reads of a worker's run (worker/slots.py)."""

    @property
    def job(self) -> Job: ...
    @property
    def failure(self) -> Failure | None: ...
    @property
    def interrupted(self) -> Event | None: ...


R = TypeVar("R", bound=Run)


def _parent(stored: str) -> otel_context.Context:
    """The context a stored trace context continues; empty (a new trace) without one."""
    if not stored:
        return otel_context.Context()
    parent, _, state = stored.partition(" ")
    carrier = {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}
    return _W3C.extract(carrier, context=otel_context.Context())


@contextlib.contextmanager
def job_span(job: Job) -> Iterator[Span]:
    """A CONSUMER span named after the job's type, child of its enqueue's context."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "jobqueue",
        "messaging.operation.type": "process",
        JOB_ID: job.id,
        JOB_TYPE: job.type,
        JOB_ATTEMPT: job.attempt,
        # From when it was due (enqueued, scheduled or retried) to its claim.
        JOB_WAIT_MS: max(0, job.started_at - job.execution_time_ms),
    }
    with _tracer.start_as_current_span(
        job.type,
        context=_parent(job.trace_context),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def traced(execute: Callable[[R], Coroutine[Any, Any, None]]) -> Callable[[R], Coroutine[Any, Any, None]]:
    """`execute` (a worker's run of one job) in the job's span: ERROR with the error
    text if the run failed; an attribute naming why the worker stopped it, if it did."""

    async def run(job_run: R) -> None:
        with job_span(job_run.job) as span:
            await execute(job_run)
            failure = job_run.failure
            if failure is not None:
                if failure.exception is not None:
                    span.record_exception(failure.exception)
                span.set_status(Status(StatusCode.ERROR, failure.error))
            elif job_run.interrupted is not None:
                span.set_attribute(JOB_INTERRUPTED, job_run.interrupted.value)

    return run


# -- the API -------------------------------------------------------------------


def server_interceptor() -> OpenTelemetryInterceptor:
    return OpenTelemetryInterceptor()


def client_interceptor() -> OpenTelemetryInterceptor:
    return OpenTelemetryInterceptor(client=True)


# -- a process's setup ---------------------------------------------------------


def start(service_name: str) -> None:
    """Installs a TracerProvider unless the program has one, and puts the current
    trace and span ids in the log lines (`trace_id`, `span_id`).

    The provider follows the standard variables: OTEL_SERVICE_NAME (default
    `service_name`), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER (default
    `otlp`: needs an OTLP exporter package; `console`; `none`) and the exporter's
    own (OTEL_EXPORTER_OTLP_ENDPOINT...). Raises TracingUnavailable for an exporter
    that is not installed.
    """
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set yet
        exporters = [_exporter(name) for name in _exporter_names()]
        resource = Resource.create(
            {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        )
        provider = TracerProvider(resource=resource)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    correlate_logs()


def _exporter_names() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [name for name in names if name != "none"]


# What each name of OTEL_TRACES_EXPORTER may be installed as (the OTLP packages
# register their protocol's name; `otlp` alone is the meta-package's).
_ALIASES = {"otlp": ("otlp", "otlp_proto_http", "otlp_proto_grpc")}
_OTLP_HINT = "pip install opentelemetry-exporter-otlp-proto-http (or -proto-grpc)"


def _exporter(name: str) -> SpanExporter:
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
    for candidate in _ALIASES.get(name, (name,)):
        if candidate in found:
            try:
                exporter: SpanExporter = found[candidate].load()()
            except ImportError as exc:
                raise TracingUnavailable(f"OTEL_TRACES_EXPORTER={name}: {exc}") from None
            return exporter
    hint = _OTLP_HINT if name.startswith("otlp") else f"installed: {', '.join(sorted(found)) or 'none'}"
    raise TracingUnavailable(f"OTEL_TRACES_EXPORTER={name}: no such exporter is installed ({hint})")


class _SpanIds(logging.Filter):
    """Adds the current span's `trace_id` and `span_id` (hex) to a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def correlate_logs() -> None:
    """The current trace and span ids in every record of the root logger's handlers."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _SpanIds) for f in handler.filters):
            handler.addFilter(_SpanIds())
