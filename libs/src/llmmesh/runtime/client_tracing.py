"""Client interceptors: a CLIENT span per call to a peer, and trace context in its metadata.

Written for the mesh rather than taken from opentelemetry-instrumentation-grpc because its
aio unary-stream interceptor (0.66b) hands back a bare async generator instead of the call:
`cancel()`, `read()` and `code()` are gone, so a caller could no longer cancel a stream
upstream, and a stream abandoned before its end left its span open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmmesh.runtime import semconv
from llmmesh.runtime.telemetry import tracing_active

tracer = trace.get_tracer("llmmesh.runtime.grpc")
# Health probes go out every second to every peer; they are not traced.
UNTRACED_PREFIXES = ("grpc.health.v1.", "grpc.reflection.")

_span_endings: set[asyncio.Task[None]] = set()


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")


def _start_span(details: grpc.aio.ClientCallDetails) -> tuple[Span, grpc.aio.ClientCallDetails]:
    method = _method_name(details)
    service, _, name = method.partition("/")
    span = tracer.start_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={
            semconv.RPC_SYSTEM: "grpc",
            semconv.RPC_SERVICE: service,
            semconv.RPC_METHOD: name,
        },
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata = list(details.metadata or ()) + list(carrier.items())
    new_details = grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*metadata),
        details.credentials, details.wait_for_ready,
    )  # fmt: skip
    return span, new_details


def _finish(span: Span, code: grpc.StatusCode) -> None:
    span.set_attribute(semconv.RPC_GRPC_STATUS_CODE, code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
        span.set_attribute(semconv.ERROR_TYPE, code.name)
    span.end()


async def _end_when_done(call: grpc.aio.Call, span: Span) -> None:
    try:
        code = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    _finish(span, code)


def _end_span_with_call(call: grpc.aio.Call, span: Span) -> None:
    task = asyncio.ensure_future(_end_when_done(call, span))
    _span_endings.add(task)
    task.add_done_callback(_span_endings.discard)


async def _traced_call(
    continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
) -> Any:
    if _method_name(details).startswith(UNTRACED_PREFIXES):
        return await continuation(details, request)
    span, new_details = _start_span(details)
    call = await continuation(new_details, request)
    _end_span_with_call(call, span)
    return call


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await _traced_call(continuation, details, request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await _traced_call(continuation, details, request)


def client_tracing_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The interceptors, or none while nothing records spans: an intercepted grpc.aio call
    costs an extra task and wrapper on every call of the hot path."""
    if not tracing_active():
        return []
    return [_UnaryUnary(), _UnaryStream()]
