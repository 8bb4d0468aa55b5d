"""Admission by maximum depth: an enqueue over a type's limit of pending jobs is
`resource_exhausted`, its message saying the limit and the setting, and stores nothing.
Through grpcurl, Connect JSON and the Python client, on a server of the tests' own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from redis.asyncio import Redis

from jobqueue.client import Client
from jobqueue.errors import QueueFull
from jobqueue.model import EnqueueRequest
from jobqueue.producer import Producer
from jobqueue.settings import Settings
from jobqueue.store import Store

from .conftest import ROOT, jobqueue_server
from .harness import Harness
from .test_api import SERVICE, assert_clean, claim, grpcurl, grpcurl_json, post_json

pytestmark = pytest.mark.redis_targets

PREFIX = "admission"
LIMITED, UNLIMITED = "adm-small", "adm-free"


@pytest.fixture(scope="module")
def limited_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("admission") / "server.log"
    with jobqueue_server(
        redis_url, log, JOBQUEUE_PREFIX=PREFIX, JOBQUEUE_MAX_DEPTH_BY_TYPE=f"{LIMITED}=3,other=9"
    ) as url:
        yield url
    assert " ERROR " not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture
def admitted(redis: Redis, settings: Settings) -> Harness:
    """The server's keyspace, with its limits."""
    limits = ((LIMITED, 3), ("other", 9))
    return Harness(redis, dataclasses.replace(settings, prefix=PREFIX, max_depth_by_type=limits))


async def pending(store: Harness, job_type: str) -> tuple[int, int]:
    """The type's pending counter and its unfinished jobs (the `live` index)."""
    queue = store.keys.queue(job_type)
    counter = await store.redis.hget(queue.stats, "pending")
    return int(counter or 0), await store.redis.zcard(queue.live)


async def test_enqueue_over_the_limit_is_resource_exhausted_and_stores_nothing(
    admitted: Harness, limited_server: str
) -> None:
    async with Client(limited_server) as client:
        for i in range(3):
            await client.enqueue(LIMITED, str(i))
        with pytest.raises(ConnectError) as refused:
            await client.enqueue(LIMITED, "4th")
    assert refused.value.code == Code.RESOURCE_EXHAUSTED
    message = refused.value.message
    assert_clean(message)
    assert f"type '{LIMITED}' is full" in message and "limit is 3 pending jobs" in message
    assert "JOBQUEUE_MAX_DEPTH_BY_TYPE" in message
    ran = await grpcurl(limited_server, f"{SERVICE}/EnqueueJob", data={"type": LIMITED})
    assert ran.code != 0 and "ResourceExhausted" in ran.err and "limit is 3" in ran.err, ran
    reply = await post_json(limited_server, "EnqueueJob", json.dumps({"type": LIMITED}))
    assert reply.status == 429 and reply.json()["code"] == "resource_exhausted", reply
    assert await pending(admitted, LIMITED) == (3, 3)
    # Stats show the limit; a type without one has none.
    body = grpcurl_json(await grpcurl(limited_server, f"{SERVICE}/GetQueueStats", data={"type": LIMITED}))
    assert body["queues"][0]["maxDepth"] == "3" and body["queues"][0]["pending"] == "3"


async def test_enqueue_jobs_over_the_limit_stores_none_of_them(
    admitted: Harness, limited_server: str
) -> None:
    async with Client(limited_server) as client:
        await client.enqueue_many([EnqueueRequest(LIMITED, "a"), EnqueueRequest(LIMITED, "b")])
        with pytest.raises(ConnectError) as refused:
            # Two more of the limited type (one would fit), with jobs of a type without a limit.
            await client.enqueue_many([
                EnqueueRequest(UNLIMITED, "x"), EnqueueRequest(LIMITED, "c"), EnqueueRequest(LIMITED, "d"),
            ])  # fmt: skip
        assert refused.value.code == Code.RESOURCE_EXHAUSTED
        assert "limit is 3 pending jobs" in refused.value.message
        assert "it holds 2, and the call would add 2" in refused.value.message
        assert await pending(admitted, LIMITED) == (2, 2)
        assert await pending(admitted, UNLIMITED) == (0, 0)
        [job] = await client.enqueue_many([EnqueueRequest(LIMITED, "c")])  # one fits
        assert job.type == LIMITED
        # No limit: any number.
        await client.enqueue_many([EnqueueRequest(UNLIMITED, str(i)) for i in range(20)])
    assert await pending(admitted, LIMITED) == (3, 3)
    assert await pending(admitted, UNLIMITED) == (20, 20)


async def test_a_running_job_frees_room(admitted: Harness, limited_server: str) -> None:
    jobs = [await admitted.enqueue(LIMITED, str(i)) for i in range(3)]
    with pytest.raises(QueueFull):
        await admitted.enqueue(LIMITED, "over")
    await claim(admitted, "", LIMITED, jobs[0].id)  # the oldest: RUNNING, no longer pending
    async with Client(limited_server) as client:
        await client.enqueue(LIMITED, "fits")
    assert await pending(admitted, LIMITED) == (3, 4)


async def test_concurrent_enqueues_never_overshoot(redis: Redis, settings: Settings) -> None:
    """Calls coalesced into one script call, and calls racing: exactly the limit gets in,
    each refused call gets its own error, with JOBQUEUE_MAX_DEPTH named."""
    store = Store(redis, dataclasses.replace(settings, prefix="adm-race", max_depth=5))
    producer = Producer(store)
    results = await asyncio.gather(
        *(producer.enqueue("race", str(i)) for i in range(12)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 7 and all(isinstance(r, QueueFull) for r in refused), results
    assert "limit is 5 pending jobs (JOBQUEUE_MAX_DEPTH)" in str(refused[0])
    assert int(await redis.hget(store.keys.queue("race").stats, "pending") or 0) == 5
    assert await redis.zcard(store.keys.queue("race").live) == 5


# -- the settings --------------------------------------------------------------------------


def test_the_limits_are_read_from_the_environment_and_written_back() -> None:
    env = {"JOBQUEUE_MAX_DEPTH": "100", "JOBQUEUE_MAX_DEPTH_BY_TYPE": " email=1000, report=50 "}
    settings = Settings.from_env(env)
    assert settings.max_depth_by_type == (("email", 1000), ("report", 50))
    assert (settings.max_depth_of("email"), settings.max_depth_of("x")) == (1000, 100)
    assert settings.max_depth_setting("email") == "JOBQUEUE_MAX_DEPTH_BY_TYPE"
    assert settings.max_depth_setting("x") == "JOBQUEUE_MAX_DEPTH"
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings(max_depth_by_type={"email": 3}).max_depth_of("email") == 3  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"JOBQUEUE_MAX_DEPTH": "-1"}, "JOBQUEUE_MAX_DEPTH) must be >= 0"),
        ({"JOBQUEUE_MAX_DEPTH": "many"}, "JOBQUEUE_MAX_DEPTH='many' is not a number"),
        ({"JOBQUEUE_MAX_DEPTH_BY_TYPE": "email"}, "JOBQUEUE_MAX_DEPTH_BY_TYPE: 'email' is not TYPE=N"),
        ({"JOBQUEUE_MAX_DEPTH_BY_TYPE": "email=-3"}, "JOBQUEUE_MAX_DEPTH_BY_TYPE: 'email=-3' is not TYPE=N"),
        ({"JOBQUEUE_MAX_DEPTH_BY_TYPE": "a b=3"}, "JOBQUEUE_MAX_DEPTH_BY_TYPE): a b=3 is not a job type"),
    ],
)
def test_bad_limits_are_refused_naming_the_variable(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env(env)
    assert complaint in str(refused.value)


def test_server_refuses_to_start_with_a_bad_limit(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "server", "--port", "0"],
        env={**os.environ, "JOBQUEUE_REDIS_URL": redis_url, "JOBQUEUE_MAX_DEPTH_BY_TYPE": "email"},
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr == (
        "jobqueue server: JOBQUEUE_MAX_DEPTH_BY_TYPE: 'email' is not TYPE=N (e.g. email=1000,report=50)\n"
    )
