"""Rich errors survive a real gRPC hop, in unary and streaming RPCs alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from llmmesh.runtime.errors import (
    ERROR_DOMAIN,
    FieldViolation,
    QuotaViolation,
    RpcFailure,
    error_details,
    invalid_argument,
)
from llmmesh.runtime.interceptors import ServerCallInterceptor

QUOTA_FAILURE = RpcFailure(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "slow down",
    reason="RATE_LIMITED",
    metadata={"limit": "tenant-requests"},
    retry_after_s=1.5,
    quota_violations=[QuotaViolation("tenant:a", "60 requests per minute")],
)


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise QUOTA_FAILURE


async def _stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise invalid_argument([FieldViolation("messages[0].role", "unknown role")])


async def _crash(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise KeyError("secret internals")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[ServerCallInterceptor()])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        "Crash": grpc.unary_unary_rpc_method_handler(_crash),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as client:
        yield client
    await server.stop(None)


async def test_unary_failure_arrives_with_error_info_retry_info_and_quota_failure(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Unary")(b"")
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (details.reason, details.domain) == ("RATE_LIMITED", ERROR_DOMAIN)
    assert details.metadata == {"limit": "tenant-requests"}
    assert details.retry_after_s == pytest.approx(1.5)
    assert details.quota_violations == (QuotaViolation("tenant:a", "60 requests per minute"),)


async def test_streaming_failure_after_a_message_arrives_with_field_violations(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.unary_stream("/t.T/Stream")(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message)
    assert received == [b"first"]
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == (FieldViolation("messages[0].role", "unknown role"),)


async def test_unexpected_exception_becomes_internal_without_its_message(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Crash")(b"")
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INTERNAL
    assert details.reason == "INTERNAL"
    assert "secret" not in details.message


def test_error_details_of_a_plain_status_has_no_reason() -> None:
    class PlainError(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "connection refused"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    details = error_details(PlainError())
    assert (details.code, details.reason) == (grpc.StatusCode.UNAVAILABLE, "")
    assert details.message == "connection refused"
