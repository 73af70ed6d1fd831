"""Channels between services send calls only to replicas that report themselves ready, so a
replica that drains or cannot serve stops receiving calls before it stops accepting them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from llmmesh.runtime.channels import dns_target, open_channel
from llmmesh.runtime.health import READY, Readiness, degraded, peer_readiness, unready
from llmmesh.runtime.server import ServiceHost
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.wiring import Wiring

SETTLE_S = 3.0
GRACE_PERIOD_S = 10.0
DRAIN_DELAY_S = 1.0


class Replica:
    """A ServiceHost answering `/t.Who/Who` with its name; its readiness is set by the test."""

    def __init__(self, name: str, drain_delay_s: float = 0.0) -> None:
        self.name = name
        self.readiness = READY
        self.host = ServiceHost(
            service_name="t.Who",
            settings=ServiceSettings(
                listen_host="127.0.0.1",
                port=0,
                health_probe_interval_s=0.05,
                grace_period_s=GRACE_PERIOD_S,
                drain_delay_s=drain_delay_s,
            ),
            wiring=Wiring(servicer=self, readiness_checks=[self.check]),
            add_servicer=self._add,
        )
        self.task: asyncio.Task[None] | None = None

    async def check(self) -> Readiness:
        return self.readiness

    def _add(self, servicer: object, server: grpc.aio.Server) -> None:
        async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return self.name.encode()

        handlers = {"Who": grpc.unary_unary_rpc_method_handler(who)}
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Who", handlers)])

    async def start(self) -> None:
        self.task = asyncio.create_task(self.host.run())
        while self.host.port == 0:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.host.request_stop()
            await self.task


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [Replica("a", drain_delay_s=DRAIN_DELAY_S), Replica("b")]
    for replica in started:
        await replica.start()
    yield started
    for replica in started:
        await replica.stop()


async def answered_by(channel: grpc.aio.Channel, calls: int = 8) -> set[str]:
    who = channel.unary_unary("/t.Who/Who")
    return {(await who(b"", timeout=2)).decode() for _ in range(calls)}


async def until_answered_by(channel: grpc.aio.Channel, expected: set[str]) -> None:
    async with asyncio.timeout(SETTLE_S):
        while await answered_by(channel) != expected:
            await asyncio.sleep(0.02)


@pytest.fixture
async def channel(replicas: list[Replica]) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to both replicas, once both answer on it."""
    a, b = replicas
    async with open_channel(f"ipv4:127.0.0.1:{a.host.port},127.0.0.1:{b.host.port}") as opened:
        await until_answered_by(opened, {"a", "b"})
        yield opened


async def test_calls_go_only_to_ready_replicas_and_degraded_ones_stay_in(
    replicas: list[Replica], channel: grpc.aio.Channel
) -> None:
    a, b = replicas
    a.readiness = unready("redis unreachable, failing closed")
    await until_answered_by(channel, {"b"})
    # Degraded is still ready: it keeps its share of the calls.
    a.readiness = degraded("redis unreachable, failing open")
    await until_answered_by(channel, {"a", "b"})
    assert await peer_readiness(channel) in (READY, degraded("redis unreachable, failing open"))
    a.readiness = unready("down")
    b.readiness = unready("down")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(SETTLE_S):
            while True:
                await answered_by(channel, 1)
                await asyncio.sleep(0.02)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not (await peer_readiness(channel)).ready


async def test_a_draining_replica_stops_receiving_calls_before_it_stops_accepting(
    replicas: list[Replica], channel: grpc.aio.Channel
) -> None:
    a, _ = replicas
    stopping = asyncio.get_running_loop().time()
    a.host.request_stop()
    # Within the drain delay a still accepts, but the channel has moved to b.
    await until_answered_by(channel, {"b"})
    assert a.task is not None
    assert not a.task.done()
    # The channel's health watch on a ends with the drain: it does not hold the stop
    # open until the grace period runs out.
    await asyncio.wait_for(a.task, GRACE_PERIOD_S / 2)
    assert asyncio.get_running_loop().time() - stopping < GRACE_PERIOD_S / 2


def test_targets_that_list_their_addresses_are_kept() -> None:
    assert dns_target("ratelimiter:50052") == "dns:///ratelimiter:50052"
    assert dns_target("ipv4:10.0.0.1:1,10.0.0.2:1") == "ipv4:10.0.0.1:1,10.0.0.2:1"
    assert dns_target("unix:/run/rl.sock") == "unix:/run/rl.sock"
    assert dns_target("dns:///rl:1") == "dns:///rl:1"
