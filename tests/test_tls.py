"""The server over TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`), under Hypercorn
and h2corn, reached by real clients that trust the test CA: grpcurl and grpcio (gRPC
over HTTP/2), curl (HTTP/2 chosen by ALPN, and HTTP/1.1 with Connect JSON), the
Python client and the CLI. A client without the CA is refused at once with a
certificate error; a bad certificate file stops the server before it listens."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from jobqueue._gen.mpataki.jobqueue.v1 import jobqueue_pb as pb
from jobqueue.cli import ExitCode
from jobqueue.client import Client, SyncClient
from jobqueue.client.endpoint import ServerUnreachable
from jobqueue.model import JobStatus

from .conftest import ROOT, jobqueue_server_process
from .test_api import SERVICE, tool
from .test_cli import jobqueue, one_line_error
from .tls_certs import Certs, certs_fixture  # noqa: F401 - the `certs` fixture

pytestmark = pytest.mark.timeout(300)

# Ample on a loaded machine; a client that hung on a refused certificate would take it all.
CALL_S = 20.0


KINDS = ["hypercorn", "h2corn"]


def tls_server(
    request: pytest.FixtureRequest, redis_url: str, certs: Certs, folders: pytest.TempPathFactory, **env: str
) -> Iterator[str]:
    """`jobqueue server` of the kind `request` gives, with the test's server certificate,
    and `env`: its https:// URL. It may log no ERROR, refused handshakes included."""
    kind: str = request.param
    name = f"{request.fixturename}-{kind}"
    log = folders.mktemp(name) / "server.log"
    env |= {"JOBQUEUE_TLS_CERT": str(certs.server_cert), "JOBQUEUE_TLS_KEY": str(certs.server_key)}
    with jobqueue_server_process(redis_url, log, server=kind, JOBQUEUE_PREFIX=name, **env) as (url, process):
        yield url.replace("http://", "https://")
        assert process.poll() is None, f"the {kind} server died; log:\n{log.read_text()[-3000:]}"
    assert " ERROR " not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module", params=KINDS)
def tls_url(
    request: pytest.FixtureRequest, redis_url: str, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A `jobqueue server --tls-cert --tls-key` of each kind."""
    yield from tls_server(request, redis_url, certs, tmp_path_factory)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env=dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost"),
    )  # fmt: skip


def authority(url: str) -> str:
    return url.removeprefix("https://")


# -- gRPC over HTTP/2 + TLS ------------------------------------------------------------------


def test_grpcurl_with_the_ca(tls_url: str, certs: Certs) -> None:
    grpcurl = (tool("grpcurl"), "-cacert", str(certs.ca), "-max-time", "20")
    listed = run(*grpcurl, authority(tls_url), "list")
    assert listed.returncode == 0, listed
    assert SERVICE in listed.stdout.split()
    payload = base64.b64encode(b"over grpcurl").decode()
    enqueued = run(*grpcurl, "-d", json.dumps({"type": "tls", "payload": payload}), authority(tls_url),
                   f"{SERVICE}/EnqueueJob")  # fmt: skip
    assert enqueued.returncode == 0, enqueued
    job = json.loads(enqueued.stdout)["job"]
    got = run(*grpcurl, "-d", json.dumps({"id": job["id"]}), authority(tls_url), f"{SERVICE}/GetJob")
    assert got.returncode == 0, got
    assert json.loads(got.stdout)["job"]["payload"] == payload
    # By the name the certificate also holds, as a client configured with a host name would.
    by_name = run(*grpcurl, authority(tls_url).replace("127.0.0.1", "localhost"), "list")
    assert by_name.returncode == 0, by_name


def test_grpcio_with_ssl_channel_credentials(tls_url: str, certs: Certs) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    with grpc.secure_channel(authority(tls_url), credentials) as channel:
        enqueue = channel.unary_unary(
            f"/{SERVICE}/EnqueueJob",
            request_serializer=pb.EnqueueJobRequest.to_binary,
            response_deserializer=pb.EnqueueJobResponse.from_binary,
        )
        reply = enqueue(pb.EnqueueJobRequest(type="tls", payload=b"over grpcio"), timeout=CALL_S)
    assert reply.job is not None
    assert (reply.job.type, reply.job.payload) == ("tls", b"over grpcio")


# -- curl: HTTP/2 by ALPN, HTTP/1.1 with Connect JSON ---------------------------------------


def curl_connect(url: str, certs: Certs, method: str, body: dict[str, object], *options: str) -> list[str]:
    """A Connect JSON call with curl; returns [HTTP version, ALPN line, status, body]."""
    ran = run(
        tool("curl"), "-sS", "-v", "--max-time", "20", "--cacert", str(certs.ca), *options,
        "-H", "Content-Type: application/json", "-d", json.dumps(body),
        "-w", "\n%{http_version} %{http_code}", f"{url}/{SERVICE}/{method}",
    )  # fmt: skip
    assert ran.returncode == 0, ran
    reply, _, version_and_status = ran.stdout.rpartition("\n")
    alpn = [line for line in ran.stderr.splitlines() if "ALPN" in line and "accepted" in line]
    return [*version_and_status.split(), "\n".join(alpn), reply]


def test_curl_http2_is_chosen_by_alpn(tls_url: str, certs: Certs) -> None:
    version, status, alpn, reply = curl_connect(tls_url, certs, "GetQueueStats", {}, "--http2")
    assert (version, status) == ("2", "200")
    assert "h2" in alpn, alpn  # curl: "ALPN: server accepted h2"
    assert "total" in json.loads(reply)


def test_curl_http1_connect_json(tls_url: str, certs: Certs) -> None:
    payload = base64.b64encode(b"over HTTP/1.1").decode()
    version, status, alpn, reply = curl_connect(
        tls_url, certs, "EnqueueJob", {"type": "tls", "payload": payload}, "--http1.1"
    )
    assert (version, status) == ("1.1", "200")
    assert "http/1.1" in alpn, alpn
    assert json.loads(reply)["job"]["payload"] == payload


def test_the_dashboard_page_over_https(tls_url: str, certs: Certs) -> None:
    """The browser's way in: the page at / over HTTP/2 and TLS (its calls are Connect's, above)."""
    ran = run(tool("curl"), "-sS", "--max-time", "20", "--cacert", str(certs.ca), "--http2",
              "-w", "\n%{http_version} %{http_code} %{content_type}", f"{tls_url}/")  # fmt: skip
    assert ran.returncode == 0, ran
    page, _, outcome = ran.stdout.rpartition("\n")
    assert outcome == "2 200 text/html; charset=utf-8", outcome
    assert "<html" in page.lower()


# -- the Python client and the CLI ---------------------------------------------------------


def test_sync_client_with_the_ca_file(tls_url: str, certs: Certs) -> None:
    with SyncClient(tls_url, timeout_s=CALL_S, ca_file=certs.ca) as client:
        job = client.enqueue("tls", b"over the sync client")
        assert client.get(job.id).payload == b"over the sync client"
        client.cancel(job.id)
        with client.watch_job(job.id) as events:  # a server stream over TLS too
            assert next(iter(events)).status is JobStatus.CANCELLED


async def test_async_client_with_the_ca_file(tls_url: str, certs: Certs) -> None:
    async with Client(tls_url, timeout_s=CALL_S, ca_file=str(certs.ca)) as client:
        job = await client.enqueue("tls", "over the async client")
        assert (await client.get(job.id)).payload == b"over the async client"


def test_cli_with_ca_file_option_and_variable(tls_url: str, certs: Certs) -> None:
    enqueued = jobqueue("enqueue", "tls", "over the CLI", "-q", "--url", tls_url, "--ca-file", str(certs.ca))
    assert enqueued.returncode == 0, enqueued
    job_id = enqueued.stdout.strip()
    env = dict(os.environ, JOBQUEUE_URL=tls_url, JOBQUEUE_CA_FILE=str(certs.ca))
    got = jobqueue("get", job_id, "--json", env=env)
    assert got.returncode == 0, got
    assert json.loads(got.stdout)["id"] == job_id


# -- clients that do not trust the server's certificate -------------------------------------


def test_clients_without_the_ca_are_refused_at_once(tls_url: str, certs: Certs) -> None:
    curl = run(tool("curl"), "-sS", "--max-time", "20", "-d", "{}", "-H", "Content-Type: application/json",
               f"{tls_url}/{SERVICE}/GetQueueStats")  # fmt: skip
    assert curl.returncode == 60, curl  # curl: peer certificate cannot be authenticated
    grpcurl = run(tool("grpcurl"), "-max-time", "20", authority(tls_url), "list")
    assert grpcurl.returncode != 0
    assert "certificate signed by unknown authority" in grpcurl.stderr, grpcurl

    started = time.monotonic()
    for ca_file in (None, certs.other_ca):  # the system's CAs; another CA
        with (
            SyncClient(tls_url, timeout_s=CALL_S, ca_file=ca_file) as client,
            pytest.raises(ServerUnreachable) as refused,
        ):
            client.stats()
        assert refused.value.code is Code.UNAVAILABLE
        assert "invalid peer certificate: UnknownIssuer" in refused.value.message, refused.value
    assert time.monotonic() - started < CALL_S  # refused, not timed out

    cli = jobqueue("stats", "--url", tls_url, "--ca-file", str(certs.other_ca))
    assert one_line_error(cli, ExitCode.UNREACHABLE) == (
        f"jobqueue: the jobqueue server at {tls_url} presented a certificate this client does not trust "
        "(invalid peer certificate: UnknownIssuer): if a private CA signed it, give that CA's "
        "certificate with --ca-file (or JOBQUEUE_CA_FILE)"
    )


def test_plain_http_to_a_tls_server_says_so(tls_url: str) -> None:
    plain = tls_url.replace("https://", "http://")
    result = jobqueue("stats", "--url", plain)
    assert one_line_error(result, ExitCode.UNREACHABLE).endswith(
        "serving plain HTTP rather than HTTPS? set --url or JOBQUEUE_URL"
    )


def test_ca_file_mistakes_are_named(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=rf"CA file '{missing}': No such file or directory"):
        SyncClient("https://127.0.0.1:1", ca_file=missing)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match=rf"CA file '{not_pem}': no PEM certificate in it"):
        SyncClient("https://127.0.0.1:1", ca_file=not_pem)
    with pytest.raises(ValueError, match=r"TLS files are for an https:// URL, not 'http://127\.0\.0\.1:1'"):
        SyncClient("http://127.0.0.1:1", ca_file=certs.ca)
    given = jobqueue("stats", "--url", "http://127.0.0.1:1", "--ca-file", str(certs.ca))
    assert one_line_error(given, ExitCode.USAGE) == (
        "jobqueue: --ca-file is for an https:// URL, not http://127.0.0.1:1"
    )
    cli_missing = jobqueue("stats", "--url", "https://127.0.0.1:1", "--ca-file", str(missing))
    assert (cli_missing.returncode, cli_missing.stderr) == (
        ExitCode.FAILED,
        f"jobqueue stats: CA file '{missing}': No such file or directory\n",
    )


def test_a_client_that_never_starts_its_handshake_is_dropped(tls_url: str) -> None:
    """Its connection is closed after the handshake timeout (5 s), not held for Hypercorn's 60 s."""
    host, port = authority(tls_url).split(":")
    with socket.create_connection((host, int(port)), timeout=30) as idle:
        started = time.monotonic()
        assert idle.recv(1) == b""  # closed by the server; a timeout here raises instead
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("kind", KINDS)
def test_a_client_idle_after_its_handshake_does_not_hold_the_shutdown(
    kind: str, redis_url: str, certs: Certs, tmp_path: Path
) -> None:
    """It never answers the server's close_notify: Hypercorn would wait 30 s for it (and
    then log an ERROR); the server stops within its shutdown grace (5 s) and a bit."""
    log = tmp_path / "server.log"
    env = {"JOBQUEUE_TLS_CERT": str(certs.server_cert), "JOBQUEUE_TLS_KEY": str(certs.server_key)}
    with jobqueue_server_process(redis_url, log, server=kind, **env) as (url, process):
        context = ssl.create_default_context(cafile=certs.ca)
        host, port = authority(url.replace("http://", "https://")).split(":")
        with context.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host):
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0, log.read_text()[-3000:]
    assert " ERROR " not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module", params=KINDS)
def auth_tls_url(
    request: pytest.FixtureRequest,
    redis_url: str,
    certs: Certs,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """A TLS server with auth on: its URL and a reader's token."""
    made = jobqueue("token", "new", "--role", "reader", "--json")
    assert made.returncode == 0, made
    token = json.loads(made.stdout)
    tokens = tmp_path_factory.mktemp("auth-tls") / "tokens"
    tokens.write_text(token["line"] + "\n")
    env = {"JOBQUEUE_AUTH_TOKENS_FILE": str(tokens)}
    for url in tls_server(request, redis_url, certs, tmp_path_factory, **env):
        yield url, token["token"]


def test_bearer_tokens_over_tls(auth_tls_url: tuple[str, str], certs: Certs) -> None:
    """The token and the CA go together, in the Python client and in the CLI."""
    url, token = auth_tls_url
    with SyncClient(url, timeout_s=CALL_S, ca_file=certs.ca, token=token) as client:
        assert client.who_am_i().role == "reader"
    ran = jobqueue("whoami", "--json", "--url", url, "--ca-file", str(certs.ca), "--token", token)
    assert ran.returncode == 0, ran
    assert json.loads(ran.stdout)["role"] == "reader"
    refused = jobqueue("stats", "--url", url, "--ca-file", str(certs.ca))
    assert one_line_error(refused, ExitCode.REFUSED).startswith("jobqueue: unauthenticated: ")


# -- mutual TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def mtls_url(
    request: pytest.FixtureRequest, redis_url: str, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server that also requires a client certificate the test CA signed."""
    yield from tls_server(request, redis_url, certs, tmp_path_factory, JOBQUEUE_TLS_CLIENT_CA=str(certs.ca))


def test_client_certificate_required_by_tls_client_ca(mtls_url: str, certs: Certs) -> None:
    identity = ("--cert", str(certs.client_cert), "--key", str(certs.client_key))
    version, status, _, _ = curl_connect(mtls_url, certs, "GetQueueStats", {}, "--http2", *identity)
    assert (version, status) == ("2", "200")
    grpcurl = (tool("grpcurl"), "-cacert", str(certs.ca), "-max-time", "20")
    with_identity = run(*grpcurl, "-cert", str(certs.client_cert), "-key", str(certs.client_key),
                        authority(mtls_url), "list")  # fmt: skip
    assert with_identity.returncode == 0, with_identity
    without = run(*grpcurl, authority(mtls_url), "list")
    # Refused in the handshake; the text depends on when the server's alert arrives.
    assert without.returncode != 0
    assert "Failed to dial target host" in without.stderr, without
    curl = run(tool("curl"), "-sS", "--max-time", "20", "--cacert", str(certs.ca), "-d", "{}",
               "-H", "Content-Type: application/json", f"{mtls_url}/{SERVICE}/GetQueueStats")  # fmt: skip
    # The handshake fails (curl's code depends on when it notices: 16, 35, 55, 56), not a timeout (28).
    assert curl.returncode not in (0, 28), curl


def test_the_python_client_and_the_cli_present_a_client_certificate(mtls_url: str, certs: Certs) -> None:
    identity = {"cert_file": certs.client_cert, "key_file": certs.client_key}
    with SyncClient(mtls_url, timeout_s=CALL_S, ca_file=certs.ca, **identity) as client:
        job = client.enqueue("mtls", b"with a client certificate")
        assert client.get(job.id).payload == b"with a client certificate"
    with SyncClient(mtls_url, timeout_s=CALL_S, ca_file=certs.ca) as client, pytest.raises(ConnectError):
        client.get(job.id)  # refused in the handshake
    options = ("--url", mtls_url, "--ca-file", str(certs.ca))
    got = jobqueue("get", job.id, "--json", *options, "--cert-file", str(certs.client_cert),
                   "--key-file", str(certs.client_key))  # fmt: skip
    assert got.returncode == 0, got
    assert json.loads(got.stdout)["id"] == job.id
    env = dict(os.environ, JOBQUEUE_CERT_FILE=str(certs.client_cert), JOBQUEUE_KEY_FILE=str(certs.client_key))
    assert jobqueue("get", job.id, *options, env=env).returncode == 0
    assert jobqueue("get", job.id, *options).returncode == ExitCode.UNREACHABLE
    alone = jobqueue("get", job.id, *options, "--cert-file", str(certs.client_cert))
    assert one_line_error(alone, ExitCode.USAGE) == (
        "jobqueue: a client certificate needs both --cert-file and --key-file"
    )
    with pytest.raises(ValueError, match="a client certificate needs both cert_file and key_file"):
        SyncClient(mtls_url, cert_file=certs.client_cert)
    with pytest.raises(ValueError, match=rf"key file '{certs.client_cert}': no PEM private key in it"):
        SyncClient(mtls_url, cert_file=certs.client_cert, key_file=certs.client_cert)


# -- startup errors ------------------------------------------------------------------------


def server_refuses(*args: str, env: dict[str, str] | None = None) -> str:
    """The one line `jobqueue server ARGS` prints as it refuses to start (exit 1)."""
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "server", "--host", "127.0.0.1", "--port", "1", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    assert result.returncode == ExitCode.FAILED, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_certificate_files_stop_the_server(kind: str, certs: Certs, tmp_path: Path) -> None:
    cert, key = str(certs.server_cert), str(certs.server_key)
    missing = str(tmp_path / "missing.pem")
    server = ("--server", kind)
    assert server_refuses(*server, "--tls-cert", missing, "--tls-key", key) == (
        f"jobqueue server: tls_cert (--tls-cert, JOBQUEUE_TLS_CERT) '{missing}': No such file or directory"
    )
    assert server_refuses(*server, "--tls-cert", cert, "--tls-key", missing) == (
        f"jobqueue server: tls_key (--tls-key, JOBQUEUE_TLS_KEY) '{missing}': No such file or directory"
    )
    # The client's key with the server's certificate: they do not match.
    mismatched = server_refuses(*server, "--tls-cert", cert, "--tls-key", str(certs.client_key))
    assert mismatched.startswith(
        f"jobqueue server: tls_cert (--tls-cert, JOBQUEUE_TLS_CERT) '{cert}' and tls_key (--tls-key, "
        f"JOBQUEUE_TLS_KEY) '{certs.client_key}': not a PEM certificate chain and its unencrypted "
        "private key (KEY_VALUES_MISMATCH)"
    ), mismatched
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert "not a PEM certificate chain" in server_refuses(
        *server, "--tls-cert", str(garbage), "--tls-key", key
    )
    assert server_refuses(*server, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", str(garbage)) == (
        f"jobqueue server: tls_client_ca (--tls-client-ca, JOBQUEUE_TLS_CLIENT_CA) '{garbage}': not PEM CA "
        "certificates (NO_CERTIFICATE_OR_CRL_FOUND)"
    )
    assert server_refuses(*server, env={"JOBQUEUE_TLS_CERT": cert}) == (
        "jobqueue server: tls_cert (JOBQUEUE_TLS_CERT, --tls-cert) and tls_key (JOBQUEUE_TLS_KEY, "
        "--tls-key) go together: give both for TLS, or neither"
    )
    assert server_refuses(*server, "--tls-client-ca", str(certs.ca)) == (
        "jobqueue server: tls_client_ca (JOBQUEUE_TLS_CLIENT_CA, --tls-client-ca) needs TLS: give "
        "--tls-cert and --tls-key too"
    )


def test_a_refused_call_over_tls_keeps_its_code(tls_url: str, certs: Certs) -> None:
    """TLS changes nothing above it: a refusal still comes back with its code."""
    with (
        SyncClient(tls_url, timeout_s=CALL_S, ca_file=certs.ca) as client,
        pytest.raises(ConnectError) as refused,
    ):
        client.get("00000000-0000-4000-8000-000000000000")
    assert refused.value.code is Code.NOT_FOUND
