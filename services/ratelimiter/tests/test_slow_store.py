"""A slow Redis is awaited, not failed over; a decision given up on the way takes nothing in
the end, whichever comes first of its script and its undoing; a dead Redis costs a decision
no wait once its circuit is open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmmesh.runtime.health import READY, degraded
from llmmesh.testing.delaying_proxy import DelayingProxy
from llmmesh.testing.redis_server import RedisServer
from llmmesh_ratelimiter.admission import (
    REDIS_DOWN_FAILING_OPEN,
    Admission,
    DecisionPastDeadlineError,
)
from llmmesh_ratelimiter.backend import LimiterBackend
from llmmesh_ratelimiter.memory_backend import MemoryBackend
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import FailureMode, load_rate_policy
from llmmesh_ratelimiter.redis_backend import AttemptAbandonedError, RedisBackend, connect_redis
from llmmesh_ratelimiter.testing import held_leases

MONTH_S = 30 * 86400
POLICY: dict[str, Any] = {
    "tenants": [{"name": "acme", "tier": "std"}],
    "limits": {
        "tiers": {
            "std": [
                {"name": "rpm", "kind": "requests", "scope": "tenant", "limit": 10,
                 "window_s": MONTH_S},
                {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 10},
            ]
        }
    },
}  # fmt: skip
UNDO_WITHIN_S = 10.0


def admission_on(backend: LimiterBackend, mode: FailureMode = FailureMode.CLOSED) -> Admission:
    return Admission(
        backend,
        PolicyHolder(load_rate_policy(POLICY)),
        decision_timeout_s=1.0,
        default_failure_mode=mode,
        lease_ttl_s=60,
    )


def redis_backend(url: str) -> RedisBackend:
    return RedisBackend(
        connect_redis(url, cluster=False, timeout_s=1.0, max_connections=8), max_in_flight=8
    )


@pytest.fixture
async def slow_redis(redis_url: str) -> AsyncIterator[DelayingProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with DelayingProxy(port, delay_s=0.3) as proxy:
        yield proxy


async def remaining_requests(admission: Admission) -> int:
    verdict = await admission.reserve("acme", "m", 0, "")
    assert verdict.allowed
    await admission.release(verdict.reservation_id)
    states = zip(verdict.checks, verdict.states, strict=True)
    return next(state.remaining for check, state in states if check.name == "rpm")


async def warmed_up(admission: Admission) -> Admission:
    """With a connection open and the scripts loaded, a decision's script reaches Redis at
    once and only its answer is late: the case where giving up must undo a real charge."""
    verdict = await admission.reserve("acme", "m", 0, "", deadline_s=10.0)
    assert await admission.release(verdict.reservation_id)
    return admission


async def until_undone(admission: Admission) -> None:
    async with asyncio.timeout(UNDO_WITHIN_S):
        while admission.abandonment.pending:
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", [FailureMode.OPEN, FailureMode.CLOSED])
async def test_a_slow_redis_is_awaited_not_failed_over(
    mode: FailureMode, slow_redis: DelayingProxy
) -> None:
    admission = admission_on(redis_backend(slow_redis.url), mode)
    try:
        started = time.monotonic()
        verdicts = await asyncio.gather(
            *(admission.reserve("acme", "m", 1, f"r{i}", deadline_s=5.0) for i in range(12))
        )
        assert time.monotonic() - started >= 0.3
        assert sum(v.allowed for v in verdicts) == 10
        assert not any(v.degraded for v in verdicts)
        assert await admission.readiness() == READY
    finally:
        await admission.close()


async def test_a_decision_past_its_deadline_takes_nothing_once_undone(
    redis_url: str, slow_redis: DelayingProxy
) -> None:
    admission = await warmed_up(admission_on(redis_backend(slow_redis.url)))
    fast = admission_on(redis_backend(redis_url))
    try:
        with pytest.raises(DecisionPastDeadlineError):
            await admission.reserve("acme", "m", 1, "late", deadline_s=0.1)
        assert held_leases(redis_url) == 1  # taken in Redis, answered too late to use
        await until_undone(admission)
        assert held_leases(redis_url) == 0
        assert await remaining_requests(fast) == 9  # the probe itself took one
    finally:
        await admission.close()
        await fast.close()


async def test_a_cancelled_caller_leaves_no_lease_behind(
    redis_url: str, slow_redis: DelayingProxy
) -> None:
    admission = await warmed_up(admission_on(redis_backend(slow_redis.url)))
    try:
        decision = asyncio.ensure_future(admission.reserve("acme", "m", 1, "gone"))
        await asyncio.sleep(0.1)
        decision.cancel()
        with pytest.raises(asyncio.CancelledError):
            await decision
        assert held_leases(redis_url) == 1
        await until_undone(admission)
        assert held_leases(redis_url) == 0
    finally:
        await admission.close()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimiterBackend]:
    store: LimiterBackend = (
        MemoryBackend()
        if request.param == "memory"
        else redis_backend(request.getfixturevalue("redis_url"))
    )
    yield store
    await store.close()


async def test_undoing_an_attempt_that_took_capacity_gives_it_back(
    backend: LimiterBackend,
) -> None:
    admission = admission_on(backend)
    plan = admission.plan("acme", "m", 1, "taken")
    assert (await backend.reserve(plan)).allowed
    await backend.abandon(plan)
    await backend.abandon(plan)  # idempotent
    assert await remaining_requests(admission) == 9


async def test_undoing_one_attempt_leaves_another_attempt_of_the_request_alone(
    backend: LimiterBackend,
) -> None:
    admission = admission_on(backend)
    first = admission.plan("acme", "m", 1, "retried")
    second = admission.plan("acme", "m", 1, "retried")
    assert (await backend.reserve(second)).allowed
    await backend.abandon(first)
    # The reservation the second attempt holds stays held, settled by its owner.
    assert (await backend.settle(second.reservation_id, 1)).found
    assert await remaining_requests(admission) == 8


async def test_an_attempt_undone_before_it_arrives_takes_nothing(redis_url: str) -> None:
    backend = redis_backend(redis_url)
    admission = admission_on(backend)
    try:
        plan = admission.plan("acme", "m", 1, "overtaken")
        await backend.abandon(plan)
        with pytest.raises(AttemptAbandonedError):
            await backend.reserve(plan)
        assert held_leases(redis_url) == 0
        # Another attempt at the same request is a fresh one and may take capacity.
        assert (await backend.reserve(admission.plan("acme", "m", 1, "overtaken"))).allowed
    finally:
        await backend.close()


async def test_an_open_circuit_decides_without_waiting_and_closes_when_redis_is_back(
    own_redis: RedisServer,
) -> None:
    backend = redis_backend(own_redis.url)
    admission = admission_on(backend, FailureMode.OPEN)
    try:
        assert (await admission.reserve("acme", "m", 1, "")).reservation_id
        own_redis.stop()
        first = await admission.reserve("acme", "m", 1, "")
        assert first.allowed
        assert first.degraded
        assert backend.circuit.is_open
        started = time.monotonic()
        verdicts = [await admission.reserve("acme", "m", 1, "") for _ in range(50)]
        assert all(v.allowed and v.degraded for v in verdicts)
        assert time.monotonic() - started < 0.5
        assert await admission.readiness() == degraded(REDIS_DOWN_FAILING_OPEN)
        own_redis.start()
        assert await admission.readiness() == READY
        assert not backend.circuit.is_open
        assert (await admission.reserve("acme", "m", 1, "")).reservation_id
    finally:
        await admission.close()
