"""Upstream HTTP calls get a CLIENT span and carry the trace to the upstream, through the
real SDK; the span records no key and no prompt."""

from __future__ import annotations

import openai
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from llmmesh.testing.fake_upstreams import FakeOpenAI, UpstreamProblem, http_error
from llmmesh.testing.spans import span_exporter
from llmmesh_provider.http_tracing import traced_http_client

SECRET_KEY = "sk-never-in-a-span"
PROMPT = "a prompt that must stay private"


def _client(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=SECRET_KEY, base_url=fake.base_url, max_retries=0, http_client=traced_http_client()
    )


async def test_sdk_request_has_an_http_span_and_sends_its_trace_context() -> None:
    exporter = span_exporter()
    exporter.clear()
    async with FakeOpenAI() as fake:
        client = _client(fake)
        with trace.get_tracer("test").start_as_current_span("parent") as parent:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            async for _ in stream:
                pass
        await client.close()
        traceparent = fake.last_request.headers["traceparent"]
    [http_span] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert http_span.name == "POST"
    assert http_span.attributes is not None
    assert http_span.attributes["http.response.status_code"] == 200
    assert http_span.attributes["url.path"] == "/v1/chat/completions"
    assert http_span.parent is not None
    assert http_span.parent.span_id == parent.get_span_context().span_id
    assert traceparent.split("-")[1] == format(parent.get_span_context().trace_id, "032x")
    recorded = repr(http_span.attributes) + repr(http_span.events)
    assert SECRET_KEY not in recorded
    assert PROMPT not in recorded


async def test_upstream_error_status_marks_the_http_span_as_failed() -> None:
    exporter = span_exporter()
    exporter.clear()
    async with FakeOpenAI() as fake:
        fake.enqueue(http_error(UpstreamProblem.SERVICE_UNAVAILABLE))
        client = _client(fake)
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            )
        await client.close()
    [http_span] = exporter.get_finished_spans()
    assert http_span.attributes is not None
    assert http_span.attributes["http.response.status_code"] == 503
    assert not http_span.status.is_ok
