"""Producer: the small public surface for enqueueing straight into Redis, built from the
deployment's settings."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from jobqueue import JobOptions, JobStatus, Producer, Settings
from jobqueue.errors import PayloadTooLarge


async def test_a_producer_uses_the_deployments_prefix_and_limits(redis: Redis, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, prefix="tenant-a", max_payload_bytes=16, idempotency_window_s=5)
    async with Producer.connect(settings) as producer:
        job = await producer.enqueue("t", b"hello", options=JobOptions(idempotency_key="k"))
        assert await redis.exists(f"tenant-a:{{{job.id[:4]}}}:job:{job.id}")
        assert await redis.smembers("tenant-a:types") == {b"t"}
        idempotency = producer.store.keys.queue("t").idempotency("k")
        assert 0 < await redis.pttl(idempotency) <= 5_000
        with pytest.raises(PayloadTooLarge, match="limit of 16 bytes"):
            await producer.enqueue("t", b"x" * 17)
        assert await producer.cancel(job.id) is JobStatus.PENDING
        assert (await producer.retry(job.id)).status is JobStatus.PENDING
    assert not await redis.keys("jq:*")  # nothing under the default prefix


async def test_connect_reads_the_environment_as_servers_and_workers_do(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_REDIS_URL", redis_url)
    monkeypatch.setenv("JOBQUEUE_PREFIX", "from-env")
    async with Producer.connect() as producer:
        job = await producer.enqueue("t")
        assert (await producer.get(job.id)).status is JobStatus.PENDING
    assert await redis.smembers("from-env:types") == {b"t"}


def test_the_surface_is_small() -> None:
    public = {name for name in vars(Producer) if not name.startswith("_")}
    assert public == {
        "connect", "enqueue", "enqueue_many", "get", "cancel", "retry", "aclose",
        "list_jobs", "retry_jobs", "cancel_jobs", "delete_jobs",
    }  # fmt: skip
