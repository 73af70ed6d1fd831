"""The server interceptor every service runs: a SERVER span per RPC, and rich errors.

Handlers raise `RpcFailure` wherever an error is found, in unary and streaming RPCs alike;
it leaves as its rich status, and anything unexpected becomes INTERNAL with a logged stack
and no internals in the message.

The span is the mesh's own rather than opentelemetry-instrumentation-grpc's aio server
interceptor, which (0.66b) misses three things this gateway depends on: a status set with
`abort_with_status` (every rich error) is not recorded on the span; a cancelled call
(`asyncio.CancelledError`, a BaseException) ends its span with no status at all; and the
remote context is attached inside the handler's generator, so a stream closed from another
context fails to detach it. tests/test_tracing.py covers each case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeAlias

import grpc
import grpc.aio
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmmesh.runtime import semconv
from llmmesh.runtime.errors import RpcFailure, abort

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("llmmesh.runtime.grpc")

_INTERNAL = RpcFailure(grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL")
# Health probes arrive every second from every peer and balancer, and channels keep a
# health Watch open to every replica: they pass through untouched, neither traced nor
# wrapped (the stock Watch writes to its context instead of yielding).
UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {
        semconv.RPC_SYSTEM: "grpc",
        semconv.RPC_SERVICE: service,
        semconv.RPC_METHOD: name,
    }


@contextlib.contextmanager
def _server_span(method: str, context: Context) -> Iterator[Span | None]:
    metadata = {key: value for key, value in (context.invocation_metadata() or ())}
    parent = propagate.extract(metadata)
    span = tracer.start_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=_rpc_attributes(method)
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    finally:
        span.end()
        with contextlib.suppress(ValueError):  # a generator closed from another context
            otel_context.detach(token)


def _record(span: Span | None, code: grpc.StatusCode, reason: str = "") -> None:
    if span is None:
        return
    span.set_attribute(semconv.RPC_GRPC_STATUS_CODE, code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
        span.set_attribute(semconv.ERROR_TYPE, code.name)
    if reason:
        span.set_attribute(semconv.ERROR_REASON, reason)


async def _fail(context: Context, span: Span | None, error: Exception, method: str) -> None:
    failure = error if isinstance(error, RpcFailure) else _INTERNAL
    if not isinstance(error, RpcFailure):
        log.error("unhandled_error", method=method, exc_info=error)
        if span is not None:
            span.record_exception(error)
    _record(span, failure.code, failure.reason)
    await abort(context, failure)


def _record_cancelled(span: Span | None) -> None:
    if span is not None:
        span.add_event(semconv.EVENT_CANCELLED)
        _record(span, grpc.StatusCode.CANCELLED)


def _record_abort(span: Span | None, context: Context) -> None:
    """A handler aborted by itself; its status is on the context."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        _record(span, code)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
    async def handle(request: Any, context: Context) -> Any:
        with _server_span(method, context) as span:
            try:
                response = await behavior(request, context)
            except grpc.aio.AbortError:
                _record_abort(span, context)
                raise
            except asyncio.CancelledError:
                _record_cancelled(span)
                raise
            except Exception as error:  # noqa: BLE001 - every error must leave as a status
                await _fail(context, span, error, method)
            _record(span, grpc.StatusCode.OK)
            return response

    return handle


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., Any]:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        with _server_span(method, context) as span:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                _record_abort(span, context)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                _record_cancelled(span)
                raise
            except Exception as error:  # noqa: BLE001 - every error must leave as a status
                await _fail(context, span, error, method)
            _record(span, grpc.StatusCode.OK)

    return handle


class ServerCallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Traces each RPC and maps exceptions to statuses; see the module docstring."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNTRACED_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Client- and bidi-streaming handlers are not part of any llmmesh contract.
        return handler
