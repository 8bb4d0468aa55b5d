"""Loads the Lua scripts of lua/ and runs them with their declared keys.

Each script's header names what it needs, once, next to its code:

    -- include: claim_popped          helpers from lua/include/ (each may include others)
    -- KEYS: popped, suspects, leases, held, ...the jobs

The loader assembles the text sent to Redis (the includes, dependencies first,
then the script) and turns the KEYS line into the script's first lines:
`local popped, suspects, leases, held = KEYS[1], ..., KEYS[4]` and
`local FIXED_KEYS = 4`, the number of named keys before the caller's own (names
starting with `...`, e.g. the keys of the jobs a call touches). A caller passes
the queue, and the job or worker where a name needs one; `Script.keys` puts them
in the declared order. Adding a key to every transition is so one name in each
header.

A script goes as EVALSHA and is re-sent with EVAL only when Redis answers
NOSCRIPT (after a restart or SCRIPT FLUSH), so its text crosses the wire once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from .cluster_connection import pipeline_on_slot_master
from .keys import QueueKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
    from redis.typing import EncodableT

    from .connection import OwnConnection

_INCLUDE = re.compile(r"^-- include: (.+)$", re.MULTILINE)
_KEYS = re.compile(r"^-- KEYS: (.+)$", re.MULTILINE)
# The names a KEYS line may use besides the queue's own keys (QueueKeys.named()).
_JOB, _HELD = "job", "held"
# SENT_WHOLE: a node that answers NOSCRIPT gets the script's text (EVAL), and keeps it.
# Not SCRIPT LOAD alone: on a Redis Cluster that goes to the masters of the client's
# slot map, which right after a failover may not name the node that answered yet (a
# replica just promoted, a restarted node made master again by a manual failover),
# and the call would fail again ("NOSCRIPT" as an internal error).


def _lua() -> Traversable:
    return resources.files(__package__).joinpath("lua")


def script_names() -> list[str]:
    """Every script in lua/ (the includes apart)."""
    return sorted(f.name.removesuffix(".lua") for f in _lua().iterdir() if f.name.endswith(".lua"))


def _includes(text: str) -> list[str]:
    found = _INCLUDE.search(text)
    return [name.strip() for name in found[1].split(",")] if found else []


def _with_includes(names: Sequence[str], done: set[str]) -> Iterator[str]:
    """The texts of `names` and what they include, each once, dependencies first."""
    for name in names:
        if name in done:
            continue
        done.add(name)
        text = _lua().joinpath("include", f"{name}.lua").read_text()
        yield from _with_includes(_includes(text), done)
        yield text


def declared_keys(text: str) -> tuple[str, ...]:
    """The named keys of a script's KEYS line (without the caller's own, `...`)."""
    found = _KEYS.search(text)
    if found is None:
        raise ValueError("a script must declare its keys (a '-- KEYS:' line)")
    names = tuple(name.strip() for name in found[1].split(","))
    return tuple(name for name in names if not name.startswith("..."))


# How many queue/worker pairs a script keeps its keys for (a worker has one per lane).
_KEYS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    keys_declared: tuple[str, ...]
    text: str  # what Redis runs
    registered: AsyncScript
    # The declared keys of a script that names no job, by (queue, worker): a busy
    # worker's round names the same ones every time.
    _kept: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def keys(
        self, queue: QueueKeys | None, *, job: str = "", worker_id: str = "", more: Sequence[str] = ()
    ) -> list[str]:
        """The declared keys in their order (`job`: the job's key; `worker_id`: whose
        `held` set), then `more`."""
        if queue is not None and not job:
            kept = self._kept.get((queue.stats, worker_id))
            if kept is None:
                if len(self._kept) >= _KEYS_KEPT:
                    self._kept.clear()
                kept = self._kept[queue.stats, worker_id] = tuple(self._keys(queue, "", worker_id))
            return [*kept, *more]
        return self._keys(queue, job, worker_id) + list(more)

    def _keys(self, queue: QueueKeys | None, job: str, worker_id: str) -> list[str]:
        keys: list[str] = []
        for name in self.keys_declared:
            if name == _JOB:
                keys.append(job)
            elif queue is None:
                raise TypeError(f"{self.name}.lua needs the queue's keys")
            elif name == _HELD:
                keys.append(queue.held(worker_id))
            else:
                keys.append(getattr(queue, name))
        return keys

    async def run(
        self, keys: Sequence[str], args: Sequence[EncodableT], via: OwnConnection | None = None
    ) -> Any:
        """Runs the script (`via`: the caller's own connection, else the pool)."""
        if via is None:
            try:
                return await self.registered(keys=keys, args=args)  # NOSCRIPT: SCRIPT LOAD, again
            except NoScriptError:
                # Still unknown to the node that runs it (SENT_WHOLE).
                return await self.registered.registered_client.eval(self.text, len(keys), *keys, *args)
        return await via.script(self.registered, keys, args)

    async def run_replicated(
        self, keys: Sequence[str], args: Sequence[EncodableT], replicas: int, timeout_ms: int
    ) -> tuple[Any, int]:
        """Runs the script, then WAIT for `replicas` replicas on the same connection (one
        pipelined round trip, and one more if Redis lost the script: SENT_WHOLE);
        returns the script's reply and how many replicas have its writes
        (replication.py)."""
        redis = self.registered.registered_client
        wait = ("WAIT", replicas, timeout_ms)
        script: tuple[EncodableT, ...] = ("EVALSHA", self.registered.sha)
        for _ in range(2):
            command = (*script, len(keys), *keys, *args)
            if isinstance(redis, RedisCluster):
                reply, acked = await pipeline_on_slot_master(redis, keys, [command, wait])
            else:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.execute_command(*command)
                    pipe.execute_command(*wait)
                    reply, acked = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
            script = ("EVAL", self.text)
        for answer in (reply, acked):
            if isinstance(answer, Exception):
                raise answer
        return reply, int(acked)

    async def run_each(
        self,
        calls: Sequence[tuple[Sequence[str], Sequence[EncodableT]]],
        first: Sequence[Sequence[EncodableT]] = (),
    ) -> list[Any]:
        """Runs the script once per (keys, args) in one pipelined round trip, as
        EVALSHA, after the commands `first` (reads: their replies come first); the text
        is sent, and the calls again, only if Redis answers NOSCRIPT (SENT_WHOLE;
        redis-py's own pipelines ask SCRIPT EXISTS first: one more round trip each)."""
        redis = self.registered.registered_client
        script: tuple[EncodableT, ...] = ("EVALSHA", self.registered.sha)
        for _ in range(2):
            async with redis.pipeline(transaction=False) as pipe:
                for command in first:
                    pipe.execute_command(*command)
                for keys, args in calls:
                    # As a command: redis-py's cluster pipeline refuses its `evalsha` method
                    # (it cannot tell the keys), not the command, which it routes by its keys.
                    pipe.execute_command(*script, len(keys), *keys, *args)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    script = ("EVAL", self.text)
        raise AssertionError("EVAL cannot answer NOSCRIPT")


@functools.cache
def assembled(name: str) -> tuple[str, tuple[str, ...]]:
    """lua/<name>.lua as Redis runs it (its includes, its key locals, then the
    script), and its declared keys."""
    text = _lua().joinpath(f"{name}.lua").read_text()
    keys = declared_keys(text)
    unknown = set(keys) - {*QueueKeys.names(), _JOB, _HELD}
    if unknown:
        raise ValueError(f"{name}.lua declares unknown keys {sorted(unknown)}")
    parts = list(_with_includes(_includes(text), set()))
    if keys:
        parts.append(f"local {', '.join(keys)} = {', '.join(f'KEYS[{i}]' for i in range(1, len(keys) + 1))}")
    parts += [f"local FIXED_KEYS = {len(keys)}", text]
    return "\n".join(parts), keys


def load(redis: Redis, *names: str) -> dict[str, Script]:
    """The scripts `names` (default: every script of lua/), registered on `redis`, by name."""
    scripts = {}
    for name in names or script_names():
        text, keys = assembled(name)
        scripts[name] = Script(name, keys, text, redis.register_script(text))
    return scripts
