"""Reflection is off unless asked for, and then answers under grpc.reflection.v1 and v1alpha."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from llmmesh.runtime.server import ServiceHost
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.wiring import Wiring

PATHS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def _no_servicer(servicer: object, server: grpc.aio.Server) -> None:
    del servicer, server


@pytest.fixture(params=[False, True], ids=["default", "asked-for"])
async def host(request: pytest.FixtureRequest) -> AsyncIterator[ServiceHost]:
    settings = ServiceSettings(listen_host="127.0.0.1", port=0, reflection=request.param)
    served = ServiceHost(
        service_name="t.Service",
        settings=settings,
        wiring=Wiring(servicer=None),
        add_servicer=_no_servicer,
    )
    task = asyncio.create_task(served.run())
    while served.port == 0:
        await asyncio.sleep(0.01)
    yield served
    served.request_stop()
    await task


async def _ask(
    port: int, version: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            PATHS[version],
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([request]), timeout=5)
        responses = [response async for response in call]
    return responses[0]


@pytest.mark.parametrize("version", sorted(PATHS))
async def test_reflection_is_off_by_default_and_answers_both_versions_when_asked(
    host: ServiceHost, version: str
) -> None:
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    if not host._settings.reflection:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _ask(host.port, version, listing)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        return
    answer = await _ask(host.port, version, listing)
    names = {service.name for service in answer.list_services_response.service}
    assert {
        "t.Service",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    described = await _ask(
        host.port,
        version,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
    )
    assert described.file_descriptor_response.file_descriptor_proto
