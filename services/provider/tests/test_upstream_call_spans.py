"""Each upstream call leaves a GenAI client span with its model, outcome and token counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime import semconv
from llmmesh_provider.config import parse_provider_policy
from llmmesh_provider.registry import build_registry
from llmmesh_provider.servicer import ProviderServicer
from llmmesh_provider.testing import collect, generate_request, policy_with, serving
from llmmesh_provider.validation import EmbedLimits

SECRET_PROMPT = "my secret prompt words"

Served = tuple[provider_service_pb2_grpc.ProviderServiceStub, Callable[[], list[ReadableSpan]]]


@pytest.fixture
async def traced_provider() -> AsyncIterator[Served]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    document: dict[str, Any] = policy_with(
        {"name": "sim", "backend": "simulated", "answer_tokens": 4},
        {"name": "flaky", "backend": "simulated", "faults": {"unavailable_rate": 1.0}},
    )
    registry = await build_registry(parse_provider_policy(document).providers, {})
    servicer = ProviderServicer(
        registry,
        embed_limits=EmbedLimits(max_inputs=8, max_input_chars=100),
        deadline_margin_s=0.05,
        tracer=tracer_provider.get_tracer("test"),
    )
    async with serving(servicer) as stub:
        yield stub, lambda: list(exporter.get_finished_spans())
    await registry.aclose()
    tracer_provider.shutdown()


async def test_a_generation_span_carries_genai_attributes_and_no_prompt_text(
    traced_provider: Served,
) -> None:
    stub, spans = traced_provider
    await collect(
        stub, generate_request(instance="sim", model="simulated-chat", prompt=SECRET_PROMPT)
    )

    (span,) = spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat simulated-chat"
    assert span.kind == trace.SpanKind.CLIENT
    assert attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[semconv.GEN_AI_PROVIDER_NAME] == "simulated"
    assert attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    assert attributes[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0  # type: ignore[operator]
    assert all(SECRET_PROMPT not in str(value) for value in attributes.values())


async def test_a_failed_call_marks_its_span_with_the_reason(traced_provider: Served) -> None:
    stub, spans = traced_provider
    await collect(stub, generate_request(instance="flaky", model="simulated-chat"))

    (span,) = spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert dict(span.attributes or {})[semconv.ERROR_REASON] == "UPSTREAM_UNAVAILABLE"


async def test_an_embedding_call_gets_its_own_span(traced_provider: Served) -> None:
    stub, spans = traced_provider
    await stub.Embed(provider_service_pb2.EmbedRequest(inputs=["alpha"]))

    (span,) = spans()
    assert span.name == "embeddings simulated-embed"
