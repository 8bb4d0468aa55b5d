"""The `jobqueue` command line: its commands, their options, and how durations and times are read."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, TypeVar

from ..auth.roles import ROLES
from ..model import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from ..settings import DEFAULT_API_URL
from .exits import EXIT_CODES_HELP, CommandFailed, ExitCode

T = TypeVar("T")

DESCRIPTION = "jobqueue: run the server, workers or a dev setup, and enqueue, list and manage jobs."

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
DURATION_HELP = "a number and a unit: 1500ms, 30s, 5m, 2h, 1d"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
UNIQUE_MODES = ("while-active", "debounce")  # `enqueue --unique`: UniqueMode WHILE_ACTIVE, DEBOUNCE
DEFAULT_CALL_TIMEOUT_S = 10.0


def parse_duration_s(text: str) -> float:
    """`1500ms`, `30s`, `5m`, `2h` or `1d`, in seconds. A bare number is refused: `30` could be
    seconds or milliseconds, and the API itself counts in milliseconds."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return float(match[1]) * _UNIT_S[match[2]]
    if _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text} is not a duration: add a unit: {text}s, 5m, 1500ms")
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration ({DURATION_HELP})")


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


def parse_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def parse_log_format(text: str) -> str:
    name = text.strip().lower()
    if name not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log format ({', '.join(LOG_FORMATS)})")
    return name


def parse_log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level ({', '.join(LOG_LEVELS)})")
    return level


class CommandParser(argparse.ArgumentParser):
    """A command's parser: options and positionals in any order (`enqueue print --in 3s hello`),
    and every error reported with this command's usage, not the top-level one."""

    _parsing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Pairs of (dest, name) that may not both be given. argparse's own groups cannot hold
        # a positional when options and positionals mix.
        self.exclusive: list[tuple[tuple[str, str], tuple[str, str]]] = []

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._parsing:  # parse_known_intermixed_args calls back here, twice
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False
        if extras:  # a command is the last level: nothing after it may take them
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        for (first, first_name), (second, second_name) in self.exclusive:
            if getattr(parsed, first, None) is not None and getattr(parsed, second, None) is not None:
                self.error(f"argument {second_name}: not allowed with argument {first_name}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_ShowVersion, help="show the version and exit")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )

    server = _command(commands, "server", "run the API server (Connect, gRPC, gRPC-Web; the dashboard at /)")
    _server_options(server)
    _tls_options(server)
    server.add_argument(
        "--server", choices=("hypercorn", "h2corn"), default=os.environ.get("JOBQUEUE_SERVER", "hypercorn"),
        help="the ASGI server: hypercorn (default) or h2corn, faster (JOBQUEUE_SERVER; h2corn needs the "
        "h2corn extra: pip install -e '.[h2corn]' in a checkout, pip install 'jobqueue[h2corn]' "
        "once published)",
    )  # fmt: skip
    server.add_argument(
        "--cors-allow-header", action="append", dest="cors_allow_headers", metavar="HEADER",
        help="a request header browsers may send besides Connect's (e.g. traceparent); repeatable "
        "(JOBQUEUE_CORS_ALLOW_HEADERS, comma-separated)",
    )  # fmt: skip
    server.add_argument("--cors-allow-credentials", action="store_true", default=None,
                        help="let browsers send credentials (cookies); needs listed origins, not '*' "
                        "(JOBQUEUE_CORS_ALLOW_CREDENTIALS)")  # fmt: skip
    server.add_argument(
        "--auth-tokens", dest="auth_tokens_file", metavar="FILE",
        help="turn auth on: calls need a bearer token listed in FILE, one `ROLE sha256:HEX` a line "
        "(`jobqueue token new` makes them; JOBQUEUE_AUTH_TOKENS_FILE; default: auth off)",
    )  # fmt: skip
    _redis_option(server)
    _replica_acks_option(server)
    _log_level_option(server)
    _observability_options(server)
    _memory_option(server)

    worker = _command(commands, "worker", "run the workers a module defines")
    worker.add_argument("target", metavar="MODULE[:ATTR]", help="package.module or path/to/file.py; ATTR "
                        "is a Worker or a list of them (default: worker or workers)")  # fmt: skip
    _redis_option(worker)
    _log_level_option(worker)
    _observability_options(worker)
    worker.add_argument("--metrics-port", type=parse_port, metavar="PORT",
                        help="serve the workers' Prometheus metrics at http://HOST:PORT/metrics "
                        "(default: none)")  # fmt: skip
    worker.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="address the metrics port listens on (default 127.0.0.1; 0.0.0.0: every "
                        "interface)")  # fmt: skip
    _memory_option(worker)
    worker.add_argument(
        "--processes", type=parse_processes, metavar="N",
        help="run the workers in N processes, restarted if they crash (JOBQUEUE_WORKER_PROCESSES; "
        "default: one per core; 1: one process, no supervisor). With --metrics-port P, process i "
        "serves its metrics on port P+i",
    )  # fmt: skip

    dev = _command(commands, "dev", "run Redis, the server and the example worker in one terminal")
    _server_options(dev)
    dev.add_argument("--redis-port", type=int, default=6379,
                     help="port of the Redis that dev starts (default 6379; if it is taken, dev says so "
                     "and uses another; 0: any)")  # fmt: skip
    dev.add_argument("--cluster", action="store_true",
                     help="run on a Redis Cluster: a local one of its own (3 masters with a replica "
                     "each, throwaway), or, with REDIS_URL set, that one")  # fmt: skip
    dev.add_argument("--worker", dest="workers", action="append", metavar="MODULE[:ATTR]",
                     help="workers to run instead of the example print worker "
                     "(jobqueue.examples.print_worker); repeatable")  # fmt: skip
    _log_level_option(dev)
    _observability_options(dev)

    enqueue = _command(
        commands, "enqueue", "enqueue a job",
        epilog=f"Durations take a unit ({DURATION_HELP}); a bare number is refused. A time given to "
        "--at that is already past is accepted with a warning: the job is due at once.",
    )  # fmt: skip
    enqueue.add_argument("type", help="job type")
    enqueue.add_argument("payload", nargs="?", help="payload text, sent as UTF-8 (default: empty)")
    enqueue.add_argument("--file", "-f", metavar="FILE", help="read the payload from a file ('-' for stdin)")
    enqueue.exclusive.append((("payload", "PAYLOAD"), ("file", "--file/-f")))
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        type=parse_time_ms,
        metavar="TIME",
        help="run at this time: Unix ms or ISO 8601 (local time without an offset)",
    )
    when.add_argument(
        "--in",
        dest="delay",
        type=parse_duration_s,
        metavar="DURATION",
        help="run after this delay: 30s, 5m, 2h",
    )
    enqueue.add_argument(
        "--max-attempts", type=int, metavar="N", help="runs the job may get (default: the worker's)"
    )
    enqueue.add_argument(
        "--timeout",
        type=parse_duration_s,
        metavar="DURATION",
        help="longest run: 30s, 5m (default: the worker's)",
    )
    enqueue.add_argument(
        "--idempotency-key", default="", metavar="KEY", help="enqueue at most one job per key and type"
    )
    enqueue.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help=f"{MIN_PRIORITY} to {MAX_PRIORITY}, higher runs first (default: {DEFAULT_PRIORITY})",
    )
    enqueue.add_argument(
        "--unique-key",
        default="",
        metavar="KEY",
        help="a key unique per type while its job is active (with --unique)",
    )
    enqueue.add_argument(
        "--unique",
        choices=UNIQUE_MODES,
        help="while-active: a job with --unique-key still pending or running is returned instead; "
        "debounce: its pending job gets this payload and time (--at, --in or now)",
    )
    expiry = enqueue.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in",
        type=parse_duration_s,
        metavar="DURATION",
        help="never start the job after this long from the enqueue (it ends EXPIRED): 10m, 1h",
    )
    expiry.add_argument(
        "--expires-at",
        type=parse_time_ms,
        metavar="TIME",
        help="never start the job after this time (it ends EXPIRED): Unix ms or ISO 8601",
    )
    _client_options(enqueue, prints_a_job=True)

    get = _command(commands, "get", "show a job")
    get.add_argument("id", help="job id")
    _client_options(get, prints_a_job=True, quiet=False)
    wait = _command(
        commands, "wait", "wait for a job to finish and show it (with its result)",
        epilog="Exits 0 once the job COMPLETED, 5 if it ended FAILED, CANCELLED or EXPIRED, 4 if it is not "
        "finished within --timeout.",
    )  # fmt: skip
    wait.add_argument("id", help="job id")
    wait.add_argument(
        "--timeout", type=parse_duration_s, default=30.0, metavar="DURATION",
        help="how long to wait for the job to finish (default 30s)",
    )  # fmt: skip
    _client_options(wait, prints_a_job=True, quiet=False)
    wait.add_argument(
        "--result", action="store_true",
        help="print only the result's bytes, as they are (a job that did not complete: nothing)",
    )  # fmt: skip
    cancel = _bulk_command(
        commands, "cancel", "cancel a pending or running job", "cancels every unfinished job they select",
        statuses=("pending", "running"),
    )  # fmt: skip
    _client_options(cancel, prints_a_job=False)
    _count_output(cancel)
    retry = _bulk_command(
        commands, "retry", "run a FAILED, CANCELLED or EXPIRED job again",
        "retries every job they select (--status failed unless given)",
        statuses=("failed", "cancelled", "expired"),
    )  # fmt: skip
    _client_options(retry, prints_a_job=True)
    delete = _command(
        commands, "delete", "delete the finished jobs that filter options select",
        epilog=f"Deletes every job selected, {BULK_PER_CALL:,} a call until none is left. {FILTER_EPILOG}",
    )  # fmt: skip
    _filter_options(delete, statuses=("completed", "failed", "cancelled", "expired"), status_required=True)
    _client_options(delete, prints_a_job=False)
    _count_output(delete)
    listing = _command(
        commands, "list", "list jobs by type, status and time, newest first, a page at a time",
        epilog="Without --status, lists the unfinished jobs (pending and running). The next page's "
        f"--page-token is printed on stderr. {FILTER_EPILOG}",
    )  # fmt: skip
    _filter_options(listing, statuses=STATUSES)
    listing.add_argument("--oldest-first", action="store_true", help="oldest first (default: newest first)")
    listing.add_argument(
        "--limit", type=int, default=20, metavar="N", help="jobs per page, 1 to 1000 (default 20)"
    )
    listing.add_argument("--page-token", default="", metavar="TOKEN", help="the page after a previous list")
    _client_options(listing, prints_a_job=False)
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the API's ListJobs reply as JSON")
    output.add_argument("--quiet", "-q", action="store_true", help="print only the jobs' ids")

    reads = (
        ("stats", "show the counts of jobs by status, per type and in total", "every type"),
        ("workers", "show the live workers", "the workers of every type"),
    )
    for name, text, default in reads:
        read = _command(commands, name, text)
        read.add_argument("--type", default="", metavar="TYPE", help=f"only this type (default: {default})")
        _client_options(read, prints_a_job=False)
        read.add_argument("--json", action="store_true", help="print the API's reply as protobuf JSON")
    controls = (
        ("pause", "stop workers from claiming a type's jobs (enqueue goes on)"),
        ("resume", "let workers claim a paused type's jobs again"),
    )
    for name, text in controls:
        control = _command(commands, name, text)
        control.add_argument("type", help="job type")
        _client_options(control, prints_a_job=False)
    watch = _command(
        commands, "watch", "print jobs' changes as they happen",
        epilog="With an ID: that job's current state, then each change, until it is finished. Without: "
        "every change of --type's jobs (or of every type's) from now on, until Ctrl-C. Each line: time, "
        "id, type, status, attempt, worker, error. --cursor resumes after an event (--json shows its "
        "cursor).",
    )  # fmt: skip
    watch.add_argument("id", nargs="?", help="job id (default: every job of --type, or of every type)")
    watch.add_argument("--type", "-t", dest="job_type", metavar="TYPE", help="only this type's jobs")
    watch.exclusive.append((("id", "ID"), ("job_type", "--type/-t")))
    watch.add_argument(
        "--cursor", default="", help="resume after this event (an event's cursor, from --json)"
    )
    _client_options(watch, prints_a_job=False)
    watch.add_argument("--json", action="store_true", help="print each event as a JSON document, one a line")

    rebuild = _command(
        commands, "rebuild", "recompute the job counters and indexes from the stored jobs (on Redis itself)",
        epilog="For a store written before the counters existed, or damaged: for every registered type (or "
        "--type), puts each stored job in the index its status names and in no other, drops index entries "
        "whose job is gone, then sets the pending and running counts. Reads Redis with SCAN, COUNT ids a "
        "step; safe beside running workers and servers, and to run again. Totals and per-minute counts "
        "are history and stay as they are. Progress goes to stderr.",
    )  # fmt: skip
    rebuild.add_argument("--type", default="", metavar="TYPE", help="only this type (default: every type)")
    rebuild.add_argument("--dry-run", action="store_true", help="change nothing: print what would be fixed")
    rebuild.add_argument(
        "--count", type=parse_count, default=500, metavar="N", help="ids per step, 1 to 1000 (default 500)"
    )
    rebuild.add_argument("--json", action="store_true", help="print what was fixed as JSON")
    _redis_option(rebuild)

    whoami = _command(commands, "whoami", "show the role the token grants and the methods it may call")
    _client_options(whoami, prints_a_job=False)
    whoami.add_argument("--json", action="store_true", help="print the API's WhoAmI reply as JSON")
    token = _command(
        commands, "token", "make a token for a server with auth on (docs/security.md)",
        epilog="`token new` prints the token (shown once: give it to the client, e.g. as JOBQUEUE_TOKEN) "
        "and the line to add to the server's tokens file (only the token's hash: the file lets no "
        "one call the API). The server reads the file again within a second of a change.",
    )  # fmt: skip
    token.add_argument("action", choices=("new",), help="new: make a token")
    token.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    token.add_argument("--json", action="store_true", help='print {"token", "role", "line"} as JSON')
    return parser


STATUSES = ("pending", "running", "completed", "failed", "cancelled", "expired")
BULK_PER_CALL = 1000
FILTER_EPILOG = (
    "--since and --until take a time (Unix ms, ISO 8601) or a duration before now (30m, 2h, 7d); "
    "they bound the creation time, or for a finished --status the finish time (--by sets which)."
)


def parse_since_ms(text: str) -> int:
    """A time (Unix ms or ISO 8601), or a duration before now: `2h` is two hours ago."""
    if text.isdigit() or not _DURATION.fullmatch(text.strip()):
        return parse_time_ms(text)
    return int(time.time() * 1000 - parse_duration_s(text) * 1000)


def _bulk_command(
    commands: Any, name: str, text: str, bulk_text: str, *, statuses: Sequence[str]
) -> CommandParser:
    """A command on one job by id, or on every job its filter options select."""
    parser = _command(
        commands, name, f"{text}, or every one that filter options select",
        epilog=f"With filter options instead of an id, {bulk_text}, {BULK_PER_CALL:,} a call until none "
        f'is left, and prints how many it changed (--json: {{"count": N}}; -q: N). {FILTER_EPILOG}',
    )  # fmt: skip
    parser.add_argument("id", nargs="?", help="job id")
    _filter_options(parser, statuses=statuses)
    return parser


def _filter_options(parser: CommandParser, *, statuses: Sequence[str], status_required: bool = False) -> None:
    parser.add_argument("--type", dest="filter_type", metavar="TYPE", help="one job type (default: all)")
    parser.add_argument(
        "--status", type=str.lower, choices=statuses, required=status_required, metavar="STATUS",
        help=f"one of {', '.join(statuses)}",
    )  # fmt: skip
    parser.add_argument("--since", type=parse_since_ms, metavar="TIME", help="from this time (inclusive)")
    parser.add_argument("--until", type=parse_since_ms, metavar="TIME", help="before this time")
    parser.add_argument(
        "--by", choices=("created", "finished"), help="the time --since and --until bound (and the order)"
    )
    parser.add_argument(
        "--error-contains", metavar="TEXT", help="jobs whose last error contains TEXT (a bounded scan)"
    )
    parser.add_argument(
        "--idempotency-key",
        dest="filter_key",
        metavar="KEY",
        help="the job enqueued with this idempotency key (needs --type)",
    )


def _count_output(parser: CommandParser) -> None:
    """--json and -q for a command that prints a count."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help='print {"count": N} (with filter options)')
    output.add_argument(
        "--quiet", "-q", action="store_true", help="print only the count (with filter options)"
    )


def _command(commands: Any, name: str, text: str, epilog: str | None = None) -> CommandParser:
    parser: CommandParser = commands.add_parser(name, help=text, description=text, epilog=epilog)
    return parser


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (JOBQUEUE_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (JOBQUEUE_PORT, default 8080)")
    parser.add_argument(
        "--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
        help="allow browser calls from ORIGIN ('*' for any); repeatable "
        "(JOBQUEUE_CORS_ORIGINS, comma-separated)",
    )  # fmt: skip


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-cert", metavar="FILE",
        help="serve HTTPS with this PEM certificate chain; needs --tls-key (JOBQUEUE_TLS_CERT)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-key", metavar="FILE", help="the certificate's PEM private key, unencrypted (JOBQUEUE_TLS_KEY)"
    )
    parser.add_argument(
        "--tls-client-ca", metavar="FILE",
        help="require client certificates signed by these PEM CAs (mutual TLS; JOBQUEUE_TLS_CLIENT_CA)",
    )  # fmt: skip


def _redis_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        help="redis://, rediss://, unix:// or redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME[/DB] URL "
        "(default: JOBQUEUE_REDIS_URL, REDIS_URL, REDIS_ADDR)",
    )
    parser.add_argument(
        "--redis-cluster", action="store_true", default=None,
        help="the URL names a node of a Redis Cluster: connect to the cluster (JOBQUEUE_REDIS_CLUSTER)",
    )  # fmt: skip


def _replica_acks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replica-acks",
        metavar="N|auto",
        help="an enqueue answers once N replicas have it (WAIT), else unavailable; auto: 1 if the master "
        "has a replica, else 0 (JOBQUEUE_REPLICA_ACKS; default auto)",
    )
    parser.add_argument(
        "--replica-ack-timeout-s", type=float, metavar="SECONDS",
        help="how long an enqueue waits for its replicas (JOBQUEUE_REPLICA_ACK_TIMEOUT_S; default 1)",
    )  # fmt: skip


def _memory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-eviction", action="store_true", default=None,
        help="start even if Redis's maxmemory-policy may evict keys (and lose jobs): a warning instead "
        "of a refusal (JOBQUEUE_ALLOW_EVICTION; default: only noeviction is accepted)",
    )  # fmt: skip


def parse_processes(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return int(text)


def parse_count(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of ids per step (1 to 1000)")
    return int(text)


def processes_from(option: int | None) -> int:
    """The --processes option, else JOBQUEUE_WORKER_PROCESSES, else one per core."""
    return _from_env(option, "JOBQUEUE_WORKER_PROCESSES", parse_processes, os.cpu_count() or 1)


def _log_level_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", type=parse_log_level, metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (JOBQUEUE_LOG_LEVEL, default info)",
    )  # fmt: skip


def _observability_options(parser: argparse.ArgumentParser) -> None:
    """docs/observability.md."""
    parser.add_argument(
        "--log-format", type=parse_log_format, metavar="FORMAT",
        help=f"{' or '.join(LOG_FORMATS)}: one JSON object a line (JOBQUEUE_LOG_FORMAT, default text)",
    )  # fmt: skip
    parser.add_argument(
        "--tracing", action="store_true", default=None,
        help="OpenTelemetry traces, exported as the OTEL_* variables say (JOBQUEUE_TRACING; needs "
        "the otel extra: pip install 'jobqueue[otel]')",
    )  # fmt: skip


def _client_options(parser: argparse.ArgumentParser, *, prints_a_job: bool, quiet: bool = True) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("JOBQUEUE_URL", DEFAULT_API_URL),
        help=f"the server's URL (JOBQUEUE_URL, default {DEFAULT_API_URL})",
    )  # fmt: skip
    parser.add_argument(
        "--token", metavar="TOKEN",
        help="the bearer token for a server with auth on (JOBQUEUE_TOKEN, safer: not shown by ps)",
    )  # fmt: skip
    parser.add_argument(
        "--call-timeout", type=parse_duration_s, metavar="DURATION",
        help=f"how long to wait for the server's answer (JOBQUEUE_CALL_TIMEOUT, default "
        f"{DEFAULT_CALL_TIMEOUT_S:g}s)",
    )  # fmt: skip
    parser.add_argument(
        "--ca-file", metavar="FILE",
        help="for an https:// URL: trust the server's certificate if these PEM CAs signed it, instead "
        "of the system's CAs (JOBQUEUE_CA_FILE)",
    )  # fmt: skip
    parser.add_argument(
        "--cert-file", metavar="FILE",
        help="for an https:// server that requires a client certificate (mutual TLS): this PEM "
        "certificate, with --key-file (JOBQUEUE_CERT_FILE)",
    )  # fmt: skip
    parser.add_argument(
        "--key-file", metavar="FILE", help="the PEM private key of --cert-file (JOBQUEUE_KEY_FILE)"
    )
    if prints_a_job:
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="print the job as protobuf JSON")
        if quiet:
            output.add_argument("--quiet", "-q", action="store_true", help="print only the job's id")


class _ShowVersion(argparse.Action):
    """--version, read from the installed package only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"jobqueue {_version()}")
        parser.exit()


def _version() -> str:
    """The installed distribution's version, whatever name it is published under."""
    from importlib import metadata  # noqa: PLC0415 - only --version needs it

    for name in metadata.packages_distributions().get("jobqueue", ["jobqueue"]):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "(version unknown: not installed)"


def log_level_from(option: str | None) -> int:
    """The --log-level option, else JOBQUEUE_LOG_LEVEL, else INFO."""
    level = _from_env(option, "JOBQUEUE_LOG_LEVEL", parse_log_level, "info")
    return logging.getLevelNamesMapping()[level.upper()]


def log_format_from(option: str | None) -> str:
    """The --log-format option, else JOBQUEUE_LOG_FORMAT, else text."""
    return _from_env(option, "JOBQUEUE_LOG_FORMAT", parse_log_format, "text")


def call_timeout_from(option: float | None) -> float:
    """The --call-timeout option, else JOBQUEUE_CALL_TIMEOUT, else the default."""
    return _from_env(option, "JOBQUEUE_CALL_TIMEOUT", parse_duration_s, DEFAULT_CALL_TIMEOUT_S)


def token_from(option: str | None) -> str | None:
    """The --token option, else JOBQUEUE_TOKEN, else None (no token)."""
    return option or os.environ.get("JOBQUEUE_TOKEN", "").strip() or None


class TLSFiles(TypedDict):
    """SyncClient's TLS arguments."""

    ca_file: str | None
    cert_file: str | None
    key_file: str | None


def tls_files_from(args: argparse.Namespace, url: str) -> TLSFiles:
    """The client's TLS files (SyncClient's ca_file, cert_file, key_file): each option,
    else its JOBQUEUE_ variable for an https:// URL (files set for a deployment's
    server do not stop calls to a local http:// one), else None."""
    files = TLSFiles(ca_file=None, cert_file=None, key_file=None)
    for name, variable in (("ca_file", "JOBQUEUE_CA_FILE"), ("cert_file", "JOBQUEUE_CERT_FILE"),
                           ("key_file", "JOBQUEUE_KEY_FILE")):  # fmt: skip
        option = getattr(args, name)
        if option is not None and not url.startswith("https://"):
            flag = "--" + name.replace("_", "-")
            raise CommandFailed(f"{flag} is for an https:// URL, not {url}", ExitCode.USAGE)
        from_env = os.environ.get(variable, "").strip()
        files[name] = option or (from_env if from_env and url.startswith("https://") else None)  # type: ignore[literal-required]
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise CommandFailed("a client certificate needs both --cert-file and --key-file", ExitCode.USAGE)
    return files


def _from_env(option: T | None, variable: str, parse: Callable[[str], T], default: T) -> T:
    if option is not None:
        return option
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise CommandFailed(f"{variable}: {exc}", ExitCode.USAGE) from None
