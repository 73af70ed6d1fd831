"""Each backend streams the upstream's text unchanged and closes with a complete summary."""

from __future__ import annotations

from typing import Any

import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import (
    DEFAULT_ANSWER_CHUNKS,
    FakeAnthropic,
    FakeOllama,
    FakeOpenAI,
    FakeUpstream,
    Reply,
)
from llmmesh_provider.testing import (
    TEST_KEY_ENV,
    collect,
    generate_request,
    instance_for,
    policy_with,
    running_provider,
)


async def test_each_backend_passes_deltas_on_as_they_arrive_and_reports_usage(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    outcome = await collect(provider_for, generate_request(prompt="one two three four"))

    assert outcome.error is None
    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS)
    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert outcome.summary.usage.input_tokens == 4
    assert outcome.summary.usage.output_tokens == len(DEFAULT_ANSWER_CHUNKS)
    assert outcome.summary.response_model == "test-model"
    assert fake_upstream.request_count == 1


async def test_each_backend_keeps_its_upstream_connection_alive_between_answers(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    # A body left unread after the final frame makes the HTTP client drop the connection,
    # so every answer would pay a new TCP (and, upstream, TLS) handshake.
    for _ in range(3):
        outcome = await collect(provider_for, generate_request())
        assert outcome.error is None

    peers = {request.peer for request in fake_upstream.requests}
    assert len(peers) == 1, peers


async def test_each_backend_reports_length_when_max_tokens_stops_the_answer(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    outcome = await collect(provider_for, generate_request(max_tokens=2))

    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS[:2])
    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_LENGTH


async def test_openai_summary_carries_cached_tokens_request_id_and_answering_model(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(Reply(cached_input_tokens=3, response_model="test-model-2026-01-01"))
    async with running_provider(
        policy_with(instance_for(fake_openai, api_key_env=TEST_KEY_ENV))
    ) as stub:
        outcome = await collect(stub, generate_request(prompt="a b c d e"))

    assert outcome.summary is not None
    assert outcome.summary.usage.cached_input_tokens == 3
    assert outcome.summary.usage.input_tokens == 5
    assert outcome.summary.response_model == "test-model-2026-01-01"
    assert outcome.summary.provider_request_id.startswith("req_")
    sent: dict[str, Any] = fake_openai.last_request.body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_anthropic_gets_system_apart_and_a_default_max_tokens(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.enqueue(Reply(cached_input_tokens=2))
    instance = instance_for(fake_anthropic, api_key_env=TEST_KEY_ENV, default_max_tokens=777)
    async with running_provider(policy_with(instance)) as stub:
        outcome = await collect(
            stub, generate_request(system="be brief", prompt="hello there friend")
        )

    sent: dict[str, Any] = fake_anthropic.last_request.body
    assert sent["system"] == "be brief"
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert sent["max_tokens"] == 777
    assert outcome.summary is not None
    # Anthropic bills cached prompt tokens apart; the summary counts every prompt token.
    assert outcome.summary.usage.input_tokens == 5
    assert outcome.summary.usage.cached_input_tokens == 2
    assert outcome.summary.provider_request_id.startswith("req_")


@pytest.mark.parametrize("fake_upstream", ["anthropic", "openai"], indirect=True)
async def test_a_filtered_answer_finishes_as_content_filter(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(Reply(content_filtered_finish=True))

    outcome = await collect(provider_for, generate_request())

    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_CONTENT_FILTER


async def test_ollama_gets_max_tokens_as_num_predict(fake_ollama: FakeOllama) -> None:
    async with running_provider(policy_with(instance_for(fake_ollama))) as stub:
        await collect(stub, generate_request(max_tokens=3))

    assert fake_ollama.last_request.body["options"] == {"num_predict": 3}


async def test_deltas_reach_the_caller_before_the_upstream_finishes(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(Reply(token_delay_s=0.3))
    async with running_provider(
        policy_with(instance_for(fake_openai, api_key_env=TEST_KEY_ENV))
    ) as stub:
        call = stub.Generate(generate_request(), timeout=10)
        first = await call.read()
        # The upstream is still pacing its later chunks, so nothing was buffered.
        assert fake_openai.last_request.completed is False
        assert first.delta.text == DEFAULT_ANSWER_CHUNKS[0]
        call.cancel()


async def test_chunks_that_arrive_together_go_as_one_delta_and_paced_ones_one_by_one(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    burst = await collect(provider_for, generate_request())
    fake_upstream.enqueue(Reply(token_delay_s=0.05))
    paced = await collect(provider_for, generate_request())

    assert burst.text == paced.text == "".join(DEFAULT_ANSWER_CHUNKS)
    assert len(burst.deltas) < len(DEFAULT_ANSWER_CHUNKS)
    assert paced.deltas == list(DEFAULT_ANSWER_CHUNKS)


async def test_an_open_endpoint_instance_accepts_any_model_name(fake_openai: FakeOpenAI) -> None:
    async with running_provider(
        policy_with(instance_for(fake_openai, api_key_env=TEST_KEY_ENV))
    ) as stub:
        outcome = await collect(stub, generate_request(model="whatever-the-endpoint-serves"))

    assert outcome.summary is not None
    assert fake_openai.last_request.body["model"] == "whatever-the-endpoint-serves"


async def test_list_models_names_every_instance_and_its_chat_models(
    fake_openai: FakeOpenAI, fake_ollama: FakeOllama
) -> None:
    policy = policy_with(
        instance_for(fake_openai, "openai-primary", api_key_env=TEST_KEY_ENV, models=["a", "b"]),
        instance_for(fake_ollama, "local", models=["llama"], embedding_models=["nomic"]),
    )
    async with running_provider(policy) as stub:
        listed = await stub.ListModels(provider_service_pb2.ListModelsRequest())

    assert [(m.instance, m.backend, m.model) for m in listed.models] == [
        ("openai-primary", "openai", "a"),
        ("openai-primary", "openai", "b"),
        ("local", "ollama", "llama"),
    ]
