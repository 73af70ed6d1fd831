"""gRPC tracing over grpc.aio: one trace across a hop, for unary and streaming calls, with
the status of rich errors and of cancellations recorded on both sides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmmesh.runtime.channels import open_channel
from llmmesh.runtime.errors import RpcFailure, error_details
from llmmesh.runtime.interceptors import ServerCallInterceptor
from llmmesh.testing.spans import span_exporter

stream_cancelled = asyncio.Event()


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    if request == b"fail":
        raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "no", reason="RATE_LIMITED")
    return b"ok"


async def _stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    try:
        for index in range(int(request)):
            await asyncio.sleep(0.02)
            yield str(index).encode()
    except asyncio.CancelledError:
        stream_cancelled.set()
        raise


async def _written_stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    """A streaming handler that writes instead of yielding, then fails part-way."""
    for index in range(int(request)):
        await context.write(str(index).encode())
    raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "stalled", reason="STREAM_STALLED")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = span_exporter()
    exporter.clear()
    return exporter


@pytest.fixture
async def channel(spans: InMemorySpanExporter) -> AsyncIterator[grpc.aio.Channel]:
    # Spans are recorded (an SDK provider is installed) before the channel is opened.
    server = grpc.aio.server(interceptors=[ServerCallInterceptor()])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        "Written": grpc.unary_stream_rpc_method_handler(_written_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = open_channel(f"127.0.0.1:{port}")
    yield client
    await client.close()
    await server.stop(None)


async def _finished(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    async with asyncio.timeout(2):
        while len(spans.get_finished_spans()) < count:
            await asyncio.sleep(0.01)
    return list(spans.get_finished_spans())


def _by_kind(finished: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in finished if s.kind == kind]
    return span


def _assert_one_trace(client: ReadableSpan, server: ReadableSpan) -> None:
    assert client.context is not None
    assert server.context is not None
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id


async def test_unary_call_is_one_trace_across_the_hop(
    channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    assert await channel.unary_unary("/t.T/Unary")(b"") == b"ok"
    finished = await _finished(spans, 2)
    client, server = _by_kind(finished, SpanKind.CLIENT), _by_kind(finished, SpanKind.SERVER)
    _assert_one_trace(client, server)
    assert server.name == "t.T/Unary"
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == 0


async def test_rich_error_status_is_recorded_on_both_spans(
    channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary("/t.T/Unary")(b"fail")
    finished = await _finished(spans, 2)
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert (
            span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        )
    assert _by_kind(finished, SpanKind.SERVER).attributes["llmmesh.error.reason"] == "RATE_LIMITED"  # type: ignore[index]


async def test_streaming_span_lasts_until_the_last_message(
    channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    messages = [m async for m in channel.unary_stream("/t.T/Stream")(b"5")]
    assert len(messages) == 5
    finished = await _finished(spans, 2)
    client, server = _by_kind(finished, SpanKind.CLIENT), _by_kind(finished, SpanKind.SERVER)
    _assert_one_trace(client, server)
    assert server.end_time is not None
    assert server.start_time is not None
    assert server.end_time - server.start_time >= 5 * 0.02 * 1e9 * 0.9


async def test_cancelled_stream_is_recorded_and_the_call_can_still_be_cancelled(
    channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    stream_cancelled.clear()
    call = channel.unary_stream("/t.T/Stream")(b"100")
    assert await call.read() == b"0"
    assert call.cancel()
    await asyncio.wait_for(stream_cancelled.wait(), 2)
    finished = await _finished(spans, 2)
    client, server = _by_kind(finished, SpanKind.CLIENT), _by_kind(finished, SpanKind.SERVER)
    for span in (client, server):
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert [event.name for event in server.events] == ["llmmesh.cancelled"]


async def test_health_checks_are_not_traced(spans: InMemorySpanExporter) -> None:
    server = grpc.aio.server(interceptors=[ServerCallInterceptor()])
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with open_channel(f"127.0.0.1:{port}") as client:
        await health_pb2_grpc.HealthStub(client).Check(health_pb2.HealthCheckRequest())
    await server.stop(None)
    await asyncio.sleep(0.05)
    assert spans.get_finished_spans() == ()


async def test_a_stream_written_with_context_write_is_traced_and_fails_with_its_rich_status(
    channel: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    call = channel.unary_stream("/t.T/Written")(b"3")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        while (message := await call.read()) is not grpc.aio.EOF:
            received.append(message)
    assert received == [b"0", b"1", b"2"]
    assert error_details(failure.value).reason == "STREAM_STALLED"
    server = _by_kind(await _finished(spans, 2), SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["llmmesh.error.reason"] == "STREAM_STALLED"
