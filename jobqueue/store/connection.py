"""OwnConnection: one connection of a caller's own, which sends one command at a time.

A worker's fetcher makes a round trip per batch of jobs (pop, claim, round),
always one after the other. Through `Redis.execute_command` each of those would
take a connection from the pool and give it back, and go through redis-py's
per-command retry and observability wrappers: a visible share of a busy worker's
CPU and of an idle worker's wake-up. A connection of its own skips all of that.

It also serves the blocking pop, so it times its commands itself: each gets
`timeout_s` for its reply, and a blocking one its block time more. A hung Redis
(it accepts, never answers) so fails a call with redis' TimeoutError. One timer
watches the calls, looking at the one in flight at most once per timeout: a timer
per call (asyncio.timeout) costs a busy worker CPU on every round.

Failure handling is explicit: an error reply leaves the connection usable;
anything else (a lost connection, a cancelled call with its reply still on the
way) drops it, and the next call connects afresh. There is no retry here: the
caller decides (the fetcher backs off and starts again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript
    from redis.typing import EncodableT


class Unblocked(RedisConnectionError):
    """A blocking command (BLMOVE, XREAD BLOCK) ended by Redis itself because its node
    stopped being a master (a failover: "UNBLOCKED ... master -> replica"): the node no
    longer serves the key, as if the connection were lost (supervise.REDIS_DOWN)."""


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
        self._deadline: float | None = None  # the call in flight's (loop time), if timed
        self._watch: asyncio.TimerHandle | None = None
        self._timed_out = False

    async def execute(self, *command: EncodableT, blocks_s: float = 0) -> Any:
        """Sends one command and returns Redis' reply as it is (no response callbacks).
        `blocks_s`: how long the command may block in Redis (BLMOVE's timeout)."""
        if self._busy:
            # Two callers at once would read each other's replies.
            raise RuntimeError("OwnConnection is for one caller at a time")
        self._busy = True
        limit_s = None if self.timeout_s is None else self.timeout_s + blocks_s
        if limit_s is not None:
            self._time(limit_s)
        try:
            connection = self._connection
            try:
                if connection is None:
                    connection = self._connection = self._make_connection()
                    await connection.connect()  # type: ignore[no-untyped-call]
                await connection.send_packed_command(connection.pack_command(*command), check_health=False)
                reply = await connection.read_response()
            except ResponseError as error:
                if self._timed_out:  # the watch closed the connection as the reply came
                    await self._drop(connection)
                if str(error).startswith("UNBLOCKED"):
                    raise Unblocked(str(error)) from error
                raise
            except BaseException:
                await self._drop(connection)
                if self._timed_out:
                    raise RedisTimeoutError(f"no reply from Redis within {limit_s:g} s") from None
                raise
            if self._timed_out:  # as above: the reply stands, the connection does not
                await self._drop(connection)
            return reply
        finally:
            self._deadline = None
            self._busy = False

    async def _drop(self, connection: AbstractConnection | None) -> None:
        self._connection = None
        if connection is not None:
            await connection.disconnect(nowait=True)

    def _time(self, seconds: float) -> None:
        """Sets the deadline of the call starting now; the watch is moved only if it
        would look too late (after a blocking pop, whose deadline was later)."""
        self._timed_out = False
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + seconds
        watch = self._watch
        if watch is None or watch.when() > deadline:
            if watch is not None:
                watch.cancel()
            self._watch = loop.call_at(deadline, self._look)

    def _look(self) -> None:
        """The watch: drops the connection of a call past its deadline (its read then
        fails, and `execute` raises a TimeoutError), else looks again at its deadline."""
        self._watch = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            self._watch = loop.call_at(deadline, self._look)
            return
        self._timed_out = True
        # redis-py drops a connection only by a coroutine; its transport closes now.
        writer = getattr(self._connection, "_writer", None)
        if writer is not None:
            writer.transport.abort()

    async def script(
        self, script: AsyncScript, keys: Sequence[EncodableT], args: Sequence[EncodableT]
    ) -> Any:
        """Runs a registered script: EVALSHA, and EVAL once if Redis lost it (a restart)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.disconnect()
