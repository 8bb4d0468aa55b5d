"""The settings of one deployment, defined once, read once at a process's edge.

Servers and workers of one deployment must agree on these (same Redis, same key
prefix, same retention); the options of one worker (concurrency, lease...) are
`Worker` arguments instead. A process builds one `Settings` where it starts (the
`jobqueue` command from its options and the environment, `Worker.run()` from the
environment) and passes it down: nothing below reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .model import JOB_TYPE_PATTERN
from .outage import redacted

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_API_URL = "http://localhost:8080"  # where clients look for the API server by default
DAY_S = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    # How long a command may wait for Redis' reply (a blocking pop: its block time
    # more) before Redis counts as unavailable: an API call to a hung Redis fails
    # with `unavailable` after about this long, and the outage is logged.
    redis_timeout_s: float = 5.0
    # Prefix of every Redis key, so that several deployments can share one Redis.
    prefix: str = "jq"
    # How long COMPLETED, FAILED and CANCELLED jobs stay readable.
    retention_s: float = DAY_S
    max_payload_bytes: int = 1 << 20
    # How long an idempotency key keeps returning the job first enqueued with it.
    idempotency_window_s: float = DAY_S
    host: str = "0.0.0.0"
    port: int = 8080
    # Origins allowed to call the API from a browser; "*" allows any. Empty: CORS off.
    cors_origins: tuple[str, ...] = ()
    # Request headers browsers may send besides the Connect/gRPC-Web ones (server/cors.py).
    cors_allow_headers: tuple[str, ...] = ()
    # Whether browsers may send credentials (cookies...): only with listed origins, not "*".
    cors_allow_credentials: bool = False
    # On SIGTERM, the server ends open streams at once; requests in flight get this long.
    server_shutdown_grace_s: float = 5.0
    # How often reapers look for expired leases and for popped-but-unclaimed ids.
    reaper_interval_s: float = 1.0
    # How long an id may sit popped but unclaimed before the reaper sweeps it back.
    claim_timeout_s: float = 5.0
    # After Redis restarts, how long reapers wait before taking jobs back by
    # liveness or lease: the outage stopped every heartbeat, and live workers
    # need a moment to reconnect and check in.
    restart_grace_s: float = 10.0
    # Slow clients (server/slow.py, server/main.py): an idle connection is closed
    # after idle_timeout_s (under Hypercorn a request's head must come within it
    # too); a request body may pause body_idle_timeout_s and take body_timeout_s in
    # all; a response waits at most send_timeout_s on a client that reads none of it.
    idle_timeout_s: float = 75.0
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 120.0
    send_timeout_s: float = 60.0
    # Admission: the most PENDING jobs a type may hold; an enqueue beyond it is refused
    # (resource_exhausted). 0: no limit. Per type (`email=1000,report=50`, or a dict
    # here) overrides it.
    max_depth: int = 0
    max_depth_by_type: tuple[tuple[str, int], ...] = ()
    # Auth (docs/security.md). A file of token hashes (`ROLE sha256:HEX` lines): the
    # API then needs a bearer token, and a role to call each method. Empty: auth
    # off, every caller may call every method.
    auth_tokens_file: str = ""
    # With auth on, whether gRPC reflection answers without a token (True: it
    # describes only the public API) or needs a valid one of any role.
    auth_reflection_open: bool = True
    # OpenTelemetry traces (the `otel` extra; docs/observability.md): RPC spans, the
    # trace context stored with each job at enqueue, and a span per run continuing it.
    tracing: bool = False
    # TLS (server/tls.py): the server's certificate chain and private key, PEM files;
    # with both, it serves HTTPS only (HTTP/2 and HTTP/1.1 by ALPN). Empty: plain HTTP.
    tls_cert: str = ""
    tls_key: str = ""
    # A PEM file of the CAs whose client certificates the server accepts: with it,
    # every client must present one (mutual TLS). Empty: no client certificates.
    tls_client_ca: str = ""
    # Results (worker/results.py): the largest value a handler may return, in bytes;
    # a larger one fails its run for good (PermanentError). Read by the workers.
    max_result_bytes: int = 1 << 20
    # Memory safety (store/memory_policy.py): start on a Redis whose maxmemory-policy
    # may evict keys (anything but noeviction), with a warning, instead of refusing.
    allow_eviction: bool = False
    # How long a type with no job left (retention passed) and no worker stays in the
    # types registry before reapers forget it, with its counts (reaper.py).
    type_idle_s: float = 3600.0
    # Redis Cluster (docs/design.md, "Redis Cluster"): `redis_url` names any node of a
    # cluster, and every process connects with the cluster client.
    redis_cluster: bool = False
    # Acknowledged enqueues and replicas (store/replication.py): an enqueue answers
    # once this many replicas have its writes (WAIT), else `unavailable` after
    # replica_ack_timeout_s. "auto": 1 if the master has a replica when the process
    # first enqueues, else 0; 0: no wait.
    replica_acks: str = "auto"
    replica_ack_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.redis_timeout_s > 0:
            given = self.redis_timeout_s
            raise ValueError(f"redis_timeout_s (JOBQUEUE_REDIS_TIMEOUT_S) must be > 0, got {given}")
        if self.max_depth < 0:
            given = self.max_depth
            raise ValueError(f"max_depth (JOBQUEUE_MAX_DEPTH) must be >= 0 (0: no limit), got {given}")
        by_type = self.max_depth_by_type
        pairs = tuple(by_type.items()) if isinstance(by_type, Mapping) else tuple(by_type)
        for job_type, depth in pairs:
            if not JOB_TYPE_PATTERN.fullmatch(job_type) or not isinstance(depth, int) or depth < 0:
                raise ValueError(
                    f"max_depth_by_type (JOBQUEUE_MAX_DEPTH_BY_TYPE): {job_type}={depth} is not "
                    "a job type and a limit >= 0 (e.g. email=1000,report=50)"
                )
        object.__setattr__(self, "max_depth_by_type", pairs)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(
                "tls_cert (JOBQUEUE_TLS_CERT, --tls-cert) and tls_key (JOBQUEUE_TLS_KEY, --tls-key) "
                "go together: give both for TLS, or neither"
            )
        if self.max_result_bytes < 0:
            given = self.max_result_bytes
            raise ValueError(f"max_result_bytes (JOBQUEUE_MAX_RESULT_BYTES) must be >= 0, got {given}")
        object.__setattr__(self, "replica_acks", str(self.replica_acks).strip().lower())
        if not (self.replica_acks == "auto" or self.replica_acks.isdigit()):
            raise ValueError(
                "replica_acks (JOBQUEUE_REPLICA_ACKS) must be auto or a number >= 0, "
                f"got {self.replica_acks!r}"
            )
        if not self.replica_ack_timeout_s > 0:
            raise ValueError(
                "replica_ack_timeout_s (JOBQUEUE_REPLICA_ACK_TIMEOUT_S) must be > 0, "
                f"got {self.replica_ack_timeout_s}"
            )
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError(
                "tls_client_ca (JOBQUEUE_TLS_CLIENT_CA, --tls-client-ca) needs TLS: give --tls-cert "
                "and --tls-key too"
            )

    def max_depth_of(self, job_type: str) -> int:
        """The most PENDING jobs `job_type` may hold (0: no limit)."""
        for name, depth in self.max_depth_by_type:
            if name == job_type:
                return depth
        return self.max_depth

    def max_depth_setting(self, job_type: str) -> str:
        """The variable that sets `job_type`'s limit (what a refusal names)."""
        overridden = any(name == job_type for name, _ in self.max_depth_by_type)
        return "JOBQUEUE_MAX_DEPTH_BY_TYPE" if overridden else "JOBQUEUE_MAX_DEPTH"

    @property
    def retention_ms(self) -> int:
        return int(self.retention_s * 1000)

    @property
    def idempotency_window_ms(self) -> int:
        return int(self.idempotency_window_s * 1000)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """JOBQUEUE_<FIELD> variables (the Redis URL as `redis_url_from_env` finds it),
        then `overrides` that are not None (e.g. command-line options)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"redis_url": redis_url_from_env(env)}
        for field in dataclasses.fields(cls):
            raw = env.get(f"JOBQUEUE_{field.name.upper()}")
            if raw is None or field.name == "redis_url":
                continue
            values[field.name] = _parse(field.name, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:
        # The Redis URL may hold a password: shown as the logs show it.
        shown = (
            f"{f.name}={redacted(self.redis_url)!r}"
            if f.name == "redis_url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({', '.join(shown)})"

    def to_env(self) -> dict[str, str]:
        """The JOBQUEUE_* variables that `from_env` reads back: for a child process."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "max_depth_by_type":
                value = tuple(f"{name}={depth}" for name, depth in value)
            env[f"JOBQUEUE_{field.name.upper()}"] = (
                ",".join(value) if isinstance(value, tuple) else str(value)
            )
        return env


def redis_url_from_env(env: Mapping[str, str]) -> str:
    """JOBQUEUE_REDIS_URL, then REDIS_URL, then REDIS_ADDR (host:port, as go-job-queue used)."""
    url = env.get("JOBQUEUE_REDIS_URL") or env.get("REDIS_URL")
    if url:
        return url
    addr = env.get("REDIS_ADDR")
    if addr:
        return f"redis://{addr}/0"
    return DEFAULT_REDIS_URL


def _parse(name: str, raw: str, kind: object) -> Any:
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
    except ValueError:
        raise ValueError(f"JOBQUEUE_{name.upper()}={raw!r} is not a number") from None
    if kind in ("bool", bool):
        if raw.strip().lower() not in _BOOLS:
            raise ValueError(f"JOBQUEUE_{name.upper()}={raw!r} is not one of {', '.join(_BOOLS)}")
        return _BOOLS[raw.strip().lower()]
    if kind in ("tuple[str, ...]", tuple[str, ...]):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind == "tuple[tuple[str, int], ...]":
        return tuple(_limit(name, item.strip()) for item in raw.split(",") if item.strip())
    return raw


def _limit(name: str, item: str) -> tuple[str, int]:
    """`type=N`."""
    job_type, _, depth = item.partition("=")
    if not depth.strip().isdigit():
        raise ValueError(f"JOBQUEUE_{name.upper()}: {item!r} is not TYPE=N (e.g. email=1000,report=50)")
    return job_type.strip(), int(depth)


_BOOLS = {word: True for word in ("1", "true", "yes", "on")} | {w: False for w in ("0", "false", "no", "off")}
