"""TLS to Redis: a rediss:// URL, its options in its query as redis-py reads them:

    rediss://jobqueue:PASSWORD@redis.internal:6380/0?ssl_ca_certs=/etc/jobqueue/redis-ca.pem

`ssl_ca_certs`: the PEM CA certificates that signed Redis' (default: the system's);
`ssl_certfile` and `ssl_keyfile`: a client certificate, for a Redis that asks for
one (tls-auth-clients yes). The user and password are an ACL user's (AUTH).

The URL rather than settings of their own: it is the one value every process
already takes (--redis-url, JOBQUEUE_REDIS_URL, REDIS_URL; the h2corn child, the
worker, dev), so TLS reaches each of them without a new option to pass along.

The files are checked as a process opens its first client: redis-py reads them
at each connection, and one missing would look like an outage, retried forever.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..outage import redacted

_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def check_tls_options(url: str) -> None:
    """A ValueError naming the option if the URL's TLS files could not be used, or if
    it gives TLS options without TLS (redis-py would refuse them at each connect)."""
    options = parse_qs(urlsplit(url).query)
    given = [name for name in options if name.startswith("ssl_")]
    if given and not url.startswith("rediss://"):
        raise ValueError(f"Redis URL {redacted(url)}: {given[0]} needs TLS: start the URL with rediss://")
    for name in _FILES:
        if name in options:
            path = options[name][0]
            try:
                Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"Redis URL {redacted(url)}: {name} {path!r}: {exc.strerror or exc}"
                ) from None
    if "ssl_ca_certs" in options:
        path = options["ssl_ca_certs"][0]
        try:
            ssl.create_default_context(cafile=path)
        except ssl.SSLError as exc:
            raise ValueError(
                f"Redis URL {redacted(url)}: ssl_ca_certs {path!r}: not PEM CA certificates "
                f"({exc.reason or exc})"
            ) from None
