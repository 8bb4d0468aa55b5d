"""Redis's eviction policy, checked when a server or a worker starts.

A Redis that evicts keys under memory pressure (any `maxmemory-policy` but
`noeviction`) drops jobs, queues and leases without a trace: a job acknowledged
to its producer vanishes. jobqueue refuses to start on one unless the deployment
says it accepts that (`allow_eviction`, JOBQUEUE_ALLOW_EVICTION, --allow-eviction);
with `noeviction`, a full Redis refuses writes instead, and enqueues fail loudly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

from ..outage import Outage, of
from ..supervise import REDIS_DOWN

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..settings import Settings

log = logging.getLogger("jobqueue.store")

SAFE_POLICY = "noeviction"


class EvictionPolicyRefused(ValueError):
    """Redis may evict keys, and the deployment did not allow it."""

    def __init__(self, policy: str) -> None:
        super().__init__(
            f"Redis's maxmemory-policy is {policy}: under memory pressure Redis would evict "
            f"jobqueue's keys and lose jobs. Set it to {SAFE_POLICY} (`CONFIG SET maxmemory-policy "
            f"{SAFE_POLICY}`, and `maxmemory-policy {SAFE_POLICY}` in redis.conf), or accept the risk "
            "with JOBQUEUE_ALLOW_EVICTION=1 (--allow-eviction)"
        )
        self.policy = policy


async def eviction_policy(redis: Redis) -> str | None:
    """Redis's `maxmemory-policy`: CONFIG GET, else (CONFIG disabled or renamed, as
    managed Redis services do) INFO memory's `maxmemory_policy`; None if neither tells.
    On a Redis Cluster, every master's: the first one that may evict, if any."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # the masters, from the slot map
        policies = [
            await eviction_policy(cast("Redis", _OneNode(redis, node))) for node in redis.get_primaries()
        ]
        return next(
            (p for p in policies if p is not None and p != SAFE_POLICY), policies[0] if policies else None
        )
    try:
        reply = await redis.config_get("maxmemory-policy")
        value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")  # type: ignore[call-overload]
        if value:
            return value.decode() if isinstance(value, bytes) else str(value)
    except ResponseError:
        pass  # unknown command or no permission: INFO says it too
    info = await redis.info("memory")
    value = info.get("maxmemory_policy")
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class _OneNode:
    """A cluster client's commands sent to one node (what `eviction_policy` asks)."""

    def __init__(self, cluster: RedisCluster, node: ClusterNode) -> None:
        self._cluster, self._node = cluster, node

    async def config_get(self, name: str) -> Any:
        return await self._cluster.config_get(name, target_nodes=self._node)

    async def info(self, section: str) -> Any:
        return await self._cluster.info(section, target_nodes=self._node)


async def check_eviction_policy(redis: Redis, *, allowed: bool, outage: Outage) -> None:
    """Raises EvictionPolicyRefused if Redis may evict keys, unless `allowed` (then a
    WARNING). A Redis that does not answer is not checked: the process starts, and
    waits for it as for any outage (told once, by `outage`)."""
    try:
        policy = await eviction_policy(redis)
    except REDIS_DOWN as exc:
        outage.failed(exc)
        log.debug("Redis's maxmemory-policy not checked: Redis unavailable")
        return
    if policy is None or policy == SAFE_POLICY:
        return
    if not allowed:
        raise EvictionPolicyRefused(policy)
    log.warning(
        "Redis's maxmemory-policy is %s: under memory pressure Redis may evict jobqueue's keys and "
        "lose jobs (allowed by JOBQUEUE_ALLOW_EVICTION / --allow-eviction)",
        policy,
    )


async def check_deployment(settings: Settings) -> None:
    """`check_eviction_policy` on the Redis of `settings`, over a client of its own."""
    from .client import connect  # noqa: PLC0415 - keeps this module's import light

    redis = connect(
        settings.redis_url,
        max_connections=1,
        timeout_s=settings.redis_timeout_s,
        cluster=settings.redis_cluster,
    )
    try:
        await check_eviction_policy(redis, allowed=settings.allow_eviction, outage=of(settings.redis_url))
    finally:
        await redis.aclose()
