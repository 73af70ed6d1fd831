"""The router's Settle and Release reach a ratelimiter that is away for a moment: retried
with backoff within their budget, never retried when the ratelimiter refused them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.testing.ports import free_port
from llmmesh_ratelimiter.settings import RatelimiterSettings
from llmmesh_ratelimiter.wiring import build_servicer
from llmmesh_router.settlement import Settler

POLICY: dict[str, Any] = {
    "tenants": [{"name": "acme", "tier": "one-at-a-time"}],
    "limits": {
        "tiers": {
            "one-at-a-time": [
                {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 1}
            ]
        }
    },
}


class Ratelimiter:
    """A real ratelimiter servicer (in-memory backend) that can go away and come back on
    the same port, keeping its reservations, as a restarted replica behind Redis would."""

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer
        self.port = free_port()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server()
        ratelimit_service_pb2_grpc.add_RateLimitServiceServicer_to_server(self._servicer, server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None


@pytest.fixture
async def ratelimiter() -> AsyncIterator[Ratelimiter]:
    wiring = await build_servicer(RatelimiterSettings(), POLICY)
    server = Ratelimiter(wiring.servicer)
    await server.start()
    yield server
    await server.stop()
    for close in wiring.closers:
        await close()


@pytest.fixture
async def stub(
    ratelimiter: Ratelimiter,
) -> AsyncIterator[ratelimit_service_pb2_grpc.RateLimitServiceStub]:
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 200)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ratelimiter.port}", options=options) as ch:
        yield ratelimit_service_pb2_grpc.RateLimitServiceStub(ch)


async def _reserve(stub: ratelimit_service_pb2_grpc.RateLimitServiceStub) -> str:
    response = await stub.Reserve(
        ratelimit_service_pb2.ReserveRequest(tenant="acme", model="m", estimated_tokens=10)
    )
    return str(response.reservation_id) if response.decision == ratelimit_pb2.DECISION_ALLOW else ""


async def test_a_release_sent_while_the_ratelimiter_is_away_lands_when_it_is_back(
    ratelimiter: Ratelimiter, stub: ratelimit_service_pb2_grpc.RateLimitServiceStub
) -> None:
    reservation = await _reserve(stub)
    assert reservation
    assert not await _reserve(stub), "the only concurrency slot is taken"
    await ratelimiter.stop()
    release = asyncio.create_task(Settler(stub, budget_s=10.0).release(reservation))
    await asyncio.sleep(1.0)
    assert not release.done(), "the release keeps trying while the ratelimiter is away"
    await ratelimiter.start()
    await asyncio.wait_for(release, 10.0)
    assert await _reserve(stub), "the retried release gave the slot back"


async def test_a_settlement_gives_up_at_the_end_of_its_budget(
    ratelimiter: Ratelimiter, stub: ratelimit_service_pb2_grpc.RateLimitServiceStub
) -> None:
    reservation = await _reserve(stub)
    await ratelimiter.stop()
    started = time.monotonic()
    await Settler(stub, budget_s=1.0).settle(reservation, 5)
    # It gives up by the end of the budget: as soon as the next jittered backoff would
    # outlast what is left, which (jitter being random) may come well before the end.
    assert time.monotonic() - started < 3.0


async def test_a_settlement_the_ratelimiter_refused_is_not_retried(
    stub: ratelimit_service_pb2_grpc.RateLimitServiceStub,
) -> None:
    started = time.monotonic()
    await Settler(stub, budget_s=10.0).settle("not a valid id \x00", -1)
    assert time.monotonic() - started < 1.0
