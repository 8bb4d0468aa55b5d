"""Whether a TCP port can be listened on, asked the way the servers themselves bind.

Redis, Hypercorn and h2corn all set SO_REUSEADDR before they bind. A check without
it would call a port busy while the connections of a server that just stopped sit in
TIME_WAIT, although that server could start on it again at once.
"""

from __future__ import annotations

import errno
import socket


class CannotListen(OSError):
    """An address a server cannot listen on; the message names it (no bare errno)."""

    def __str__(self) -> str:
        return str(self.strerror)


class AddressInUse(CannotListen):
    """A port some other process listens on."""


def _bind_error(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
        return None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port` now (it may be taken the moment after)."""
    return _bind_error(host, port) is None


def check_port_free(host: str, port: int, hint: str) -> None:
    """Raises AddressInUse (its message: the address, then `hint`) if `host:port` is
    taken, or CannotListen if it cannot be listened on at all (no such address...)."""
    error = _bind_error(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        raise AddressInUse(errno.EADDRINUSE, f"port {port} on {host} is in use: {hint}")
    reason = error.strerror or str(error)
    raise CannotListen(error.errno, f"cannot listen on port {port} on {host}: {reason}")
