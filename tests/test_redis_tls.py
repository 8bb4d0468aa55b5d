"""Redis over TLS with an ACL user: `rediss://USER:PASSWORD@host:port/0?ssl_ca_certs=CA`,
against a redis-server of the test's own that takes TLS only (`--port 0 --tls-port`)
and knows one user (the default user is off). The server, a worker and `jobqueue dev`
run jobs through it; a wrong password and an untrusted certificate are told in one
clear line, a missing CA file stops a process at startup; no password is ever logged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from jobqueue.client import SyncClient
from jobqueue.model import JobStatus
from jobqueue.outage import CERTIFICATE_HINT, redacted
from jobqueue.redis_server import RedisServer, RedisTLS, find_server_binary, free_port
from jobqueue.store.client import connect

from .conftest import ROOT, _wait_port, jobqueue_process, jobqueue_server_process, until
from .tls_certs import Certs, certs_fixture  # noqa: F401 - the `certs` fixture

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(find_server_binary() is None, reason="needs a redis-server"),
]

USER = "jobqueue"
PASSWORD = "Tls-test-pa55word"  # the test Redis's ACL user's
WRONG = "not-the-Pa55word"
# One ACL user with every right; the default user (no password) is off.
ACL = ["--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all", "--user", "default", "off"]
CALL_S = 20.0


@pytest.fixture(scope="module")
def tls_redis(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    tls = RedisTLS(cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
    server = RedisServer(tmp_path_factory.mktemp("tls-redis"), tls=tls, extra_args=ACL)
    try:
        server.start()
    except RuntimeError as exc:
        if "tls" in str(exc).lower():  # a build without TLS refuses the --tls-* options
            pytest.skip(f"this redis-server has no TLS: {exc}")
        raise
    yield server
    server.stop()


def url_of(server: RedisServer, password: str = PASSWORD) -> str:
    """The server's rediss:// URL (with its ssl_ca_certs) and the ACL user's credentials."""
    return server.url.replace("rediss://", f"rediss://{USER}:{password}@")


def assert_no_password(log: Path) -> str:
    text = log.read_text(errors="replace")
    assert PASSWORD not in text, text[-3000:]
    assert WRONG not in text, text[-3000:]
    return text


def test_server_and_worker_run_jobs_over_rediss(tls_redis: RedisServer, tmp_path: Path) -> None:
    url = url_of(tls_redis)
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    worker_args = ["worker", "jobqueue.examples.print_worker", "--redis-url", url]  # the option, not the env
    with (
        jobqueue_server_process(url, server_log) as (api, _),
        jobqueue_process(worker_args, worker_log),
        SyncClient(api, timeout_s=CALL_S) as client,
    ):
        job = client.enqueue("print", "hello over TLS")
        until(lambda: client.get(job.id).status is JobStatus.COMPLETED, "the job COMPLETED over rediss://")
        later = client.enqueue(
            "print", "scheduled", execution_time_ms=client.get(job.id).created_at + 600_000
        )
        client.cancel(later.id)
        assert client.get(later.id).status is JobStatus.CANCELLED
    shown = f"Redis rediss://{USER}:***@127.0.0.1:{tls_redis.port}/0?ssl_ca_certs="
    assert shown in assert_no_password(server_log)
    assert f"hello over TLS (attempt 1) [job {job.id} print]" in assert_no_password(worker_log)


def test_dev_runs_jobs_over_rediss_and_serves_https(
    tls_redis: RedisServer, certs: Certs, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    env = {
        "REDIS_URL": url_of(tls_redis),
        "JOBQUEUE_TLS_CERT": str(certs.server_cert),
        "JOBQUEUE_TLS_KEY": str(certs.server_key),
    }
    with jobqueue_process(["dev", "--port", str(port)], log, **env) as process:
        _wait_port(port, process)
        with SyncClient(f"https://127.0.0.1:{port}", timeout_s=CALL_S, ca_file=certs.ca) as client:
            job = client.enqueue("print", "dev over TLS")
            until(lambda: client.get(job.id).status is JobStatus.COMPLETED, "dev's job COMPLETED")
    text = assert_no_password(log)
    assert f"API: https://127.0.0.1:{port} " in text
    assert "Redis: the one REDIS_URL names" in text
    assert f"rediss://{USER}:***@127.0.0.1:{tls_redis.port}" in text


def test_a_wrong_password_is_told_in_one_clear_line(tls_redis: RedisServer, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    args = ["worker", "jobqueue.examples.print_worker", "--redis-url", url_of(tls_redis, WRONG)]
    with jobqueue_process(args, log):
        until(lambda: "AuthenticationError" in log.read_text(), "the worker's warning")
    at = f"Redis at rediss://{USER}:***@127.0.0.1:{tls_redis.port}/0?ssl_ca_certs="
    warnings = [line for line in assert_no_password(log).splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings  # told once, not at each retry
    assert at in warnings[0]
    assert warnings[0].endswith(
        ": unavailable (AuthenticationError: invalid username-password pair or user is disabled); retrying"
    )


def test_an_untrusted_certificate_is_told_with_what_to_do(tls_redis: RedisServer, tmp_path: Path) -> None:
    """Without ssl_ca_certs the system's CAs are used, which did not sign the test's."""
    without_ca = url_of(tls_redis).split("?")[0]
    log = tmp_path / "server.log"
    with jobqueue_server_process(without_ca, log) as (api, _), SyncClient(api, timeout_s=CALL_S) as client:
        with pytest.raises(ConnectError) as refused:
            client.enqueue("print", "never stored")
        assert (refused.value.code, refused.value.message) == (
            Code.UNAVAILABLE,
            "job storage is unavailable; retry later",
        )
        until(lambda: CERTIFICATE_HINT in log.read_text(), "the server's warning")
    warning = next(line for line in assert_no_password(log).splitlines() if CERTIFICATE_HINT in line)
    assert "certificate verify failed" in warning
    assert " ERROR " not in log.read_text()


def refuses_to_start(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert PASSWORD not in result.stderr
    lines = result.stderr.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "jobqueue.examples.print_worker"],
        ["server", "--host", "127.0.0.1", "--port", "0"],
        ["server", "--server", "h2corn", "--host", "127.0.0.1", "--port", "0"],
    ],
)
def test_a_missing_ca_file_stops_a_process_at_startup(
    command: list[str], tls_redis: RedisServer, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-ca.pem"
    url = f"{url_of(tls_redis).split('?')[0]}?ssl_ca_certs={missing}"
    line = refuses_to_start(*command, "--redis-url", url)
    assert line == (
        f"jobqueue {command[0]}: Redis URL rediss://{USER}:***@127.0.0.1:{tls_redis.port}/0?ssl_ca_certs="
        f"{missing}: ssl_ca_certs '{missing}': No such file or directory"
    )


async def test_connections_share_one_tls_context(tls_redis: RedisServer) -> None:
    """redis-py would load the system's CAs again for each new connection."""
    client = connect(url_of(tls_redis), max_connections=None)
    try:
        pool = client.connection_pool
        connections = [pool.make_connection() for _ in range(3)]  # type: ignore[no-untyped-call]
        for connection in connections:
            await connection.connect()
            await connection.send_command("PING")
            assert await connection.read_response() == b"PONG"
        assert len({id(connection.ssl_context.get()) for connection in connections}) == 1
        for connection in connections:
            await connection.disconnect()
    finally:
        await client.aclose()


def test_tls_options_are_checked_where_clients_are_made(certs: Certs) -> None:
    with pytest.raises(ValueError, match="ssl_ca_certs needs TLS: start the URL with rediss://"):
        connect(f"redis://127.0.0.1:1/0?ssl_ca_certs={certs.ca}")
    with pytest.raises(ValueError, match=r"ssl_ca_certs '.*client\.key': not PEM CA certificates"):
        connect(f"rediss://127.0.0.1:1/0?ssl_ca_certs={certs.client_key}")
    with pytest.raises(ValueError, match=r"ssl_certfile '/nonexistent\.pem': No such file or directory"):
        connect("rediss://127.0.0.1:1/0?ssl_certfile=/nonexistent.pem")


def test_redacted_hides_every_password() -> None:
    assert redacted("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert redacted("redis://:secret@db:6379/0") == "redis://***@db:6379/0"
    assert redacted("redis://secret@db:6379/0") == "redis://***@db:6379/0"  # redis-cli's -a, as a URL
    assert redacted("rediss://jq:p@ss:w/rd@db:6380/0?ssl_ca_certs=/ca.pem") == (
        "rediss://jq:***@db:6380/0?ssl_ca_certs=/ca.pem"
    )
    assert redacted("redis://db/0?db=1&password=x&ssl_password=y") == (
        "redis://db/0?db=1&password=***&ssl_password=***"
    )
    assert redacted("unix:///run/redis.sock?password=z") == "unix:///run/redis.sock?password=***"
