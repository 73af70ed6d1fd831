"""When Redis dies or hangs, decisions follow the failure mode within the timeout, readiness
follows the failure mode, and both recover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.health import READY, Readiness, degraded, unready
from llmmesh.testing.redis_server import RedisServer
from llmmesh_ratelimiter.admission import (
    BACKEND_UNAVAILABLE_LIMIT,
    REDIS_DOWN_FAILING_CLOSED,
    REDIS_DOWN_FAILING_OPEN,
    Admission,
)
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import FailureMode, load_rate_policy
from llmmesh_ratelimiter.redis_backend import RedisBackend, connect_redis
from llmmesh_ratelimiter.settings import RatelimiterSettings

if TYPE_CHECKING:
    from conftest import StartReplica

DECISION_TIMEOUT_S = 0.2
# The timeout plus scheduling slack on a loaded test machine.
BOUND_S = DECISION_TIMEOUT_S + 0.5

POLICY: dict[str, Any] = {
    "tenants": [{"name": "acme", "tier": "std"}],
    "limits": {
        "tiers": {
            "std": [
                {"name": "rpm", "kind": "requests", "scope": "tenant", "limit": 1000,
                 "window_s": 60},
                {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 100},
            ]
        }
    },
}  # fmt: skip

RESERVE = ratelimit_service_pb2.ReserveRequest(tenant="acme", model="m", estimated_tokens=10)


async def wait_until_healthy(check: Any, within_s: float = 5.0) -> float:
    started = time.monotonic()
    while await check() != READY:
        assert time.monotonic() - started < within_s, "did not recover"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


# Without Redis, failing open still serves (degraded); failing closed cannot serve at all.
READINESS_WITHOUT_REDIS: dict[FailureMode, Readiness] = {
    FailureMode.OPEN: degraded(REDIS_DOWN_FAILING_OPEN),
    FailureMode.CLOSED: unready(REDIS_DOWN_FAILING_CLOSED),
}


@pytest.mark.parametrize("mode", [FailureMode.OPEN, FailureMode.CLOSED])
async def test_dead_redis_follows_failure_mode_in_bounded_time_then_recovers(
    mode: FailureMode, own_redis: RedisServer, start_replica: StartReplica
) -> None:
    settings = RatelimiterSettings(
        redis_url=own_redis.url, decision_timeout_s=DECISION_TIMEOUT_S, failure_mode=mode
    )
    replica = await start_replica(settings, POLICY)
    assert replica.wiring is not None
    healthy = replica.wiring.readiness_checks[0]
    before = await replica.stub.Reserve(RESERVE)
    assert before.decision == ratelimit_pb2.DECISION_ALLOW
    assert before.reservation_id
    assert await healthy() == READY

    own_redis.stop()
    started = time.monotonic()
    during = await replica.stub.Reserve(RESERVE)
    assert time.monotonic() - started < BOUND_S
    if mode is FailureMode.OPEN:
        assert during.decision == ratelimit_pb2.DECISION_ALLOW
        assert during.reservation_id == ""  # nothing was reserved, so nothing to settle
    else:
        assert during.decision == ratelimit_pb2.DECISION_DENY
        assert during.denied_limit == BACKEND_UNAVAILABLE_LIMIT
        assert during.retry_after_ms > 0
    started = time.monotonic()
    assert await healthy() == READINESS_WITHOUT_REDIS[mode]
    assert time.monotonic() - started < BOUND_S
    with pytest.raises(grpc.aio.AioRpcError) as settle_failure:
        await replica.stub.Settle(
            ratelimit_service_pb2.SettleRequest(reservation_id=before.reservation_id)
        )
    details = error_details(settle_failure.value)
    assert details.code is grpc.StatusCode.UNAVAILABLE
    assert details.reason == "RATELIMIT_BACKEND_UNAVAILABLE"
    assert details.retry_after_s is not None

    # The restarted server is empty: the scripts are loaded again on NOSCRIPT.
    own_redis.start()
    await wait_until_healthy(healthy)
    after = await replica.stub.Reserve(RESERVE)
    assert after.decision == ratelimit_pb2.DECISION_ALLOW
    assert after.reservation_id
    settled = await replica.stub.Settle(
        ratelimit_service_pb2.SettleRequest(reservation_id=after.reservation_id, actual_tokens=5)
    )
    assert settled.found


@pytest.fixture
async def hung_redis_url() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never answers, like a frozen Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_hung_redis_is_decided_by_the_failure_mode_within_the_timeout_and_counted(
    hung_redis_url: str,
) -> None:
    reader = InMemoryMetricReader()
    backend = RedisBackend(
        connect_redis(
            hung_redis_url, cluster=False, timeout_s=DECISION_TIMEOUT_S, max_connections=4
        ),
        max_in_flight=4,
    )
    admission = Admission(
        backend,
        PolicyHolder(load_rate_policy(POLICY)),
        decision_timeout_s=DECISION_TIMEOUT_S,
        default_failure_mode=FailureMode.CLOSED,
        lease_ttl_s=60,
        meter=MeterProvider(metric_readers=[reader]).get_meter("test"),
    )
    try:
        started = time.monotonic()
        verdicts = await asyncio.gather(*(admission.reserve("acme", "m", 1, "") for _ in range(10)))
        assert time.monotonic() - started < BOUND_S
        assert all(not v.allowed and v.degraded for v in verdicts)
        assert await admission.readiness() == unready(REDIS_DOWN_FAILING_CLOSED)
    finally:
        await admission.close()
    data = reader.get_metrics_data()
    assert data is not None
    failures = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "llmmesh.ratelimit.backend_failures"
        for point in metric.data.data_points
    ]
    by_operation: dict[str, int] = {}
    for point in failures:
        operation = str(dict(point.attributes or {})["operation"])
        by_operation[operation] = by_operation.get(operation, 0) + int(point.value)
    assert by_operation == {"reserve": 10, "ping": 1}
