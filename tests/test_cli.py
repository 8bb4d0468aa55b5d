"""The `jobqueue` command as a user runs it: client commands, their output and exit codes,
worker loading, dev."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import http.server
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobqueue.cli import ExitCode, parse_duration_s, parse_time_ms
from jobqueue.model import JobOptions, JobStatus
from jobqueue.redis_server import free_port
from jobqueue.store.connection import OwnConnection

from .conftest import ROOT, eventually, status_is
from .harness import Harness
from .test_first_hour_dev import dev, dev_env, enqueue, wait_completed

MISSING_ID = "00000000-0000-4000-8000-000000000000"
LEASE_MS = 60_000


def jobqueue(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


def env_with(**variables: str) -> dict[str, str]:
    return {**os.environ, **variables}


def view_rows(output: str) -> dict[str, str]:
    """The human view's rows: label -> value (first line of the value)."""
    rows = {}
    for line in output.splitlines():
        if line[:1].strip():
            label, value = line[:17].strip(), line[17:]
            rows[label] = value
    return rows


def one_line_error(result: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    """The failure's one line on stderr, once its exit code is checked."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobqueue: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


# -- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["server"], ["worker"], ["dev"], ["enqueue"], ["get"], ["cancel"], ["retry"]]
)
def test_help_everywhere(command: list[str]) -> None:
    result = jobqueue(*command, "--help")
    assert result.returncode == 0 and "usage: jobqueue" in result.stdout


def test_the_top_level_help_lists_the_exit_codes() -> None:
    text = jobqueue("--help").stdout
    exit_codes = text.split("exit codes:", 1)[1]
    for code in ExitCode:
        assert f"\n  {int(code)}  " in exit_codes


def test_version_is_the_installed_packages() -> None:
    result = jobqueue("--version")
    assert result.returncode == 0
    assert result.stdout == f"jobqueue {importlib.metadata.version('jobqueue')}\n"


def test_server_help_says_how_to_get_h2corn_from_a_checkout() -> None:
    assert "pip install -e '.[h2corn]'" in " ".join(jobqueue("server", "--help").stdout.split())


def test_durations_and_times_parse() -> None:
    assert [parse_duration_s(t) for t in ("1500ms", "30s", "5m", "2h", "1d", "0.5s")] == [
        1.5,
        30,
        300,
        7200,
        86400,
        0.5,
    ]
    assert parse_time_ms("1735689600000") == 1735689600000
    assert parse_time_ms("2025-01-01T00:00:00+00:00") == 1735689600000
    for bad in ("soon", "5 minutes", "30x"):
        with pytest.raises(Exception, match="is not a duration"):
            parse_duration_s(bad)


@pytest.mark.parametrize("option", ["--in", "--timeout"])
def test_a_duration_without_a_unit_is_refused(option: str) -> None:
    result = jobqueue("enqueue", "print", option, "30", "--url", "http://127.0.0.1:1")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith("usage: jobqueue enqueue ")
    assert f"argument {option}: 30 is not a duration: add a unit: 30s, 5m, 1500ms" in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["enqueue", "print", "hello", "--bogus"], "unrecognized arguments: --bogus"),
        (["enqueue", "print", "hello", "extra"], "unrecognized arguments: extra"),
        (
            ["enqueue", "print", "hello", "--file", "x"],
            "argument --file/-f: not allowed with argument PAYLOAD",
        ),
        (["enqueue", "print", "--in", "1m", "--at", "1"], "argument --at: not allowed with argument --in"),
        (["get", MISSING_ID, "--quiet"], "unrecognized arguments: --quiet"),
        (
            ["worker", "tests/worker_apps.py", "--metrics-port", "70000"],
            "argument --metrics-port: '70000' is not a TCP port (1-65535)",
        ),
    ],
)
def test_usage_errors_show_the_commands_usage(args: list[str], complaint: str) -> None:
    result = jobqueue(*args)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith(f"usage: jobqueue {args[0]} ")
    assert result.stderr.rstrip().endswith(f"jobqueue {args[0]}: error: {complaint}")


@pytest.mark.parametrize(
    "order",
    [
        ["enqueue", "print", "--in", "1h", "hello"],
        ["enqueue", "--in", "1h", "print", "hello"],
        ["enqueue", "print", "hello", "--in", "1h"],
        ["enqueue", "print", "--in", "1h", "--max-attempts", "2", "hello"],
    ],
    ids=["option-between", "option-first", "option-last", "options-between"],
)
async def test_options_go_anywhere(order: list[str], server_url: str, store: Harness) -> None:
    result = jobqueue(*order, "--url", server_url, "--json")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    stored = await store.get(job["id"])
    assert (stored.type, stored.payload) == ("print", b"hello")
    assert stored.execution_time_ms - stored.created_at > 3_500_000


def test_a_payload_may_start_with_a_dash_after_double_dash(server_url: str) -> None:
    result = jobqueue("enqueue", "print", "--url", server_url, "--json", "--", "-not-an-option")
    assert result.returncode == 0, result.stderr
    assert base64.b64decode(json.loads(result.stdout)["payload"]) == b"-not-an-option"


# -- exit codes and messages ----------------------------------------------------------------


def test_a_refusal_exits_3_with_the_servers_code_and_message(server_url: str) -> None:
    missing = one_line_error(jobqueue("get", MISSING_ID, "--url", server_url), ExitCode.REFUSED)
    assert missing.startswith(f"jobqueue: not_found: job {MISSING_ID} not found")
    bad = one_line_error(jobqueue("enqueue", "bad type", "--url", server_url), ExitCode.REFUSED)
    assert bad.startswith("jobqueue: invalid_argument: type: ")


def test_a_closed_port_exits_4_and_says_what_to_do() -> None:
    with socket.socket() as bound:  # bound, not listening: a connection is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        result = jobqueue("get", MISSING_ID, "--url", url)
    assert one_line_error(result, ExitCode.UNREACHABLE) == (
        f"jobqueue: cannot reach the jobqueue server at {url}: is it running? set --url or JOBQUEUE_URL"
    )


def test_a_server_that_never_answers_exits_4_after_the_call_timeout() -> None:
    with socket.socket() as silent:  # listening, never accepting: the kernel takes the request
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = jobqueue("get", MISSING_ID, "--call-timeout", "1s", "--url", url)
        from_env = jobqueue("get", MISSING_ID, "--url", url, env=env_with(JOBQUEUE_CALL_TIMEOUT="1500ms"))
    assert one_line_error(result, ExitCode.UNREACHABLE) == (
        f"jobqueue: the jobqueue server at {url} did not answer within 1 s: is it overloaded or stuck? "
        "(--call-timeout sets the wait)"
    )
    assert "did not answer within 1.5 s" in one_line_error(from_env, ExitCode.UNREACHABLE)


def test_a_watch_of_a_server_that_never_answers_exits_4_after_the_call_timeout() -> None:
    """A watch's first message comes at once (the position, or the job's state): it is
    bounded by --call-timeout, the rest of the watch is not."""
    with socket.socket() as silent:  # listening, never accepting: the kernel takes the request
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        of_type = jobqueue("watch", "--type", "t", "--call-timeout", "1s", "--url", url)
        of_job = jobqueue("watch", MISSING_ID, "--call-timeout", "1s", "--url", url)
    for result in (of_type, of_job):
        assert one_line_error(result, ExitCode.UNREACHABLE) == (
            f"jobqueue: the jobqueue server at {url} did not answer within 1 s: is it overloaded or stuck? "
            "(--call-timeout sets the wait)"
        )


def test_a_host_that_does_not_resolve_exits_4() -> None:
    url = "http://no-such-host.invalid:8080"  # .invalid never resolves (RFC 2606)
    result = jobqueue("get", MISSING_ID, "--call-timeout", "30s", "--url", url)
    assert one_line_error(result, ExitCode.UNREACHABLE) == (
        f"jobqueue: cannot resolve the host name 'no-such-host.invalid' of {url}: set --url or JOBQUEUE_URL"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8080", "URL must start with http:// or https://: 'localhost:8080'"),
        ("ftp://localhost:8080", "URL must start with http:// or https://: 'ftp://localhost:8080'"),
        ("http://", "URL has no host: 'http://'"),
        ("http://localhost:port", "not a URL: 'http://localhost:port'"),
    ],
)
def test_a_bad_url_is_a_usage_error(url: str, message: str) -> None:
    from_option = jobqueue("get", MISSING_ID, "--url", url)
    assert one_line_error(from_option, ExitCode.USAGE) == f"jobqueue: {message}"
    from_env = jobqueue("enqueue", "print", env=env_with(JOBQUEUE_URL=url))
    assert one_line_error(from_env, ExitCode.USAGE) == f"jobqueue: {message}"


def test_a_missing_payload_file_exits_1_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.bin"
    result = jobqueue("enqueue", "print", "--file", str(missing), "--url", "http://127.0.0.1:1")
    assert (
        one_line_error(result, ExitCode.FAILED)
        == f"jobqueue: cannot read payload file {missing}: no such file"
    )


def test_bad_settings_in_the_environment_are_usage_errors() -> None:
    timeout = jobqueue("get", MISSING_ID, env=env_with(JOBQUEUE_CALL_TIMEOUT="5"))
    assert one_line_error(timeout, ExitCode.USAGE) == (
        "jobqueue: JOBQUEUE_CALL_TIMEOUT: 5 is not a duration: add a unit: 5s, 5m, 1500ms"
    )
    level = jobqueue("server", env=env_with(JOBQUEUE_LOG_LEVEL="loud"))
    assert one_line_error(level, ExitCode.USAGE) == (
        "jobqueue: JOBQUEUE_LOG_LEVEL: 'loud' is not a log level (debug, info, warning, error)"
    )


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's `answer`: (status, content type, body)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, content_type, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def canned_server(status: int, content_type: str, body: bytes) -> Iterator[str]:
    """An HTTP server on a free loopback port that gives every request the same answer."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.answer = (status, content_type, body)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_servers_unavailable_exits_4_with_its_message() -> None:
    error = json.dumps({"code": "unavailable", "message": "Redis is unavailable"}).encode()
    with canned_server(503, "application/json", error) as url:
        result = jobqueue("get", MISSING_ID, "--url", url)
    assert one_line_error(result, ExitCode.UNREACHABLE) == "jobqueue: unavailable: Redis is unavailable"


def test_something_else_at_the_url_is_named_as_such() -> None:
    with canned_server(404, "text/html", b"<h1>Not Found</h1>") as url:
        result = jobqueue("get", MISSING_ID, "--url", url)
    line = one_line_error(result, ExitCode.REFUSED)
    assert line.startswith(f"jobqueue: {url} answered, but not as a jobqueue server (unimplemented: ")
    assert line.endswith("): set --url or JOBQUEUE_URL")


def test_a_peer_that_hangs_up_is_not_taken_for_a_server() -> None:
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer.listen(8)
        url = f"http://127.0.0.1:{peer.getsockname()[1]}"
        done = threading.Event()

        def hang_up() -> None:
            """Closes every connection at once, read or not (a reset, or a plain close)."""
            peer.settimeout(0.1)
            deadline = time.monotonic() + 60
            while not done.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    peer.accept()[0].close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        result = jobqueue("get", MISSING_ID, "--url", url)
        done.set()
        thread.join(10)
    assert one_line_error(result, ExitCode.UNREACHABLE) == (
        f"jobqueue: {url} closed the connection or answered other than HTTP: is it the jobqueue server "
        "(not Redis, say), serving plain HTTP rather than HTTPS? set --url or JOBQUEUE_URL"
    )


# -- what the client commands print ------------------------------------------------------------


async def test_get_shows_a_view_for_people(server_url: str, store: Harness, blocking: OwnConnection) -> None:
    """A job failed for good on its second attempt of three: every row of the view."""
    job = await store.enqueue("cli-view", "héllo\nworld".encode(), options=JobOptions(max_attempts=3))
    await store.pop(blocking, "cli-view", 10)
    first = await store.claimed("cli-view", job.id, "w-cli-1", LEASE_MS)
    await store.transitions.fail(first, "ValueError: first", 0)
    await store.transitions.promote("cli-view", 10)  # the server's scheduler may do it first
    assert await store.pop(blocking, "cli-view", 10) == job.id
    second = await store.claimed("cli-view", job.id, "w-cli-2", LEASE_MS)
    await store.transitions.fail(second, "ValueError: second\n  at line 2", None)
    failed = await store.get(job.id)

    # A zone of +05:30 (POSIX TZ: the offset west of UTC): times show the local offset.
    result = jobqueue("get", job.id, "--url", server_url, env=env_with(TZ="XST-05:30"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["id", job.id]
    rows = view_rows(result.stdout)
    assert rows["status"] == "FAILED"
    assert rows["payload"] == "héllo"
    assert rows["attempts"] == "2 of 3"
    assert rows["last error"] == "(attempt 2) ValueError: second"
    assert rows["worker"] == "w-cli-2"
    assert rows["timeout"] == "the worker's default"
    assert "                 world\n" in result.stdout  # a value's further lines are indented
    assert "                   at line 2\n" in result.stdout
    for label, ms in [
        ("run at", failed.execution_time_ms),
        ("created", failed.created_at),
        ("started", failed.started_at),
        ("finished", failed.finished_at),
        ("updated", failed.updated_at),
    ]:
        when = dt.datetime.fromisoformat(rows[label])
        assert rows[label].endswith("+05:30") and int(when.timestamp() * 1000) == ms, (label, rows[label])

    as_json = jobqueue("get", job.id, "--json", "--url", server_url)
    message = json.loads(as_json.stdout)
    assert message["status"] == "JOB_STATUS_FAILED" and message["attempt"] == 2
    assert base64.b64decode(message["payload"]) == "héllo\nworld".encode()


async def test_a_payload_that_is_not_text_shows_as_base64(server_url: str, store: Harness) -> None:
    blob = bytes(range(256))
    job = await store.enqueue("cli-view", blob)
    rows = view_rows(jobqueue("get", job.id, "--url", server_url).stdout)
    assert rows["payload"] == f"(base64 of 256 bytes, not UTF-8) {base64.b64encode(blob).decode()}"
    escape = await store.enqueue("cli-view", b"\x1b[31mred")
    rows = view_rows(jobqueue("get", escape.id, "--url", server_url).stdout)
    assert rows["payload"] == "(base64 of 8 bytes, UTF-8 with control characters) G1szMW1yZWQ="
    empty = await store.enqueue("cli-view", b"")
    rows = view_rows(jobqueue("get", empty.id, "--url", server_url).stdout)
    assert (rows["payload"], rows["started"], rows["worker"]) == ("— (empty)", "—", "—")
    assert rows["attempts"] == "0 (at most: the worker's default)"


async def test_enqueue_prints_the_view_or_only_the_id(server_url: str, store: Harness) -> None:
    shown = jobqueue("enqueue", "print", "hi", "--max-attempts", "2", "--timeout", "90s", "--url", server_url)
    assert shown.returncode == 0, shown.stderr
    rows = view_rows(shown.stdout)
    assert (rows["status"], rows["payload"], rows["attempts"], rows["timeout"]) == (
        "PENDING",
        "hi",
        "0 of 2",
        "90 s",
    )
    quiet = jobqueue("enqueue", "print", "hi", "-q", "--url", server_url)
    assert quiet.returncode == 0 and (await store.get(quiet.stdout.strip())).payload == b"hi"
    assert quiet.stdout.strip() != rows["id"]


async def test_enqueue_get_cancel_round_trip(server_url: str, store: Harness) -> None:
    enqueued = jobqueue("enqueue", "print", "hello", "--in", "1h", "--url", server_url, "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    job = json.loads(enqueued.stdout)
    assert job["type"] == "print" and job["status"] == "JOB_STATUS_PENDING"
    assert int(job["executionTimeMs"]) - int(job["createdAt"]) > 3_500_000
    assert (await store.get(job["id"])).payload == b"hello"

    cancelled = jobqueue("cancel", job["id"], "--url", server_url)
    assert cancelled.returncode == 0 and cancelled.stdout == f"cancelled {job['id']}\n"
    assert view_rows(jobqueue("get", job["id"], "--url", server_url).stdout)["status"] == "CANCELLED"


async def test_enqueue_payload_from_stdin_and_file(server_url: str, store: Harness, tmp_path: Path) -> None:
    blob = bytes(range(256))
    from_stdin = jobqueue("enqueue", "blob", "--file", "-", "-q", "--url", server_url, stdin=b"from stdin")
    assert (await store.get(from_stdin.stdout.strip())).payload == b"from stdin"
    (tmp_path / "blob.bin").write_bytes(blob)
    from_file = jobqueue("enqueue", "blob", "-f", str(tmp_path / "blob.bin"), "-q", "--url", server_url)
    assert (await store.get(from_file.stdout.strip())).payload == blob


def test_enqueue_at_a_time(server_url: str) -> None:
    at = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    result = jobqueue("enqueue", "print", "--at", at.isoformat(), "--json", "--url", server_url)
    assert result.returncode == 0 and result.stderr == ""
    assert json.loads(result.stdout)["executionTimeMs"] == str(int(at.timestamp() * 1000))


async def test_a_time_in_the_past_is_accepted_with_a_warning(server_url: str, store: Harness) -> None:
    result = jobqueue("enqueue", "print", "--at", "2020-01-01T00:00:00+00:00", "-q", "--url", server_url)
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr.startswith("jobqueue: warning: --at 2020-01-01T") and "is in the past" in result.stderr
    )
    assert (await store.get(result.stdout.strip())).execution_time_ms == 1577836800000


async def test_enqueue_options_and_retry(server_url: str, store: Harness) -> None:
    args = ["enqueue", "opts", "x", "--max-attempts", "2", "--timeout", "90s", "--idempotency-key", "k1"]
    first = json.loads(jobqueue(*args, "--json", "--url", server_url).stdout)
    again = json.loads(jobqueue(*args, "--json", "--url", server_url).stdout)
    assert again["id"] == first["id"]
    assert (first["maxAttempts"], first["timeoutMs"], first["idempotencyKey"]) == (2, "90000", "k1")
    await store.cancel(first["id"])
    retried = jobqueue("retry", first["id"], "--url", server_url)
    assert retried.returncode == 0 and view_rows(retried.stdout)["status"] == "PENDING"
    refused = jobqueue("retry", first["id"], "--url", server_url)
    assert one_line_error(refused, ExitCode.REFUSED).startswith("jobqueue: failed_precondition: ")


# -- the processes ------------------------------------------------------------------------------


async def test_log_level_applies_to_a_worker(tmp_path: Path, redis_url: str, store: Harness) -> None:
    """--log-level warning: the worker runs its job and logs none of its INFO lines."""
    job = await store.enqueue("sleepy", b"0")
    env = env_with(JOBQUEUE_REDIS_URL=redis_url, JOBQUEUE_LOG_LEVEL="debug")  # the option wins
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
        [sys.executable, "-m", "jobqueue.cli", "worker", "--log-level", "warning", "tests/worker_apps.py"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await eventually(status_is(store, job.id, JobStatus.COMPLETED), timeout=30, what="the job done")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = (await asyncio.to_thread(worker.communicate, timeout=30))[0].decode()
    assert worker.returncode == 0, output
    assert " INFO " not in output and " DEBUG " not in output, output


def test_worker_with_a_bad_target_says_why() -> None:
    result = jobqueue("worker", "tests/no_such_file.py")
    assert result.returncode == 1 and "no such file" in result.stderr
    result = jobqueue("worker", "tests/worker_apps.py:nothing")
    assert result.returncode == 1 and "no attribute nothing" in result.stderr


async def test_a_worker_gets_its_settings_from_the_command_line(
    tmp_path: Path, redis_url: str, store: Harness
) -> None:
    """`--redis-url` and JOBQUEUE_PREFIX reach the module's Worker, built at import without
    settings of its own: the process's settings are passed down, not put in the environment."""
    module = tmp_path / "noop_worker.py"
    module.write_text(
        "from jobqueue.worker import Job, Worker\n"
        "async def noop(job: Job) -> None: ...\n"
        "worker = Worker('cli-settings', noop, heartbeat_s=0.2)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JOBQUEUE_REDIS_URL", "REDIS_ADDR")}
    env["JOBQUEUE_PREFIX"] = "cli-prefix"
    prefixed = Harness(store.redis, dataclasses.replace(store.settings, prefix="cli-prefix"))
    job = await prefixed.enqueue("cli-settings")
    await serve_until_completed(module, redis_url, prefixed, [job.id], env)


async def serve_until_completed(
    module: Path, redis_url: str, store: Harness, job_ids: list[str], env: dict[str, str] | None = None
) -> None:
    """Runs `jobqueue worker MODULE` until the jobs are COMPLETED, then stops it (SIGTERM):
    it must exit 0, each of its workers having completed one job."""
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
        [sys.executable, "-m", "jobqueue.cli", "worker", str(module), "--redis-url", redis_url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for job_id in job_ids:
            await eventually(status_is(store, job_id, JobStatus.COMPLETED), timeout=30, what="the job done")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = (await asyncio.to_thread(worker.communicate, timeout=30))[0].decode()
    assert worker.returncode == 0, output
    assert output.count("jobs: completed 1,") == len(job_ids), output


def test_dev_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = jobqueue("dev", env=env)
    assert result.returncode == 1
    assert "no Redis found" in result.stderr and "apt install redis-server" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dev_runs_redis_server_and_example_worker(tmp_path: Path) -> None:
    """`jobqueue dev` without --worker: its Redis (with an AOF) and the packaged print worker."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    with dev(tmp_path, "dev", ["--port", str(port), "--redis-port", "0"], env=dev_env(tmp_path)) as running:
        running.wait_serving(api)
        wait_completed(api, enqueue(api, "print", b"Hello dev!"))
        assert running.stop() == 0, running.output()
    output = running.output()
    assert "Hello dev!" in output  # logged by jobqueue/examples/print_worker.py
    data = tmp_path / "jobqueue" / "redis"
    assert any(p.name.startswith("appendonly") for p in data.iterdir()), "dev's Redis keeps an AOF"
    assert "Redis stopped" in output
