"""Keeps a client's deadline or disconnect out of the error log.

An ERROR line from the server means a bug of ours. But connectrpc raises out of
the ASGI app whenever it could not finish a response: a deadline that passed
while the response was being written (a slow reader, or a client with a
deadline of a few milliseconds), a client gone mid-stream, a send that failed
because the connection closed. Hypercorn logs each as "Error in ASGI Framework"
with chained tracebacks; h2corn as a failed request. These are the client's
doing, and the server's answer to them (closing the stream or connection) is
the same whether or not the exception reaches it, so they end with a DEBUG
line (the edge, edge.py, asks `client_abort` of every exception out of the app,
and records the exception a send raised). Anything else still propagates, and
is logged as before.
"""

from __future__ import annotations

import logging
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

log = logging.getLogger("jobqueue.server.edge")

# What connectrpc raises when the client's deadline passed or the client left
# before it could write the whole answer.
_CLIENT_CODES = frozenset({Code.CANCELED, Code.DEADLINE_EXCEEDED})


class ClientFault(Exception):
    """An error the client caused, raised by our own bounds (e.g. a client that
    does not read its response)."""


def client_abort(exc: Exception, send_error: BaseException | None) -> bool:
    """Whether `exc`, out of the app, is the client's doing: its deadline or
    disconnect, a bound of ours on a client (ClientFault), or anything caused by
    `send_error`, the exception a send to the client raised (if any)."""
    if isinstance(exc, ConnectError):
        return exc.code in _CLIENT_CODES
    if isinstance(exc, ClientFault):
        return True
    return send_error is not None and _caused_by(exc, send_error)


def _caused_by(exc: BaseException, cause: BaseException) -> bool:
    """Whether `cause` is `exc` or in its chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if current is cause:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def log_client_abort(scope: Any, exc: BaseException) -> None:
    log.debug("%s %s: response cut short by the client: %s", scope.get("method"), scope.get("path"), exc)
