"""Redis outages, told once per process: when one starts, while it lasts, when it ends.

Every part of a process that talks to Redis (the worker's loops, the reaper, the
scheduler, the API's calls) reports to the one `Outage` of its Redis URL (`of`):
`failed(exc)` when a call found Redis down or hung, and a success by

    began_in = outage.generation
    ...  # the call
    if outage.down:
        outage.back(began_in)

two attribute reads while Redis is up, so that a hot loop pays nothing for it. A
call that began before the outage did, and whose reply was read after it began,
proves nothing about Redis now: only a call begun during the outage ends it. The
first failure logs one WARNING, a failure at least `REMIND_EVERY_S` after the last
line logs a reminder, and the first success after an outage one INFO with its length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("jobqueue.redis")

REMIND_EVERY_S = 30.0


class Outage:
    """The state of one Redis as this process sees it (see the module's docstring)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = f"Redis at {redacted(url)}"
        self.down = False
        # Outages begun so far: what a call reads before it starts (see `back`).
        self.generation = 0
        self._clock = clock
        self._since = 0.0  # when the current outage was first seen
        self._told = 0.0  # when it was last logged

    def failed(self, exc: BaseException) -> None:
        """A call found Redis unavailable (`exc`: why)."""
        now = self._clock()
        if not self.down:
            self.down, self._since, self._told = True, now, now
            self.generation += 1
            log.warning("%s: unavailable (%s); retrying", self.where, _reason(exc))
        elif now - self._told >= REMIND_EVERY_S:
            self._told = now
            log.warning(
                "%s: still unavailable after %s (%s)", self.where, duration(now - self._since), _reason(exc)
            )

    def back(self, began_in: int) -> None:
        """A call that began when `generation` was `began_in` succeeded (callers check
        `down` first: see the module); only one begun during this outage ends it."""
        if self.down and began_in == self.generation:
            self.down = False
            log.info("%s: back after %s", self.where, duration(self._clock() - self._since))


_OUTAGES: dict[str, Outage] = {}


def of(url: str) -> Outage:
    """The process's one `Outage` for the Redis at `url`."""
    outage = _OUTAGES.get(url)
    if outage is None:
        outage = _OUTAGES[url] = Outage(url)
    return outage


def duration(seconds: float) -> str:
    """'0.4 s', '42 s', '1m30s', '2h05m': as precise as a person needs it."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def redacted(url: str) -> str:
    """The URL without its password, for logs: `rediss://jobqueue:***@db:6380/0`. The
    user name stays (it says which ACL user); a password in the query (redis-py takes
    `password` and `ssl_password` there too) goes as well."""
    scheme, sep, rest = url.partition("://")
    credentials = ""
    if "@" in rest:
        # Up to the last "@": a password may hold any character (an "@" in the query
        # would hide more than the password, never less).
        user, has_password, _ = rest.rsplit("@", 1)[0].partition(":")
        credentials = f"{user}:***@" if user and has_password else "***@"
        rest = rest.rsplit("@", 1)[1]
    rest, question, query = rest.partition("?")
    if question:
        query = "&".join(_redacted_pair(pair) for pair in query.split("&"))
    return f"{scheme}{sep}{credentials}{rest}{question}{query}"


def _redacted_pair(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}=***" if equals and name.lower() in ("password", "ssl_password") else pair


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:  # no retry will fix it: say what will
        reason += f"; {CERTIFICATE_HINT}"
    return reason


CERTIFICATE_HINT = (
    "Redis' certificate is not trusted: give the CA that signed it as ?ssl_ca_certs=/path/to/ca.pem "
    "in the rediss:// URL"
)
