"""Broken streams end in errors, cancellation reaches the upstream, deadlines bound every wait."""

from __future__ import annotations

import time

import grpc
import pytest

from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import (
    DEFAULT_ANSWER_CHUNKS,
    FakeOpenAI,
    FakeUpstream,
    cut_stream,
    hang,
    malformed_chunk,
    slow_first_token,
    slow_tokens,
)
from llmmesh_provider.testing import (
    TEST_KEY_ENV,
    collect,
    generate_request,
    instance_for,
    policy_with,
    running_provider,
)


async def test_a_cut_stream_ends_with_an_error_after_the_partial_deltas(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(cut_stream(after_chunks=2))

    outcome = await collect(provider_for, generate_request())

    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS[:2])
    failure = outcome.failure
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_STREAM_CUT")
    assert failure.metadata["delivered_deltas"] == str(len(outcome.deltas))
    assert failure.metadata["delivered_chars"] == str(len(outcome.text))
    assert fake_upstream.last_request.cut


async def test_a_malformed_chunk_is_an_error_not_silence(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(malformed_chunk(after_chunks=1))

    outcome = await collect(provider_for, generate_request())

    assert outcome.text == DEFAULT_ANSWER_CHUNKS[0]
    assert outcome.failure.code == grpc.StatusCode.INTERNAL
    assert outcome.failure.reason == "UPSTREAM_MALFORMED_RESPONSE"
    assert outcome.failure.metadata["delivered_deltas"] == "1"


async def test_a_cancelled_call_closes_the_upstream_connection(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(slow_tokens(0.5))
    call = provider_for.Generate(generate_request(), timeout=10)
    await call.read()

    call.cancel()

    upstream = fake_upstream.last_request
    await upstream.wait_ended(timeout_s=3)
    assert upstream.disconnected
    assert not upstream.completed


async def test_the_callers_deadline_bounds_an_upstream_that_never_answers(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(hang())
    started = time.monotonic()

    outcome = await collect(provider_for, generate_request(), timeout_s=0.5)

    assert time.monotonic() - started < 2
    assert outcome.failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    upstream = fake_upstream.last_request
    await upstream.wait_ended(timeout_s=3)
    assert upstream.disconnected


async def test_the_callers_deadline_bounds_a_stream_that_stalls_part_way(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(hang(after_chunks=2))

    # Long enough for the first two chunks to arrive on a busy machine.
    outcome = await collect(provider_for, generate_request(), timeout_s=2.0)

    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS[:2])
    assert outcome.failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.failure.reason == "UPSTREAM_TIMEOUT"
    assert outcome.failure.metadata["delivered_deltas"] == str(len(outcome.deltas))


async def test_the_instance_timeout_bounds_a_hung_upstream_without_a_caller_deadline(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(hang())
    instance = instance_for(fake_openai, api_key_env=TEST_KEY_ENV, request_timeout_s=0.3)
    async with running_provider(policy_with(instance)) as stub:
        outcome = await collect(stub, generate_request(), timeout_s=None)

    assert outcome.failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.failure.reason == "UPSTREAM_TIMEOUT"
    assert outcome.failure.metadata["timeout_ms"] == "300"


async def test_a_slow_first_token_within_the_deadline_still_succeeds(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(slow_first_token(0.3))
    async with running_provider(
        policy_with(instance_for(fake_openai, api_key_env=TEST_KEY_ENV))
    ) as stub:
        outcome = await collect(stub, generate_request(), timeout_s=5)

    assert outcome.error is None
    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS)


@pytest.mark.parametrize("margin_ms", [500.0])
async def test_a_deadline_shorter_than_the_margin_sends_nothing_upstream(
    fake_openai: FakeOpenAI, margin_ms: float
) -> None:
    instance = instance_for(fake_openai, api_key_env=TEST_KEY_ENV)
    async with running_provider(policy_with(instance), deadline_margin_ms=margin_ms) as stub:
        outcome = await collect(stub, generate_request(), timeout_s=0.3)

    assert outcome.failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.failure.reason == "UPSTREAM_TIMEOUT"
    assert fake_openai.request_count == 0
