"""The server's address, and what failing to reach it looks like to a caller."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectrpc.code import Code
from connectrpc.errors import ConnectError


def check_url(url: str) -> str:
    """The API's base URL without a trailing slash; a ValueError for one no call could use."""
    if not isinstance(url, str):
        raise TypeError(f"URL must be str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"not a URL: {url!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL must start with http:// or https://: {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    return url.rstrip("/")


def tls_options(
    url: str,
    ca_file: str | os.PathLike[str] | None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """pyqwest's TLS arguments for a transport to `url` (checked): the CAs in `ca_file`
    only, else the system's for https; with `cert_file` and `key_file`, the client's
    certificate for a server that asks for one (mutual TLS). A transport trusts no CA
    unless told to, and loading the system's costs each client milliseconds: only for
    https."""
    https = url.startswith("https://")
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")
    for given in (ca_file, cert_file):
        if given is not None and not https:
            raise ValueError(f"TLS files are for an https:// URL, not {url!r}")
    options: dict[str, Any] = {"tls_include_system_certs": https}
    if ca_file is not None:
        options = {"tls_ca_cert": _pem(ca_file, "CA file", b"-----BEGIN CERTIFICATE-----")}
    if cert_file is not None and key_file is not None:
        options["tls_cert"] = _pem(cert_file, "certificate file", b"-----BEGIN CERTIFICATE-----")
        options["tls_key"] = _pem(key_file, "key file", b"PRIVATE KEY-----")
    return options


def _pem(path: str | os.PathLike[str], what: str, marker: bytes) -> bytes:
    """The PEM file's bytes; a ValueError naming it if it cannot be read or lacks `marker`."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if marker not in pem:
        kind = "certificate" if b"CERTIFICATE" in marker else "private key"
        raise ValueError(f"{what} {os.fspath(path)!r}: no PEM {kind} in it")
    return pem


class ServerUnreachable(ConnectError):
    """No connection to the server could be made (refused, no route, unknown host...).

    Its code is UNAVAILABLE, as connectrpc gives it: the call may be retried. A
    subclass, so that a caller can tell "nothing answers at this URL" from a
    server that answered UNAVAILABLE (its Redis is down, say) without reading
    the message.
    """

    def __init__(self, url: str, cause: ConnectionError) -> None:
        super().__init__(Code.UNAVAILABLE, f"cannot reach {url}: {failure_reason(str(cause))}")
        self.url = url


def no_answer(url: str, timeout_s: float) -> ConnectError:
    """The error of a call the client gave up on: DEADLINE_EXCEEDED."""
    return ConnectError(Code.DEADLINE_EXCEEDED, f"no answer from {url} within {timeout_s:g} s")


def failure_reason(text: str) -> str:
    """What went wrong, from the HTTP library's text of a failed connection."""
    # pyqwest's text is reqwest's error chain, "...(url): client error (Connect): <the
    # reason>". The reason alone reads better; should the wording change, the
    # whole text still says what happened.
    _, found, reason = text.rpartition("(Connect): ")
    return reason if found and reason else text
