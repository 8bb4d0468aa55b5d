"""The `jobqueue` command: server, worker, dev, and the client commands."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .model import JobOptions
from .settings import DEFAULT_API_URL, Settings

if TYPE_CHECKING:
    from .client import SyncClient
    from .model import Job

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration_s(text: str) -> float:
    """`1500ms`, `30s`, `5m`, `2h`, `1d`, or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 5m, 1500ms)")
    return float(match[1]) * _UNIT_S[match[2]]


def parse_time_ms(text: str) -> int:
    """Unix milliseconds, or an ISO 8601 date-time (local time if it has no offset)."""
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither Unix milliseconds nor an ISO 8601 time (e.g. 2030-01-31T09:00:00+01:00)"
        ) from None
    return int(when.astimezone().timestamp() * 1000)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (JOBQUEUE_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (JOBQUEUE_PORT, default 8080)")
    parser.add_argument(
        "--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
        help="allow browser calls from ORIGIN ('*' for any); repeatable "
        "(JOBQUEUE_CORS_ORIGINS, comma-separated)",
    )  # fmt: skip


def _redis_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        help="redis://, rediss:// or unix:// URL (default: JOBQUEUE_REDIS_URL, REDIS_URL, REDIS_ADDR)",
    )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("JOBQUEUE_URL", DEFAULT_API_URL),
        help="server URL (JOBQUEUE_URL, default http://localhost:8080)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobqueue", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser("server", help="run the API server (Connect, gRPC, gRPC-Web)")
    _server_options(server)
    server.add_argument(
        "--server", choices=("hypercorn", "h2corn"), default=os.environ.get("JOBQUEUE_SERVER", "hypercorn"),
        help="the ASGI server: hypercorn (default) or h2corn, faster (pip install 'jobqueue[h2corn]')",
    )  # fmt: skip
    server.add_argument(
        "--cors-allow-header", action="append", dest="cors_allow_headers", metavar="HEADER",
        help="a request header browsers may send besides Connect's (e.g. traceparent); repeatable "
        "(JOBQUEUE_CORS_ALLOW_HEADERS, comma-separated)",
    )  # fmt: skip
    server.add_argument("--cors-allow-credentials", action="store_true", default=None,
                        help="let browsers send credentials (cookies); needs listed origins, not '*' "
                        "(JOBQUEUE_CORS_ALLOW_CREDENTIALS)")  # fmt: skip
    _redis_option(server)

    worker = commands.add_parser("worker", help="run the workers a module defines")
    worker.add_argument("target", metavar="MODULE[:ATTR]", help="package.module or path/to/file.py; ATTR "
                        "is a Worker or a list of them (default: worker or workers)")  # fmt: skip
    _redis_option(worker)

    dev = commands.add_parser("dev", help="run Redis, the server and the example worker in one terminal")
    _server_options(dev)
    dev.add_argument("--redis-port", type=int, default=6379,
                     help="port of the Redis that dev starts (default 6379 if free; 0: any)")  # fmt: skip
    dev.add_argument("--worker", dest="workers", action="append", metavar="MODULE[:ATTR]",
                     help="workers to run (default: examples/print_worker.py when present)")  # fmt: skip

    enqueue = commands.add_parser("enqueue", help="enqueue a job")
    enqueue.add_argument("type", help="job type")
    source = enqueue.add_mutually_exclusive_group()
    source.add_argument("payload", nargs="?", help="payload text (default: empty)")
    source.add_argument("--file", "-f", help="read the payload from a file ('-' for stdin)")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", type=parse_time_ms, help="run at this time: Unix ms or ISO 8601")
    when.add_argument("--in", dest="delay", type=parse_duration_s, help="run after this delay: 30s, 5m, 2h")
    enqueue.add_argument("--max-attempts", type=int, help="runs the job may get (default: the worker's)")
    enqueue.add_argument(
        "--timeout", type=parse_duration_s, help="longest run: 30s, 5m (default: the worker's)"
    )
    enqueue.add_argument("--idempotency-key", default="", help="enqueue at most one job per key and type")
    _client_options(enqueue)

    for name, text in (
        ("get", "show a job"),
        ("cancel", "cancel a pending or running job"),
        ("retry", "run a FAILED or CANCELLED job again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("id", help="job id")
        _client_options(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (OSError, LookupError, ValueError, TypeError, ImportError) as exc:
        print(f"jobqueue {args.command}: {exc}", file=sys.stderr)
        return 1


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
    )


def _server(args: argparse.Namespace) -> int:
    from .server import run, run_h2corn  # noqa: PLC0415 - keeps client commands light

    (run_h2corn if args.server == "h2corn" else run)(_settings(args))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .loader import load_workers  # noqa: PLC0415
    from .worker import run_workers  # noqa: PLC0415

    run_workers(*load_workers(args.target), settings=_settings(args))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from .dev import run_dev  # noqa: PLC0415

    workers = args.workers
    if workers is None:
        workers = ["examples/print_worker.py"] if Path("examples/print_worker.py").is_file() else []
    # On a developer's machine: loopback only, and browser calls from any origin.
    settings = dataclasses.replace(
        _settings(args), host=args.host or "127.0.0.1", cors_origins=tuple(args.cors_origins or ("*",))
    )
    return run_dev(settings, worker_specs=workers, redis_port=args.redis_port)


def _enqueue(args: argparse.Namespace) -> int:
    if args.file == "-":
        payload = sys.stdin.buffer.read()
    elif args.file:
        payload = Path(args.file).read_bytes()
    else:
        payload = (args.payload or "").encode()
    at = args.at
    if args.delay is not None:
        at = int((dt.datetime.now(dt.UTC).timestamp() + args.delay) * 1000)
    options = JobOptions(
        max_attempts=args.max_attempts,
        timeout_ms=None if args.timeout is None else int(args.timeout * 1000),
        idempotency_key=args.idempotency_key,
    )
    return _call(args.url, lambda client: client.enqueue(args.type, payload, at, options))


def _get(args: argparse.Namespace) -> int:
    return _call(args.url, lambda client: client.get(args.id))


def _cancel(args: argparse.Namespace) -> int:
    return _call(args.url, lambda client: client.cancel(args.id))


def _retry(args: argparse.Namespace) -> int:
    return _call(args.url, lambda client: client.retry(args.id))


def _call(url: str, request: Callable[[SyncClient], Job | None]) -> int:
    """Runs one client call, prints the job as JSON (or the error), returns the exit code."""
    from connectrpc.errors import ConnectError  # noqa: PLC0415

    from .client import SyncClient  # noqa: PLC0415
    from .wire import job_to_proto  # noqa: PLC0415

    try:
        with SyncClient(url) as client:
            job = request(client)
    except ConnectError as exc:
        print(f"error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 2
    if job is not None:
        print(json.dumps(json.loads(job_to_proto(job).to_json()), indent=2))
    return 0


_COMMANDS = {
    "server": _server,
    "worker": _worker,
    "dev": _dev,
    "enqueue": _enqueue,
    "get": _get,
    "cancel": _cancel,
    "retry": _retry,
}

if __name__ == "__main__":
    sys.exit(main())
