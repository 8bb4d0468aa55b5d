"""docs/design.md stays true: its key table is the key layout of the code."""

from __future__ import annotations

import re

from jobqueue.model import Backoff, JobOptions, UniqueMode, new_job_id, partition_of_type
from jobqueue.store.codec import JOB_FIELDS, READ_FIELDS
from jobqueue.store.keys import Keyspace
from jobqueue.store.scripts import script_names

from .conftest import ROOT
from .harness import Harness

DOC = (ROOT / "docs" / "design.md").read_text()


def documented_keys() -> set[str]:
    table = DOC.split("## Keys", 1)[1].split("## States", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))


def test_key_table_matches_the_keyspace() -> None:
    keys = Keyspace("P")
    job_id = new_job_id(partition_of_type("T"))
    queue = keys.queue("T")
    actual = {
        keys.job(job_id),
        keys.types,
        keys.schedule_channel,
        keys.workers,
        keys.partitions,
        keys.partitions_covered,
        *queue.named().values(),
        queue.held("W"),
        queue.idempotency("K").rsplit(":", 1)[0] + ":SHA256",
        queue.unique("K").rsplit(":", 1)[0] + ":SHA256",
    }
    normalised = {k.replace(job_id, "ID").replace(partition_of_type("T"), "pppp") for k in actual}
    assert normalised == documented_keys()


def test_every_script_is_in_the_state_machine_table() -> None:
    for name in script_names():
        assert f"`{name}`" in DOC, f"docs/design.md does not describe {name}.lua"


async def test_job_hash_fields_are_documented(store: Harness, redis_url: str) -> None:
    """After a run that failed, with every option set, the job hash has every field there is;
    the doc lists exactly those."""
    documented = re.search(r"the job: `([^`]+)`", DOC)
    assert documented is not None
    options = JobOptions(
        max_attempts=1, timeout_ms=5, backoff=Backoff(), idempotency_key="k",
        unique_key="u", unique_mode=UniqueMode.WHILE_ACTIVE, priority=9, expires_in_ms=60_000,
    )  # fmt: skip
    job = await store.enqueue("T", b"", None, options)
    _, _, taken = await store.transitions.round("T", "w", take=1)  # a priority's job: taken, not popped
    assert taken == [job.id]
    running = await store.claimed("T", job.id, "w", 1000)
    await store.transitions.progress(running, 0.5, "half")
    await store.transitions.fail(running, "boom", None)
    fields = {f.decode() for f in await store.redis.hkeys(store.keys.job(job.id))}
    assert fields == set(documented[1].split())
    # What a claim or a read returns; `result` only a completed run writes (test_results.py).
    # `unique_lock` (its unique key's name) only the scripts that release the key read.
    assert fields == {name.decode() for name in (*JOB_FIELDS, *READ_FIELDS)} - {"result"} | {"unique_lock"}


def test_where_the_code_lives_names_every_module() -> None:
    section = DOC.split("## Where the code lives", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "jobqueue"
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] != "_gen" and path.name != "__init__.py":
            assert path.stem in section, f"docs/design.md does not place jobqueue/{relative}"
