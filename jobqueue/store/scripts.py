"""Loads the Lua scripts of lua/ (one per state transition) into a Redis client.

Each script is sent with EVALSHA and re-sent with EVAL only when Redis answers
NOSCRIPT (after a restart or SCRIPT FLUSH), so the text crosses the wire once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

NAMES = (
    "enqueue",
    "promote",
    "claim",
    "heartbeat",
    "complete",
    "fail",
    "release",
    "cancel",
    "retry",
    "expired",
    "recover",
    "forget_worker",
    "sweep_popped",
    "give_back",
)


def source(name: str) -> str:
    """The text sent to Redis: the shared prelude, then the script."""
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("_prelude.lua").read_text() + "\n" + lua.joinpath(f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Scripts:
    enqueue: AsyncScript
    promote: AsyncScript
    claim: AsyncScript
    heartbeat: AsyncScript
    complete: AsyncScript
    fail: AsyncScript
    release: AsyncScript
    cancel: AsyncScript
    retry: AsyncScript
    expired: AsyncScript
    recover: AsyncScript
    forget_worker: AsyncScript
    sweep_popped: AsyncScript
    give_back: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(**{name: redis.register_script(source(name)) for name in NAMES})
