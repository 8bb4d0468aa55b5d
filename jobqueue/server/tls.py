"""TLS for `jobqueue server`: the certificate files checked before anything listens,
then handed to Hypercorn or h2corn, each of which serves HTTPS only on the port,
HTTP/2 or HTTP/1.1 as the client's ALPN asks.

A file that is missing, unreadable, not PEM, or a key that does not match its
certificate stops the server at startup with a message naming the setting: the
servers' own errors come later (Hypercorn's at its first connection, h2corn's
from its child process) and name neither the option nor the file.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from hypercorn.config import Config

from ..settings import Settings

# What the server offers in the TLS handshake, preferred first: gRPC needs h2;
# browsers, curl and Connect clients may take either.
ALPN_PROTOCOLS = ["h2", "http/1.1"]
# How long a client may take over its TLS handshake (h2corn's default, set for
# Hypercorn too, whose default of 60 s lets an idle client hold a connection).
HANDSHAKE_TIMEOUT_S = 5.0

_CERT = "tls_cert (--tls-cert, JOBQUEUE_TLS_CERT)"
_KEY = "tls_key (--tls-key, JOBQUEUE_TLS_KEY)"
_CLIENT_CA = "tls_client_ca (--tls-client-ca, JOBQUEUE_TLS_CLIENT_CA)"


def enabled(settings: Settings) -> bool:
    return bool(settings.tls_cert)


def check(settings: Settings) -> None:
    """Loads the files as the servers will; a ValueError that names the setting
    and the file if one would fail. Nothing to do without TLS."""
    if not enabled(settings):
        return
    for what, path in ((_CERT, settings.tls_cert), (_KEY, settings.tls_key)):
        _check_readable(what, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as exc:
        raise ValueError(
            f"{_CERT} {settings.tls_cert!r} and {_KEY} {settings.tls_key!r}: not a PEM certificate "
            f"chain and its unencrypted private key ({exc.reason or exc})"
        ) from None
    if settings.tls_client_ca:
        _check_readable(_CLIENT_CA, settings.tls_client_ca)
        try:
            context.load_verify_locations(cafile=settings.tls_client_ca)
        except ssl.SSLError as exc:
            raise ValueError(
                f"{_CLIENT_CA} {settings.tls_client_ca!r}: not PEM CA certificates ({exc.reason or exc})"
            ) from None


def _check_readable(what: str, path: str) -> None:
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path!r}: {exc.strerror or exc}") from None


def configure_hypercorn(config: Config, settings: Settings) -> None:
    """TLS on `config` as `settings` ask (none: nothing changes)."""
    if not enabled(settings):
        return
    config.certfile = settings.tls_cert
    config.keyfile = settings.tls_key
    config.alpn_protocols = list(ALPN_PROTOCOLS)
    config.ssl_handshake_timeout = HANDSHAKE_TIMEOUT_S
    if settings.tls_client_ca:
        config.ca_certs = settings.tls_client_ca
        config.verify_mode = ssl.CERT_REQUIRED


def h2corn_options(settings: Settings) -> list[str]:
    """h2corn's options for TLS as `settings` ask (it offers h2 and http/1.1 by ALPN
    itself, and bounds the handshake with --timeout-handshake)."""
    if not enabled(settings):
        return []
    options = ["--certfile", settings.tls_cert, "--keyfile", settings.tls_key]
    if settings.tls_client_ca:
        options += ["--ca-certs", settings.tls_client_ca, "--cert-reqs", "required"]
    return options
