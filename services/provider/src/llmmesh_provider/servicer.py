"""The ProviderService gRPC handlers: validate, pick the instance, stream, map every failure."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeAlias

import grpc
import grpc.aio
import structlog
from opentelemetry import trace

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_pb2, provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.errors import RpcFailure, abort
from llmmesh_provider.backend import ChatEvent, ChatRequest, Completion, FinishReason, TextChunk
from llmmesh_provider.bursts import Bursts
from llmmesh_provider.registry import ProviderInstance, ProviderRegistry
from llmmesh_provider.tracing import TRACER_NAME, UpstreamCallSpan, upstream_call_span
from llmmesh_provider.upstream_errors import UpstreamTarget, malformed, stream_cut, timed_out
from llmmesh_provider.validation import EmbedLimits, validate_embed, validate_generate

logger = structlog.get_logger(__name__)

_FINISH_REASONS = {
    FinishReason.UNSPECIFIED: chat_pb2.FINISH_REASON_UNSPECIFIED,
    FinishReason.STOP: chat_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: chat_pb2.FINISH_REASON_LENGTH,
    FinishReason.CONTENT_FILTER: chat_pb2.FINISH_REASON_CONTENT_FILTER,
    FinishReason.TOOL_CALLS: chat_pb2.FINISH_REASON_TOOL_CALLS,
}

GenerateContext: TypeAlias = grpc.aio.ServicerContext[
    provider_service_pb2.GenerateRequest, provider_service_pb2.GenerateResponse
]
EmbedContext: TypeAlias = grpc.aio.ServicerContext[
    provider_service_pb2.EmbedRequest, provider_service_pb2.EmbedResponse
]


class ProviderServicer(provider_service_pb2_grpc.ProviderServiceServicer):
    """Serves Generate, Embed and ListModels over the configured instances."""

    def __init__(
        self,
        registry: ProviderRegistry,
        *,
        embed_limits: EmbedLimits,
        deadline_margin_s: float,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._registry = registry
        self._embed_limits = embed_limits
        self._deadline_margin_s = deadline_margin_s
        self._tracer = tracer or trace.get_tracer(TRACER_NAME)

    async def Generate(
        self, request: provider_service_pb2.GenerateRequest, context: GenerateContext
    ) -> AsyncIterator[provider_service_pb2.GenerateResponse]:
        progress = _Progress()
        try:
            valid = validate_generate(request)
            instance, backend = self._registry.chat_backend(valid.instance, valid.model)
            target = UpstreamTarget(instance.name, instance.backend, valid.model)
            timeout_s = self._upstream_timeout_s(context, instance, target)
            chat = ChatRequest(valid.model, valid.messages, valid.sampling, timeout_s)
            with upstream_call_span(self._tracer, "chat", target, valid.sampling) as span:
                async for response in _relay(
                    backend.stream_chat(chat), span, progress, target, timeout_s
                ):
                    yield response
        except RpcFailure as failure:
            if progress.deltas:
                failure = _with_progress(failure, progress)
            logger.info(
                "generation failed",
                instance=request.instance,
                model=request.model,
                code=failure.code.name,
                reason=failure.reason,
                delivered_deltas=progress.deltas,
            )
            await abort(context, failure)

    async def Embed(
        self, request: provider_service_pb2.EmbedRequest, context: EmbedContext
    ) -> provider_service_pb2.EmbedResponse:
        try:
            texts = validate_embed(request, self._embed_limits)
            instance, embedder, model = self._registry.embedder(request.instance, request.model)
            target = UpstreamTarget(instance.name, instance.backend, model)
            timeout_s = self._upstream_timeout_s(context, instance, target)
            with upstream_call_span(self._tracer, "embeddings", target) as span:
                try:
                    async with asyncio.timeout(timeout_s):
                        with span.activated():
                            batch = await embedder.embed(texts, model, timeout_s)
                except TimeoutError:
                    raise timed_out(target, timeout_s) from None
                dimensions = {len(vector) for vector in batch.vectors}
                if len(dimensions) != 1 or 0 in dimensions:
                    raise malformed(target, "embeddings of differing or zero length")
        except RpcFailure as failure:
            logger.info(
                "embedding failed",
                instance=request.instance,
                model=request.model,
                code=failure.code.name,
                reason=failure.reason,
            )
            await abort(context, failure)
        return provider_service_pb2.EmbedResponse(
            embeddings=[provider_pb2.Embedding(values=vector) for vector in batch.vectors],
            dimensions=dimensions.pop(),
            model=batch.model,
            backend=instance.backend,
        )

    async def ListModels(
        self,
        request: provider_service_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[
            provider_service_pb2.ListModelsRequest, provider_service_pb2.ListModelsResponse
        ],
    ) -> provider_service_pb2.ListModelsResponse:
        return provider_service_pb2.ListModelsResponse(
            models=[
                provider_pb2.ProviderModel(
                    instance=instance.name, backend=instance.backend, model=model
                )
                for instance in self._registry.instances
                for model in instance.models
            ]
        )

    def _upstream_timeout_s(
        self,
        context: GenerateContext | EmbedContext,
        instance: ProviderInstance,
        target: UpstreamTarget,
    ) -> float:
        """The instance's bound, shortened to what is left of the caller's deadline."""
        remaining_s: float | None = context.time_remaining()
        if remaining_s is None:
            return instance.request_timeout_s
        budget_s = remaining_s - self._deadline_margin_s
        if budget_s <= 0:
            raise timed_out(target, max(remaining_s, 0.0))
        return min(instance.request_timeout_s, budget_s)


@dataclasses.dataclass
class _Progress:
    """How much of the answer the caller already received."""

    deltas: int = 0
    chars: int = 0


async def _relay(
    events: AsyncGenerator[ChatEvent, None],
    span: UpstreamCallSpan,
    progress: _Progress,
    target: UpstreamTarget,
    timeout_s: float,
) -> AsyncIterator[provider_service_pb2.GenerateResponse]:
    """The backend's events as responses, all within the deadline; text chunks that are
    ready together go as one delta.

    A burst (a whole answer in one read of an instant upstream) costs one message per hop
    instead of one per chunk; a paced stream is relayed chunk by chunk with no added wait.
    The deadline is absolute and bounds each wait for the upstream, so time spent writing to
    the caller counts too; the timeout scope never spans a `yield`, where a cancellation
    would land outside it.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with Bursts(events, span.activated) as bursts:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    burst = await bursts.next_burst()
            except TimeoutError:
                raise timed_out(target, timeout_s) from None
            if not burst:
                # The backend broke its contract by ending without a Completion.
                raise stream_cut(target)
            texts = [event.text for event in burst if isinstance(event, TextChunk)]
            if texts:
                for text in texts:
                    span.chunk_arrived()
                    progress.chars += len(text)
                progress.deltas += 1
                yield _delta("".join(texts))
            last = burst[-1]
            if isinstance(last, Completion):
                span.completed(last)
                yield _summary(last)
                return


def _delta(text: str) -> provider_service_pb2.GenerateResponse:
    return provider_service_pb2.GenerateResponse(delta=chat_pb2.TextDelta(text=text))


def _summary(completion: Completion) -> provider_service_pb2.GenerateResponse:
    return provider_service_pb2.GenerateResponse(
        summary=provider_pb2.GenerationSummary(
            finish_reason=_FINISH_REASONS[completion.finish_reason],
            usage=chat_pb2.Usage(
                input_tokens=completion.usage.input_tokens,
                output_tokens=completion.usage.output_tokens,
                cached_input_tokens=completion.usage.cached_input_tokens,
            ),
            provider_request_id=completion.provider_request_id,
            response_model=completion.response_model,
        )
    )


def _with_progress(failure: RpcFailure, progress: _Progress) -> RpcFailure:
    """The failure, telling the caller how much of the answer it already received."""
    return RpcFailure(
        failure.code,
        failure.message,
        reason=failure.reason,
        metadata={
            **failure.metadata,
            "delivered_deltas": str(progress.deltas),
            "delivered_chars": str(progress.chars),
        },
        retry_after_s=failure.retry_after_s,
        field_violations=failure.field_violations,
        quota_violations=failure.quota_violations,
    )
