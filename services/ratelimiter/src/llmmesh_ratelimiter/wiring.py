"""Builds the ratelimiter's servicer and what the server must watch, close and reload for it."""

from __future__ import annotations

from typing import Any

from llmmesh.runtime.wiring import Wiring
from llmmesh_ratelimiter.admission import Admission
from llmmesh_ratelimiter.backend import LimiterBackend
from llmmesh_ratelimiter.memory_backend import MemoryBackend
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import load_rate_policy
from llmmesh_ratelimiter.redis_backend import RedisBackend, connect_redis
from llmmesh_ratelimiter.servicer import RateLimitServicer
from llmmesh_ratelimiter.settings import RatelimiterSettings


def build_backend(settings: RatelimiterSettings) -> LimiterBackend:
    """Redis when a URL is set (shared by every replica); otherwise this process's memory."""
    if not settings.redis_url:
        return MemoryBackend()
    client = connect_redis(
        settings.redis_url,
        cluster=settings.redis_cluster,
        timeout_s=settings.decision_timeout_s,
        max_connections=settings.redis_max_connections,
        ca_file=settings.redis_ca_file,
    )
    return RedisBackend(client, max_in_flight=settings.redis_max_connections)


async def build_servicer(settings: RatelimiterSettings, policy_document: dict[str, Any]) -> Wiring:
    """The servicer over a validated policy; a bad policy raises PolicyError naming the field.

    No connection is made here: the first decision or readiness probe connects, so the
    service starts even while Redis is still down (and reports itself not ready when failing
    closed, ready but degraded when failing open).
    """
    policy = PolicyHolder(load_rate_policy(policy_document))
    backend = build_backend(settings)
    admission = Admission(
        backend,
        policy,
        decision_timeout_s=settings.decision_timeout_s,
        default_failure_mode=settings.failure_mode,
        lease_ttl_s=settings.lease_ttl_s,
    )
    return Wiring(
        servicer=RateLimitServicer(admission),
        readiness_checks=[admission.readiness],
        closers=[admission.close],
        reloaders=[policy.reload],
    )
