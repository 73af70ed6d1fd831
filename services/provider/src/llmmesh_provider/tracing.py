"""GenAI client spans around upstream calls, per the OpenTelemetry GenAI conventions.

Each upstream call gets a GenAI span (with the HTTP span of `http_tracing` beneath it), where an
operator sees its model, finish reason, token counts and first-chunk time.
Prompt and answer text never enter them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from opentelemetry import trace

from llmmesh.runtime import semconv
from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import Completion, Sampling
from llmmesh_provider.upstream_errors import UpstreamTarget

TRACER_NAME = "llmmesh.provider"


class UpstreamCallSpan:
    """One upstream call's span, filled in as the call goes."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._started_s = time.monotonic()
        self._first_chunk_seen = False

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Makes the span current while waiting on the upstream, so HTTP spans nest under it.

        It is never current across a generator's `yield`, where the caller's code runs.
        """
        with trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    def chunk_arrived(self) -> None:
        if not self._first_chunk_seen:
            self._first_chunk_seen = True
            self._span.set_attribute(
                semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time.monotonic() - self._started_s
            )

    def completed(self, completion: Completion) -> None:
        self._span.set_attributes(
            {
                semconv.GEN_AI_RESPONSE_MODEL: completion.response_model,
                semconv.GEN_AI_RESPONSE_ID: completion.provider_request_id,
                semconv.GEN_AI_RESPONSE_FINISH_REASONS: [completion.finish_reason.value],
                semconv.GEN_AI_USAGE_INPUT_TOKENS: completion.usage.input_tokens,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: completion.usage.output_tokens,
            }
        )

    def failed(self, failure: RpcFailure) -> None:
        self._span.set_attributes(
            {
                semconv.ERROR_TYPE: failure.code.name,
                semconv.ERROR_REASON: failure.reason,
            }
        )
        self._span.set_status(trace.StatusCode.ERROR, failure.reason)


@contextlib.contextmanager
def upstream_call_span(
    tracer: trace.Tracer, operation: str, target: UpstreamTarget, sampling: Sampling | None = None
) -> Iterator[UpstreamCallSpan]:
    """A CLIENT span named `{operation} {model}`, e.g. "chat gpt-4o-mini" or "embeddings ...".

    The span is started, not made current: it may stay open across a streaming handler's
    yields. `activated` makes it current around each wait on the upstream.
    """
    attributes: dict[str, str | int | float] = {
        semconv.GEN_AI_OPERATION_NAME: operation,
        semconv.GEN_AI_PROVIDER_NAME: target.backend,
        semconv.GEN_AI_REQUEST_MODEL: target.model,
        semconv.PROVIDER_INSTANCE: target.instance,
    }
    if sampling is not None and sampling.max_tokens:
        attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] = sampling.max_tokens
    if sampling is not None and sampling.temperature is not None:
        attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] = sampling.temperature
    span = tracer.start_span(
        f"{operation} {target.model}", kind=trace.SpanKind.CLIENT, attributes=attributes
    )
    call_span = UpstreamCallSpan(span)
    try:
        yield call_span
    except RpcFailure as failure:
        call_span.failed(failure)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        # The caller went away; the upstream request was abandoned with it.
        span.add_event(semconv.EVENT_CANCELLED)
        raise
    finally:
        span.end()
