"""redis+sentinel:// URLs: a Redis whose master Sentinel finds, named by its sentinels
and the master's name:

    redis+sentinel://[[USER]:PASSWORD@]HOST1[:PORT1],HOST2[:PORT2],.../MASTER_NAME[/DB][?OPTIONS]
    rediss+sentinel://...  (TLS to the master and to the sentinels)

The form of the `redis-sentinel-url` package and of several other clients (Celery's
`sentinel://` lists one URL per sentinel instead). A port left out is Sentinel's
26379. USER and PASSWORD are the master's (AUTH), like a redis:// URL's; sentinels
that want a password of their own take `sentinel_password` (and `sentinel_username`)
in the query. The other query options are redis-py's, as in a redis(s):// URL (TLS:
`ssl_ca_certs`...), and apply to the sentinels too.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ..outage import redacted

SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
SENTINEL_PORT = 26379


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    # The master's connection options as a redis(s):// URL (credentials, db, query),
    # its host a placeholder: the sentinels say where the master is.
    master_url: str
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0] in SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """A ValueError naming the part if `url` is not a sentinel URL of the form above."""
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES:
        raise ValueError(f"Redis URL {redacted(url)}: not a {' or '.join(f'{s}://' for s in SCHEMES)} URL")
    parts = urlsplit(f"{SCHEMES[scheme]}://{rest}")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = tuple(_address(url, host) for host in hosts.split(","))
    path = [unquote(segment) for segment in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise ValueError(f"Redis URL {redacted(url)}: the master's name is missing (…/MASTER_NAME[/DB])")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"Redis URL {redacted(url)}: the path must be /MASTER_NAME or /MASTER_NAME/DB")
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {name: value for name, value in query if name in ("sentinel_username", "sentinel_password")}
    master_query = urlencode([(name, value) for name, value in query if name not in own])
    credentials = parts.netloc.rpartition("@")[0]
    master_url = (
        f"{SCHEMES[scheme]}://{credentials + '@' if credentials else ''}{sentinels[0][0]}"
        f"/{path[1] if len(path) == 2 else 0}{'?' + master_query if master_query else ''}"
    )
    return SentinelURL(
        sentinels, path[0], master_url, own.get("sentinel_username"), own.get("sentinel_password")
    )


def _address(url: str, host: str) -> tuple[str, int]:
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name, port = host, str(SENTINEL_PORT)
    name = name.strip("[]")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"Redis URL {redacted(url)}: sentinel {host!r} is not HOST or HOST:PORT "
            "(sentinels are separated by commas)"
        )
    return name, int(port)
