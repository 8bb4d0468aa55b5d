"""The script convention (jobqueue/store/scripts.py): includes, declared keys, outcome codes."""

from __future__ import annotations

import re
from importlib import resources

from redis.asyncio import Redis

from jobqueue.store.keys import QueueKeys
from jobqueue.store.outcomes import Outcome
from jobqueue.store.scripts import assembled, declared_keys, script_names
from jobqueue.store.transitions import Transitions

LUA = resources.files("jobqueue.store").joinpath("lua")
READS = {
    "expired",
    "page",
    "queue_stats",
    "read_jobs",
    "worker_held",
}  # read-only scripts (store/inspect.py, listing.py, stats.py, registry.py), not transitions
MAINTENANCE = {"rebuild_jobs", "rebuild_counts"}  # `jobqueue rebuild` (store/rebuild.py): not transitions


def test_the_outcome_codes_are_defined_once_and_mirrored() -> None:
    lua = LUA.joinpath("include", "outcomes.lua").read_text()
    codes = dict(re.findall(r"^local (\w+) = '(\w+)'", lua, flags=re.MULTILINE))
    assert codes == {outcome.name: outcome.value for outcome in Outcome}


def test_every_transition_is_one_method_and_every_method_one_script() -> None:
    methods = {name for name in vars(Transitions) if not name.startswith("_")}
    # pop is BLMOVE: a script cannot block
    assert set(script_names()) - READS - MAINTENANCE == methods - {"pop"}


def test_each_script_declares_its_keys_and_its_includes_exist() -> None:
    valid = {*QueueKeys.names(), "job", "held"}
    for name in script_names():
        text = LUA.joinpath(f"{name}.lua").read_text()
        assert set(declared_keys(text)) <= valid, name
        for include in re.findall(r"^-- include: (.+)$", text, flags=re.MULTILINE):
            for part in include.split(","):
                assert LUA.joinpath("include", f"{part.strip()}.lua").is_file(), (name, part)


def test_declared_keys_become_the_scripts_locals() -> None:
    text, keys = assembled("release")
    assert keys == ("job", "leases", "ready", "held", "stats", "events", "prio", "expiring")
    locals_line = (
        "local job, leases, ready, held, stats, events, prio, expiring = "
        "KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]"
    )
    assert f"{locals_line}\nlocal FIXED_KEYS = 8\n" in text
    assert text.index("local function now_ms") < text.index("local job, leases")  # includes first
    assert text.count("local function now_ms") == 1  # common.lua once, though two includes need it


async def test_every_script_compiles_in_redis(redis: Redis) -> None:
    for name in script_names():
        await redis.script_load(assembled(name)[0])
