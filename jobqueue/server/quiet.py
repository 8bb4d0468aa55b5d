"""Keeps a client's deadline or disconnect out of the error log.

An ERROR line from the server means a bug of ours. But connectrpc raises out of
the ASGI app whenever it could not finish a response: a deadline that passed
while the response was being written (a slow reader, or a client with a
deadline of a few milliseconds), a client gone mid-stream, a send that failed
because the connection closed. Hypercorn logs each as "Error in ASGI Framework"
with chained tracebacks; h2corn as a failed request. These are the client's
doing, and the server's answer to them (closing the stream or connection) is
the same whether or not the exception reaches it, so they end here with a DEBUG
line. Anything else still propagates, and is logged as before.
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


class QuietClientAborts:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send_error: BaseException | None = None

        async def tracked_send(message: Any) -> None:
            nonlocal send_error
            try:
                await send(message)
            except Exception as exc:
                send_error = exc
                raise

        try:
            await self.app(scope, receive, tracked_send)
        except ConnectError as exc:
            if exc.code not in _CLIENT_CODES:
                raise
            _debug(scope, exc)
        except ClientFault as exc:
            _debug(scope, exc)
        except Exception as exc:
            if send_error is None or not _caused_by(exc, send_error):
                raise
            _debug(scope, exc)


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


def _debug(scope: Any, exc: BaseException) -> None:
    log.debug("%s %s: response cut short by the client: %s", scope.get("method"), scope.get("path"), exc)
