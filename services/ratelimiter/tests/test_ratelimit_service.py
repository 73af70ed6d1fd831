"""RateLimitService over gRPC: input validation, answers, tiers and overrides, policy reload."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from llmmesh.policy import read_policy_document
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.runtime.errors import FieldViolation, error_details
from llmmesh_ratelimiter.settings import RatelimiterSettings

if TYPE_CHECKING:
    from conftest import Replica, StartReplica

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
Reserve = ratelimit_service_pb2.ReserveRequest


@pytest.fixture
async def replica(start_replica: StartReplica) -> Replica:
    """One replica on the embedded in-memory backend with the example policy."""
    return await start_replica(
        RatelimiterSettings(), read_policy_document(FIXTURES / "good_policy.yaml")
    )


async def rejected(call: Any) -> list[FieldViolation]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    details = error_details(failure.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_REQUEST"
    return list(details.field_violations)


async def test_reserve_names_every_bad_field(replica: Replica) -> None:
    violations = await rejected(replica.stub.Reserve(Reserve(estimated_tokens=-1)))
    assert {v.field for v in violations} == {"tenant", "model", "estimated_tokens"}


async def test_unknown_tenant_is_an_invalid_argument(replica: Replica) -> None:
    violations = await rejected(replica.stub.Reserve(Reserve(tenant="nobody", model="m")))
    assert [(v.field, v.description) for v in violations] == [
        ("tenant", "no tenant of this name in the policy")
    ]


async def test_settle_and_release_need_a_reservation_id(replica: Replica) -> None:
    settle = ratelimit_service_pb2.SettleRequest(actual_tokens=-3)
    violations = await rejected(replica.stub.Settle(settle))
    assert {v.field for v in violations} == {"reservation_id", "actual_tokens"}
    release = ratelimit_service_pb2.ReleaseRequest()
    assert [v.field for v in await rejected(replica.stub.Release(release))] == ["reservation_id"]


async def test_unknown_reservation_is_not_found(replica: Replica) -> None:
    settle = ratelimit_service_pb2.SettleRequest(reservation_id="acme/0123", actual_tokens=1)
    assert not (await replica.stub.Settle(settle)).found
    release = ratelimit_service_pb2.ReleaseRequest(reservation_id="not-one-of-ours")
    assert not (await replica.stub.Release(release)).found


async def test_denial_reports_every_limit_with_kind_scope_and_retry(replica: Replica) -> None:
    request = Reserve(tenant="initech", model="llama", estimated_tokens=100)
    allowed = await replica.stub.Reserve(request)
    assert allowed.decision == ratelimit_pb2.DECISION_ALLOW
    await replica.stub.Release(
        ratelimit_service_pb2.ReleaseRequest(reservation_id=allowed.reservation_id)
    )
    big = await replica.stub.Reserve(Reserve(tenant="initech", model="llama", estimated_tokens=999))
    assert big.decision == ratelimit_pb2.DECISION_ALLOW
    denied = await replica.stub.Reserve(Reserve(tenant="initech", model="llama"))
    assert denied.decision == ratelimit_pb2.DECISION_DENY
    assert denied.reservation_id == ""
    statuses = {status.name: status for status in denied.limits}
    assert denied.denied_limit == "tenant-in-flight"
    in_flight = statuses["tenant-in-flight"]
    assert (in_flight.kind, in_flight.scope, in_flight.limit) == (
        ratelimit_pb2.LIMIT_KIND_CONCURRENCY,
        ratelimit_pb2.LIMIT_SCOPE_TENANT,
        1,
    )
    assert in_flight.exceeded
    assert statuses["tenant-tokens"].remaining == 1
    assert statuses["tenant-tokens"].kind == ratelimit_pb2.LIMIT_KIND_TOKENS
    assert not statuses["tenant-requests"].exceeded
    assert 0 < denied.retry_after_ms <= 1000


async def test_tiers_overrides_and_model_limits_apply(replica: Replica) -> None:
    async def decisions(tenant: str, model: str, count: int) -> list[str]:
        answers = [
            await replica.stub.Reserve(Reserve(tenant=tenant, model=model)) for _ in range(count)
        ]
        return [a.denied_limit or "allowed" for a in answers]

    # acme is on the pro tier (5 requests) but its override allows 3.
    assert await decisions("acme", "gpt-4o-mini", 4) == ["allowed"] * 3 + ["tenant-requests"]
    # The per-model limit (4) is shared by every tenant: initech gets the one left.
    assert await decisions("initech", "gpt-4o-mini", 2) == ["allowed", "upstream-requests"]


async def test_shadow_limit_reports_exceeded_but_allows(replica: Replica) -> None:
    first = await replica.stub.Reserve(Reserve(tenant="acme", model="x", estimated_tokens=50000))
    second = await replica.stub.Reserve(Reserve(tenant="acme", model="x", estimated_tokens=10))
    assert second.decision == ratelimit_pb2.DECISION_ALLOW
    shadow = next(status for status in second.limits if status.name == "model-tokens")
    assert shadow.shadow
    assert shadow.exceeded
    assert first.decision == ratelimit_pb2.DECISION_ALLOW


async def test_reload_applies_a_valid_policy_and_keeps_the_old_one_when_bad(
    replica: Replica,
) -> None:
    assert replica.wiring is not None
    reload = replica.wiring.reloaders[0]
    first = await replica.stub.Reserve(Reserve(tenant="initech", model="m"))
    await replica.stub.Release(
        ratelimit_service_pb2.ReleaseRequest(reservation_id=first.reservation_id)
    )

    reload(read_policy_document(FIXTURES / "bad_unknown_tier.yaml"))
    # Still the old policy: initech exists and its two requests are counted.
    second = await replica.stub.Reserve(Reserve(tenant="initech", model="m"))
    assert second.decision == ratelimit_pb2.DECISION_ALLOW
    limits = {status.name: status.limit for status in second.limits}
    assert limits["tenant-requests"] == 2

    document: dict[str, Any] = read_policy_document(FIXTURES / "good_policy.yaml")
    document["limits"]["tiers"]["free"][0]["limit"] = 50
    document["tenants"].append({"name": "hooli", "tier": "free"})
    reload(document)
    third = await replica.stub.Reserve(Reserve(tenant="hooli", model="m"))
    assert third.decision == ratelimit_pb2.DECISION_ALLOW
    assert {status.name: status.limit for status in third.limits}["tenant-requests"] == 50


def test_settings_default_to_in_memory_on_the_ratelimiter_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = RatelimiterSettings()
    assert (defaults.port, defaults.redis_url, defaults.failure_mode.value) == (50052, "", "open")
    monkeypatch.setenv("LLMMESH_REDIS_URL", "redis://cache-host:6379/0")
    monkeypatch.setenv("LLMMESH_RATELIMITER_FAILURE_MODE", "closed")
    monkeypatch.setenv("LLMMESH_RATELIMITER_DECISION_TIMEOUT_S", "0.1")
    configured = RatelimiterSettings()
    assert configured.redis_url == "redis://cache-host:6379/0"
    assert configured.failure_mode.value == "closed"
    assert configured.decision_timeout_s == 0.1
