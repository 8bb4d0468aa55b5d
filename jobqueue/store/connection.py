"""OwnConnection: one connection of a caller's own, which sends one command at a time.

A worker's fetcher makes a round trip per batch of jobs (pop, claim, round),
always one after the other. Through `Redis.execute_command` each of those would
take a connection from the pool and give it back, and go through redis-py's
per-command retry and observability wrappers: a visible share of a busy worker's
CPU and of an idle worker's wake-up. A connection of its own skips all of that.

It also serves the blocking pop, so it times its commands itself: each gets
`timeout_s` for its reply, and a blocking one its block time more. A hung Redis
(it accepts, never answers) so fails a call with redis' TimeoutError.

Failure handling is explicit: an error reply leaves the connection usable;
anything else (a lost connection, a cancelled call with its reply still on the
way) drops it, and the next call connects afresh. There is no retry here: the
caller decides (the fetcher backs off and starts again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript
    from redis.typing import EncodableT


class OwnConnection:
    def __init__(
        self, make_connection: Callable[[], AbstractConnection], timeout_s: float | None = None
    ) -> None:
        """`make_connection`: a new, unconnected connection without a timeout of its own
        (client.connection_factory); `timeout_s`: the longest wait for a reply (None: no limit)."""
        self._make_connection = make_connection
        self.timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._busy = False

    async def execute(self, *command: EncodableT, blocks_s: float = 0) -> Any:
        """Sends one command and returns Redis' reply as it is (no response callbacks).
        `blocks_s`: how long the command may block in Redis (BLMOVE's timeout)."""
        if self._busy:
            # Two callers at once would read each other's replies.
            raise RuntimeError("OwnConnection is for one caller at a time")
        self._busy = True
        try:
            connection = self._connection
            timeout_s = None if self.timeout_s is None else self.timeout_s + blocks_s
            try:
                async with asyncio.timeout(timeout_s):
                    if connection is None:
                        connection = self._connection = self._make_connection()
                        await connection.connect()  # type: ignore[no-untyped-call]
                    await connection.send_packed_command(
                        connection.pack_command(*command), check_health=False
                    )
                    return await connection.read_response()
            except ResponseError:
                raise
            except BaseException as exc:
                self._connection = None
                if connection is not None:
                    await connection.disconnect(nowait=True)
                if isinstance(exc, TimeoutError):  # this call's timeout (redis' own is no subclass)
                    raise RedisTimeoutError(f"no reply from Redis within {timeout_s:g} s") from None
                raise
        finally:
            self._busy = False

    async def script(
        self, script: AsyncScript, keys: Sequence[EncodableT], args: Sequence[EncodableT]
    ) -> Any:
        """Runs a registered script: EVALSHA, and EVAL once if Redis lost it (a restart)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.disconnect()
