"""The server interceptor every service runs: a SERVER span per RPC, and rich errors.

Handlers raise `RpcFailure` wherever an error is found, in unary and streaming RPCs alike;
it leaves as its rich status, and anything unexpected becomes INTERNAL with no internals in
the message. An unexpected exception is logged and recorded on the span by its type and
stack only: its message may quote a prompt (see `redaction`). Requests are decoded here
rather than by grpc.aio, so malformed bytes get INVALID_ARGUMENT (see `request_decoding`).

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
import inspect
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
from llmmesh.runtime.redaction import exception_type, traceback_without_messages
from llmmesh.runtime.request_decoding import RequestDecoder, rpc_attributes

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("llmmesh.runtime.grpc")

_INTERNAL = RpcFailure(grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL")
# Health probes arrive every second from every peer and balancer; they are not traced.
UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


@contextlib.contextmanager
def _server_span(method: str, context: Context) -> Iterator[Span | None]:
    if method.startswith(UNTRACED_PREFIXES):
        yield None
        return
    metadata = {key: value for key, value in (context.invocation_metadata() or ())}
    parent = propagate.extract(metadata)
    span = tracer.start_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=rpc_attributes(method)
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
        log.error(
            "unhandled_error", method=method, error_type=exception_type(error), exc_info=error
        )
        if span is not None:
            # span.record_exception would write the message as exception.message.
            span.add_event(
                semconv.EVENT_EXCEPTION,
                {
                    semconv.EXCEPTION_TYPE: exception_type(error),
                    semconv.EXCEPTION_STACKTRACE: traceback_without_messages(error),
                },
            )
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


Decode: TypeAlias = Callable[[Any, str], Any]


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str, decode: Decode
) -> Callable[..., Any]:
    """Unary handlers, and streaming ones that write with `context.write` instead of yielding."""

    async def handle(raw: Any, context: Context) -> Any:
        with _server_span(method, context) as span:
            try:
                request = decode(raw, context.peer())
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


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]], method: str, decode: Decode
) -> Callable[..., Any]:
    async def handle(raw: Any, context: Context) -> AsyncIterator[Any]:
        with _server_span(method, context) as span:
            try:
                request = decode(raw, context.peer())
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
        if handler is None:
            return handler
        method = handler_call_details.method
        decoder = RequestDecoder(handler.request_deserializer, method, rpc_attributes(method))
        decode = decoder.decode_stream if handler.request_streaming else decoder.decode
        behavior = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        # grpc.aio tells a writing streaming handler from a yielding one by its function kind.
        yields = handler.response_streaming and inspect.isasyncgenfunction(behavior)
        wrap = _wrap_stream if yields else _wrap_unary
        # No request_deserializer: the wrapped handler takes the raw bytes and decodes them.
        return _HANDLER_FACTORIES[handler.request_streaming, handler.response_streaming](
            wrap(behavior, method, decode), response_serializer=handler.response_serializer
        )


# (request streaming, response streaming) -> the grpc factory of that kind of handler.
_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
