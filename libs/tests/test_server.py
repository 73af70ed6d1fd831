"""The shared server bootstrap: readiness follows its checks, liveness stays apart, a drain
finishes in-flight streams, and readiness says NOT_SERVING while it drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.runtime.health import (
    DEPENDENCIES,
    LIVENESS,
    READY,
    Readiness,
    degraded,
    read_health,
    unready,
)
from llmmesh.runtime.server import ServiceHost
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.wiring import Wiring

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _slow_stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    for index in range(5):
        await asyncio.sleep(0.1)
        yield str(index).encode()


def _add_slow_service(servicer: object, server: grpc.aio.Server) -> None:
    handlers = {"Slow": grpc.unary_stream_rpc_method_handler(_slow_stream)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Slow", handlers)])


class Dependency:
    def __init__(self) -> None:
        self.readiness = READY

    @property
    def up(self) -> bool:
        return self.readiness.ready

    @up.setter
    def up(self, value: bool) -> None:
        self.readiness = READY if value else unready("dependency down")

    async def check(self) -> Readiness:
        return self.readiness


def _settings(**overrides: float) -> ServiceSettings:
    return ServiceSettings(
        listen_host="127.0.0.1", port=0, health_probe_interval_s=0.05, **overrides
    )


async def _started(host: ServiceHost) -> asyncio.Task[None]:
    task = asyncio.create_task(host.run())
    while host.port == 0:
        await asyncio.sleep(0.01)
    return task


async def _status(channel: grpc.aio.Channel, service: str = "t.Slow") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=1
    )
    return int(response.status)


async def _wait_for_status(channel: grpc.aio.Channel, wanted: int) -> None:
    async with asyncio.timeout(3):
        while await _status(channel) != wanted:
            await asyncio.sleep(0.02)


async def _statuses(channel: grpc.aio.Channel) -> dict[str, int]:
    return {name: await _status(channel, name) for name in ("", "t.Slow", LIVENESS, DEPENDENCIES)}


async def test_health_follows_a_dependency_down_and_back_up() -> None:
    dependency = Dependency()
    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(),
        wiring=Wiring(servicer=None, readiness_checks=[dependency.check]),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        await _wait_for_status(channel, SERVING)
        dependency.up = False
        await _wait_for_status(channel, NOT_SERVING)
        # Not ready is not dead: a restart would not bring the dependency back.
        assert await _statuses(channel) == {
            "": NOT_SERVING, "t.Slow": NOT_SERVING, LIVENESS: SERVING, DEPENDENCIES: NOT_SERVING
        }  # fmt: skip
        dependency.up = True
        await _wait_for_status(channel, SERVING)
    host.request_stop()
    await task


async def test_a_degraded_dependency_keeps_readiness_and_explains_itself() -> None:
    dependency = Dependency()
    healthy = Dependency()
    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(),
        wiring=Wiring(servicer=None, readiness_checks=[dependency.check, healthy.check]),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        await _wait_for_status(channel, SERVING)
        dependency.readiness = degraded("redis unreachable, failing open")
        async with asyncio.timeout(3):
            while await _status(channel, DEPENDENCIES) != NOT_SERVING:
                await asyncio.sleep(0.02)
        assert await _statuses(channel) == {
            "": SERVING, "t.Slow": SERVING, LIVENESS: SERVING, DEPENDENCIES: NOT_SERVING
        }  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{host.port}") as blocking:
            assert await asyncio.to_thread(read_health, blocking) == (
                "SERVING",
                "redis unreachable, failing open",
            )
            dependency.readiness = unready("redis unreachable, failing closed")
            await _wait_for_status(channel, NOT_SERVING)
            assert await asyncio.to_thread(read_health, blocking) == (
                "NOT_SERVING",
                "redis unreachable, failing closed",
            )
    host.request_stop()
    await task


async def test_a_check_that_breaks_reads_as_not_ready_but_alive() -> None:
    async def broken() -> Readiness:
        raise RuntimeError("bug")

    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(),
        wiring=Wiring(servicer=None, readiness_checks=[broken]),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        await asyncio.sleep(0.2)
        assert await _status(channel) == NOT_SERVING
        assert await _status(channel, LIVENESS) == SERVING
    host.request_stop()
    await task


async def test_drain_reports_not_serving_and_lets_the_in_flight_stream_finish() -> None:
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(drain_delay_s=0.2, grace_period_s=5),
        wiring=Wiring(servicer=None, closers=[close]),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        await _wait_for_status(channel, SERVING)
        call = channel.unary_stream("/t.Slow/Slow")(b"")
        received = [await call.read()]
        host.request_stop()
        assert await _status(channel) == NOT_SERVING
        # Draining is not dying: liveness holds until the process exits.
        assert await _status(channel, LIVENESS) == SERVING
        while (message := await call.read()) is not grpc.aio.EOF:
            received.append(message)
        assert received == [b"0", b"1", b"2", b"3", b"4"]
        assert await call.code() == grpc.StatusCode.OK
    await task
    assert closed.is_set()


async def test_stream_longer_than_the_grace_period_is_cancelled() -> None:
    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(grace_period_s=0.15),
        wiring=Wiring(servicer=None),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        call = channel.unary_stream("/t.Slow/Slow")(b"")
        await call.read()
        host.request_stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while await call.read() is not grpc.aio.EOF:
                pass
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    await asyncio.wait_for(task, 5)


async def test_health_is_not_serving_until_the_first_dependency_probe_passes() -> None:
    dependency = Dependency()
    dependency.up = False
    host = ServiceHost(
        service_name="t.Slow",
        settings=_settings(),
        wiring=Wiring(servicer=None, readiness_checks=[dependency.check]),
        add_servicer=_add_slow_service,
    )
    task = await _started(host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        overall = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1
        )
        assert overall.status == NOT_SERVING
        dependency.up = True
        await _wait_for_status(channel, SERVING)
    host.request_stop()
    await task
