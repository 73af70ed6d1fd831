"""Three replicas on one Redis (single node or Cluster) admit exactly the limit under a rush."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import pytest

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh_ratelimiter.settings import RatelimiterSettings

if TYPE_CHECKING:
    from conftest import Replica, StartReplica

REPLICAS = 3
CALLERS = 300
# Long enough that refill during the rush adds less than one request or token.
MONTH_S = 30 * 86400


def policy(limits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tenants": [{"name": "acme", "tier": "std"}, {"name": "globex", "tier": "std"}],
        "limits": {"tiers": {"std": limits}},
    }


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """The URL of an emptied single node or Cluster, and whether it is a Cluster."""
    cluster = request.param == "cluster"
    return request.getfixturevalue("cluster_url" if cluster else "redis_url"), cluster


async def start_three(
    start_replica: StartReplica, store: tuple[str, bool], document: dict[str, Any]
) -> list[Replica]:
    url, cluster = store
    settings = RatelimiterSettings(
        redis_url=url, redis_cluster=cluster, decision_timeout_s=5.0, redis_max_connections=32
    )
    return [await start_replica(settings, document) for _ in range(REPLICAS)]


async def rush(
    replicas: list[Replica], tenant: str, costs: list[int], wave: str = "first"
) -> list[ratelimit_service_pb2.ReserveResponse]:
    """All callers at once, spread round-robin over the replicas, each with its own request id."""
    calls = [
        replicas[index % len(replicas)].stub.Reserve(
            ratelimit_service_pb2.ReserveRequest(
                tenant=tenant,
                model="gpt-4o-mini",
                estimated_tokens=cost,
                request_id=f"{wave}-{index}",
            )
        )
        for index, cost in enumerate(costs)
    ]
    return list(await asyncio.gather(*calls))


def admitted(responses: list[ratelimit_service_pb2.ReserveResponse]) -> list[int]:
    indexes = [i for i, r in enumerate(responses) if r.decision == ratelimit_pb2.DECISION_ALLOW]
    # A degraded (fail-open) admission carries no reservation id; none may hide in the count.
    assert all(responses[i].reservation_id for i in indexes)
    return indexes


async def test_three_replicas_admit_exactly_the_request_limit(
    store: tuple[str, bool], start_replica: StartReplica
) -> None:
    document = policy(
        [{"name": "rpm", "kind": "requests", "scope": "tenant", "limit": 100, "window_s": MONTH_S}]
    )
    servers = await start_three(start_replica, store, document)
    responses = await rush(servers, "acme", [1] * CALLERS)
    assert len(admitted(responses)) == 100
    denied = [r for r in responses if r.decision == ratelimit_pb2.DECISION_DENY]
    assert all(r.denied_limit == "rpm" and r.retry_after_ms > 0 for r in denied)
    # Another tenant's bucket is its own.
    assert len(admitted(await rush(servers, "globex", [1] * 10))) == 10


async def test_three_replicas_admit_exactly_the_token_limit(
    store: tuple[str, bool], start_replica: StartReplica
) -> None:
    capacity = 20_000
    document = policy(
        [
            {"name": "tpm", "kind": "tokens", "scope": "tenant", "limit": capacity,
             "window_s": MONTH_S},
            {"name": "model-tpm", "kind": "tokens", "scope": "tenant_model", "limit": capacity,
             "window_s": MONTH_S},
        ]
    )  # fmt: skip
    servers = await start_three(start_replica, store, document)
    costs = [random.Random(seed).randint(1, 200) for seed in range(CALLERS)]
    responses = await rush(servers, "acme", costs)
    taken = sum(costs[i] for i in admitted(responses))
    assert taken <= capacity
    # The bucket only shrank during the rush, so each denied request saw at least what is left
    # now and needed more than that: nothing was refused that still fit.
    left = capacity - taken
    refused = [cost for cost, r in zip(costs, responses, strict=True) if not r.reservation_id]
    assert refused
    assert min(refused) > left
    final = await servers[0].stub.Reserve(
        ratelimit_service_pb2.ReserveRequest(tenant="acme", model="gpt-4o-mini")
    )
    assert [status.remaining for status in final.limits] == [left, left]


async def test_three_replicas_hold_exactly_the_concurrency_limit(
    store: tuple[str, bool], start_replica: StartReplica
) -> None:
    document = policy(
        [{"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 25}]
    )
    servers = await start_three(start_replica, store, document)
    responses = await rush(servers, "acme", [10] * CALLERS)
    held = admitted(responses)
    assert len(held) == 25
    settles = [
        servers[(i + 1) % REPLICAS].stub.Settle(
            ratelimit_service_pb2.SettleRequest(
                reservation_id=responses[i].reservation_id, actual_tokens=10
            )
        )
        for i in held
    ]
    assert all(settled.found for settled in await asyncio.gather(*settles))
    assert len(admitted(await rush(servers, "acme", [10] * CALLERS, wave="second"))) == 25
