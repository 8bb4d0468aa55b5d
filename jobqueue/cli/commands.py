"""What each `jobqueue` command does, once its command line is parsed."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..model import JobOptions, JobStatus, UniqueMode
from ..selection import BulkOutcome, JobFilter, ListOrder, TimeField
from ..settings import Settings
from .exits import CommandFailed, ExitCode, call_failure, check_url
from .job_table import job_table, page_json
from .job_view import escaped, job_json, job_view, local_time
from .parser import (
    BULK_PER_CALL,
    call_timeout_from,
    log_format_from,
    log_level_from,
    processes_from,
    tls_files_from,
    token_from,
)
from .queue_view import stats_json, stats_table, workers_json, workers_table

if TYPE_CHECKING:
    from ..client import SyncClient
    from ..model import Job

R = TypeVar("R")


def run_command(args: argparse.Namespace) -> int:
    return _COMMANDS[args.command](args)


def _settings(args: argparse.Namespace) -> Settings:
    """The process's settings: the environment, then the command's options."""
    cors_origins = getattr(args, "cors_origins", None)
    return Settings.from_env(
        redis_url=getattr(args, "redis_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        cors_origins=tuple(cors_origins) if cors_origins else None,
        cors_allow_headers=tuple(getattr(args, "cors_allow_headers", None) or ()) or None,  # server only
        cors_allow_credentials=getattr(args, "cors_allow_credentials", None),
        auth_tokens_file=getattr(args, "auth_tokens_file", None),  # server only
        tracing=getattr(args, "tracing", None),
        tls_cert=getattr(args, "tls_cert", None),  # server only, as the two below
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        allow_eviction=getattr(args, "allow_eviction", None),  # server and worker
        redis_cluster=getattr(args, "redis_cluster", None),
        replica_acks=getattr(args, "replica_acks", None),  # server only, as the one below
        replica_ack_timeout_s=getattr(args, "replica_ack_timeout_s", None),
    )


def _start_process(args: argparse.Namespace, service: str | None) -> Settings:
    """Sets up a long-running command's logging and, if on, its tracing (as `service`;
    None: a process that runs no jobs nor calls, a supervisor); returns its settings."""
    from ..process import configure_logging  # noqa: PLC0415 - keeps client commands light

    configure_logging(log_level_from(args.log_level), log_format_from(args.log_format))
    settings = _settings(args)
    if settings.tracing and service is not None:
        from ..tracing import start  # noqa: PLC0415 - only with tracing on

        start(service)
    return settings


def _server(args: argparse.Namespace) -> int:
    settings = _start_process(args, "jobqueue-server")
    from ..server import run, run_h2corn  # noqa: PLC0415

    (run_h2corn if args.server == "h2corn" else run)(settings)
    return ExitCode.OK


def _worker(args: argparse.Namespace) -> int:
    processes = processes_from(args.processes)
    settings = _start_process(args, "jobqueue-worker" if processes == 1 else None)
    from ..loader import load_workers  # noqa: PLC0415
    from ..worker import run_workers  # noqa: PLC0415

    workers = load_workers(args.target)  # with a supervisor too: a module that does not load stops it here
    if processes > 1:
        from ..worker_processes import deployments_of, run_processes  # noqa: PLC0415

        child = functools.partial(_worker_child, args)
        return run_processes(child, processes, deployments_of(workers, settings))
    if args.metrics_port is not None:
        for worker in workers:  # one port for the process (exposition.py)
            worker.metrics_port, worker.metrics_host = args.metrics_port, args.metrics_host
    run_workers(*workers, settings=settings)
    return ExitCode.OK


def _worker_child(args: argparse.Namespace, index: int) -> list[str]:
    """The command line of the supervisor's child `index`: this command's options, in one process."""
    from ..worker_processes import worker_command  # noqa: PLC0415

    options = [args.target, "--metrics-host", args.metrics_host]
    for name, value in (("--redis-url", args.redis_url), ("--log-level", args.log_level),
                        ("--log-format", args.log_format)):  # fmt: skip
        if value is not None:
            options += [name, value]
    if args.metrics_port is not None:  # a port per process: each serves its own workers' metrics
        options += ["--metrics-port", str(args.metrics_port + index)]
    options += [
        flag
        for flag, on in (
            ("--tracing", args.tracing),
            ("--allow-eviction", args.allow_eviction),
            ("--redis-cluster", args.redis_cluster),
        )
        if on
    ]
    return worker_command(options)


def _dev(args: argparse.Namespace) -> int:
    settings = _start_process(args, "jobqueue-dev")
    from ..dev import run_dev  # noqa: PLC0415

    # On a developer's machine: loopback only, and browser calls from any origin.
    settings = dataclasses.replace(
        settings, host=args.host or "127.0.0.1", cors_origins=tuple(args.cors_origins or ("*",))
    )
    return run_dev(settings, worker_specs=args.workers, redis_port=args.redis_port, cluster=args.cluster)


def _enqueue(args: argparse.Namespace) -> int:
    payload = _payload(args)
    at = args.at
    now_ms = int(time.time() * 1000)
    if args.delay is not None:
        at = now_ms + int(args.delay * 1000)
    elif at is not None and at < now_ms:
        print(
            f"jobqueue: warning: --at {local_time(at)} is in the past: the job is due at once",
            file=sys.stderr,
        )
    options = JobOptions(
        max_attempts=args.max_attempts,
        timeout_ms=None if args.timeout is None else math.ceil(args.timeout * 1000),
        idempotency_key=args.idempotency_key,
        expires_at_ms=args.expires_at,
        expires_in_ms=None if args.expires_in is None else math.ceil(args.expires_in * 1000),
        priority=args.priority,
        unique_key=args.unique_key,
        unique_mode=UniqueMode[args.unique.upper().replace("-", "_")] if args.unique else UniqueMode.NONE,
    )
    return _print_job(args, _call(args, lambda client: client.enqueue(args.type, payload, at, options)))


def _payload(args: argparse.Namespace) -> bytes:
    if args.file == "-":
        return sys.stdin.buffer.read()
    if args.file is not None:
        try:
            return Path(args.file).read_bytes()
        except OSError as exc:
            raise CommandFailed(
                f"cannot read payload file {args.file}: {_why(exc)}", ExitCode.FAILED
            ) from None
    return (args.payload or "").encode()


def _why(error: OSError) -> str:
    """An OSError's reason without its errno prefix."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error)).lower()


def _get(args: argparse.Namespace) -> int:
    return _print_job(args, _call(args, lambda client: client.get(args.id)))


def _wait(args: argparse.Namespace) -> int:
    from ..client import WaitTimeout  # noqa: PLC0415 - keeps --help fast

    if args.result and args.json:
        raise CommandFailed("--result and --json: one or the other", ExitCode.USAGE)
    if args.codec and not args.result:
        raise CommandFailed("--codec decodes the result: give --result too", ExitCode.USAGE)
    try:
        job = _call(args, lambda client: client.wait(args.id, args.timeout))
    except WaitTimeout as exc:
        raise CommandFailed(f"{exc} (--timeout sets the wait)", ExitCode.UNREACHABLE) from None
    completed = job.status is JobStatus.COMPLETED
    if not args.result:
        _print_job(args, job)
    elif completed and args.codec:
        print(_decoded_result(job, args.codec))
    elif completed:
        sys.stdout.buffer.write(job.result)
        sys.stdout.buffer.flush()
    else:
        error = f": {escaped(job.last_error)}" if job.last_error else ""
        raise CommandFailed(f"job {job.id} ended {job.status.name}{error}", ExitCode.NOT_COMPLETED)
    return ExitCode.OK if completed else ExitCode.NOT_COMPLETED


def _decoded_result(job: Job, codec: str) -> str:
    """A COMPLETED job's result decoded by `codec`, as one line of JSON (`null`: none)."""
    try:
        value = job.result_as(None, codec)
    except ValueError as exc:  # DecodeError
        raise CommandFailed(
            f"job {job.id}: its result does not decode with codec {codec!r}: {exc}", ExitCode.FAILED
        ) from None
    except ModuleNotFoundError as exc:
        raise CommandFailed(str(exc), ExitCode.FAILED) from None
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # msgpack's bytes, NaN...
        raise CommandFailed(
            f"job {job.id}: its result decoded with codec {codec!r} is not JSON: {exc}", ExitCode.FAILED
        ) from None


def _cancel(args: argparse.Namespace) -> int:
    job_filter = _filter_or_id(args, "cancel")
    if job_filter is not None:
        return _bulk(args, job_filter, "cancelled", lambda client: client.cancel_jobs)
    _call(args, lambda client: client.cancel(args.id))
    print(f"cancelled {args.id}")
    return ExitCode.OK


def _retry(args: argparse.Namespace) -> int:
    job_filter = _filter_or_id(args, "retry", default_status=JobStatus.FAILED)
    if job_filter is not None:
        return _bulk(args, job_filter, "retried", lambda client: client.retry_jobs)
    return _print_job(args, _call(args, lambda client: client.retry(args.id)))


def _stats(args: argparse.Namespace) -> int:
    report = _call(args, lambda client: client.stats(args.type))
    print(stats_json(report) if args.json else stats_table(report))
    return ExitCode.OK


def _workers(args: argparse.Namespace) -> int:
    workers = _call(args, lambda client: client.workers(args.type))
    if args.json:
        print(workers_json(workers))
    elif workers:
        print(workers_table(workers))
    else:
        print(f"no live workers{f' of {args.type}' if args.type else ''}")
    return ExitCode.OK


def _pause(args: argparse.Namespace) -> int:
    _call(args, lambda client: client.pause(args.type))
    print(f"paused {args.type}: workers claim none of its jobs until `jobqueue resume {args.type}`")
    return ExitCode.OK


def _resume(args: argparse.Namespace) -> int:
    _call(args, lambda client: client.resume(args.type))
    print(f"resumed {args.type}")
    return ExitCode.OK


def _partitions(args: argparse.Namespace) -> int:
    covered = _call(args, lambda client: client.set_partitions(args.type, args.partitions))
    kept = f"; its workers still cover {covered} (the most it had)" if covered > args.partitions else ""
    print(f"{args.type}: enqueues go to {args.partitions} partition{'s' * (args.partitions != 1)}{kept}")
    return ExitCode.OK


def _delete(args: argparse.Namespace) -> int:
    return _bulk(args, _job_filter(args), "deleted", lambda client: client.delete_jobs)


def _list(args: argparse.Namespace) -> int:
    job_filter = _job_filter(args)
    order = ListOrder.OLDEST_FIRST if args.oldest_first else ListOrder.NEWEST_FIRST
    page = _call(args, lambda client: client.list_jobs(job_filter, order, args.limit, args.page_token))
    if args.json:
        print(page_json(page))
    elif args.quiet:
        for job in page.jobs:
            print(job.id)
    elif page.jobs:
        print(job_table(page.jobs, finished=job_filter.status.is_final and args.by != "created"))
    else:
        print("jobqueue: no jobs match", file=sys.stderr)
    if page.next_page_token and not args.json:
        print(f"jobqueue: more: the same command with --page-token {page.next_page_token}", file=sys.stderr)
    return ExitCode.OK


_FILTER_OPTIONS = ("filter_type", "status", "since", "until", "by", "error_contains", "filter_key")


def _filter_or_id(
    args: argparse.Namespace, verb: str, default_status: JobStatus = JobStatus.UNSPECIFIED
) -> JobFilter | None:
    """The filter of a command given filter options, or None when it was given an id."""
    filtering = any(getattr(args, name) is not None for name in _FILTER_OPTIONS)
    if args.id is not None and filtering:
        raise CommandFailed(f"give a job id or filter options, not both ({verb} --help)", ExitCode.USAGE)
    if args.id is not None:
        return None
    if not filtering:
        raise CommandFailed(
            f"give a job id, or filter options (--type, --status...) to {verb} every job they select",
            ExitCode.USAGE,
        )
    return _job_filter(args, default_status)


def _job_filter(args: argparse.Namespace, default_status: JobStatus = JobStatus.UNSPECIFIED) -> JobFilter:
    return JobFilter(
        type=args.filter_type or "",
        status=JobStatus[args.status.upper()] if args.status else default_status,
        time_field={None: TimeField.UNSPECIFIED, "created": TimeField.CREATED}.get(
            args.by, TimeField.FINISHED
        ),
        from_ms=args.since or 0,
        to_ms=args.until or 0,
        error_contains=args.error_contains or "",
        idempotency_key=args.filter_key or "",
    )


# At most this many calls of a bulk command (BULK_PER_CALL jobs examined each).
MAX_BULK_CALLS = 10_000


def _bulk(
    args: argparse.Namespace,
    job_filter: JobFilter,
    done: str,
    method: Callable[[SyncClient], Callable[[JobFilter, int, str], BulkOutcome]],
) -> int:
    """Calls a bulk RPC with each token it returns until none is left; prints the count."""

    def all_of_it(client: SyncClient) -> int:
        count, token = 0, ""
        for _ in range(MAX_BULK_CALLS):
            outcome = method(client)(job_filter, BULK_PER_CALL, token)
            count, token = count + outcome.count, outcome.next_page_token
            if not token:
                return count
        raise CommandFailed(
            f"{done} {_jobs(count)}, and stopped after {MAX_BULK_CALLS:,} calls: run it again to go on",
            ExitCode.FAILED,
        )

    count = _call(args, all_of_it)
    if args.json:
        print(json.dumps({"count": count}))
    elif args.quiet:
        print(count)
    else:
        print(f"{done} {_jobs(count)}")
    return ExitCode.OK


def _jobs(count: int) -> str:
    return f"{count:,} job" if count == 1 else f"{count:,} jobs"


def _call(args: argparse.Namespace, request: Callable[[SyncClient], R]) -> R:
    """Runs one call to the server; a failure becomes a CommandFailed that says what to do."""
    url = check_url(args.url)
    timeout_s = call_timeout_from(args.call_timeout)
    tls = tls_files_from(args, url)
    from connectrpc.errors import ConnectError  # noqa: PLC0415 - keeps --help fast

    from ..client import SyncClient  # noqa: PLC0415

    try:
        with SyncClient(url, timeout_s=timeout_s, token=token_from(args.token), **tls) as client:
            return request(client)
    except ConnectError as exc:
        raise call_failure(exc, url, timeout_s) from None


def _print_job(args: argparse.Namespace, job: Job) -> int:
    if args.json:
        print(job_json(job))
    elif getattr(args, "quiet", False):
        print(job.id)
    else:
        print(job_view(job))
    return ExitCode.OK


def _watch(args: argparse.Namespace) -> int:
    """Prints each event as it comes, until the watch ends (WatchJob: the job finished) or Ctrl-C."""
    from .watch_view import watch  # noqa: PLC0415 - keeps --help fast

    url = check_url(args.url)
    timeout_s = call_timeout_from(args.call_timeout)
    return watch(
        url,
        timeout_s,
        token_from(args.token),
        tls=tls_files_from(args, url),
        job_id=args.id,
        job_type=args.job_type or "",
        cursor=args.cursor,
        as_json=args.json,
        progress=args.progress,
    )


def _whoami(args: argparse.Namespace) -> int:
    caller = _call(args, lambda client: client.who_am_i())
    if args.json:
        print(json.dumps(dataclasses.asdict(caller) | {"methods": list(caller.methods)}, indent=2))
    elif caller.auth_enabled:
        print(f"role {caller.role}: {', '.join(caller.methods)}")
    else:
        print("auth is off on this server: every caller may call every method")
    return ExitCode.OK


def _rebuild(args: argparse.Namespace) -> int:
    from .rebuild import run_rebuild  # noqa: PLC0415 - only this command reaches Redis itself

    settings = _settings(args)
    return run_rebuild(
        settings, job_type=args.type, count=args.count, dry_run=args.dry_run, as_json=args.json
    )


def _token(args: argparse.Namespace) -> int:
    from ..auth import file_line, new_token  # noqa: PLC0415

    token = new_token()
    line = file_line(args.role, token)
    if args.json:
        print(json.dumps({"token": token, "role": args.role, "line": line}))
    else:
        print(f"token (shown once; give it to the client, e.g. as JOBQUEUE_TOKEN): {token}")
        print(f"line to add to the server's tokens file: {line}")
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "server": _server,
    "worker": _worker,
    "dev": _dev,
    "enqueue": _enqueue,
    "get": _get,
    "wait": _wait,
    "cancel": _cancel,
    "retry": _retry,
    "stats": _stats,
    "workers": _workers,
    "pause": _pause,
    "resume": _resume,
    "partitions": _partitions,
    "delete": _delete,
    "list": _list,
    "watch": _watch,
    "whoami": _whoami,
    "token": _token,
    "rebuild": _rebuild,
}
