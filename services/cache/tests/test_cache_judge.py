"""The optional judge: a catalog model, through the real provider service, asked whether two
prompts ask the same thing. Its verdicts are cached per pair; any failure is a miss."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from llmmesh.common.v1 import caching_pb2
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import FakeOpenAI, Reply, hang
from llmmesh.testing.ports import free_port
from llmmesh_cache.testing import NodeFactory, counter_total, policy_document, scope
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.testing import TEST_KEY, TEST_KEY_ENV, instance_for, policy_with
from llmmesh_provider.wiring import build_servicer as build_provider

SEMANTIC = caching_pb2.CACHE_STATUS_SEMANTIC
MISS = caching_pb2.CACHE_STATUS_MISS
YES, NO = Reply(chunks=("YES",)), Reply(chunks=("No.",))


def judged_policy(verifier: str) -> dict[str, Any]:
    document = policy_document(verifier=verifier)
    document["cache"]["judge"] = {"model": "judge", "timeout_s": 1.0}
    document["models"] = [{"name": "judge", "provider": "upstream", "upstream_model": "mini"}]
    return document


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    async with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
async def provider_address(fake: FakeOpenAI) -> AsyncIterator[str]:
    wiring = await build_provider(
        ProviderSettings(), policy_with(instance_for(fake, api_key_env=TEST_KEY_ENV))
    )
    server = grpc.aio.server()
    provider_service_pb2_grpc.add_ProviderServiceServicer_to_server(wiring.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)
    for close in wiring.closers:
        await close()


async def test_the_judge_serves_a_paraphrase_alignment_cannot_see_and_is_asked_once(
    start_node: NodeFactory, fake: FakeOpenAI, provider_address: str
) -> None:
    node = await start_node(document=judged_policy("judge"), provider_address=provider_address)
    await node.store(scope("How do I quit Vim?"))
    fake.enqueue(YES)
    first = await node.lookup(scope("How can I exit the Vim editor?"), similarity_threshold=0.0)
    again = await node.lookup(scope("How can I exit the Vim editor?"), similarity_threshold=0.0)
    assert first.status == SEMANTIC
    assert again.status == SEMANTIC
    assert fake.request_count == 1
    asked = fake.requests[0].body["messages"][-1]["content"]
    assert "How do I quit Vim?" in asked
    assert "How can I exit the Vim editor?" in asked


async def test_a_no_from_the_judge_is_a_miss(
    start_node: NodeFactory, fake: FakeOpenAI, provider_address: str
) -> None:
    node = await start_node(document=judged_policy("judge"), provider_address=provider_address)
    await node.store(scope("How do I quit Vim?"))
    fake.enqueue(NO)
    found = await node.lookup(scope("How do I quit Emacs?"), similarity_threshold=0.0)
    assert found.status == MISS


async def test_numbers_and_negations_are_never_left_to_the_judge(
    start_node: NodeFactory, fake: FakeOpenAI, provider_address: str
) -> None:
    node = await start_node(document=judged_policy("judge"), provider_address=provider_address)
    await node.store(scope("Convert 5 km to miles"))
    fake.enqueue(YES, YES)
    number = await node.lookup(scope("Convert 6 km to miles"), similarity_threshold=0.0)
    negated = await node.lookup(scope("Do not convert 5 km to miles"), similarity_threshold=0.0)
    assert (number.status, negated.status) == (MISS, MISS)
    assert fake.request_count == 0


async def test_behind_alignment_the_judge_can_only_refuse(
    start_node: NodeFactory, fake: FakeOpenAI, provider_address: str
) -> None:
    document = judged_policy("alignment_and_judge")
    node = await start_node(document=document, provider_address=provider_address)
    await node.store(scope("What is the capital of Peru?"))
    fake.enqueue(NO, YES)
    aligned = await node.lookup(scope("what's the capital of Peru"), similarity_threshold=0.0)
    unaligned = await node.lookup(scope("Which city is Peru's seat of government?"),
                                  similarity_threshold=0.0)  # fmt: skip
    assert (aligned.status, unaligned.status) == (MISS, MISS)
    assert fake.request_count == 1


async def test_a_judge_that_does_not_answer_in_time_is_a_counted_miss(
    start_node: NodeFactory, fake: FakeOpenAI, provider_address: str
) -> None:
    reader = InMemoryMetricReader()
    node = await start_node(
        document=judged_policy("judge"),
        provider_address=provider_address,
        meter=MeterProvider(metric_readers=[reader]).get_meter("test"),
    )
    await node.store(scope("How do I quit Vim?"))
    fake.enqueue(hang())
    found = await node.lookup(scope("How can I exit the Vim editor?"), similarity_threshold=0.0)
    assert found.status == MISS
    assert counter_total(reader, "llmmesh.cache.judge.verdicts",
                         **{"llmmesh.cache.outcome": "error"}) == 1  # fmt: skip


async def test_an_unreachable_provider_is_a_miss(start_node: NodeFactory) -> None:
    node = await start_node(
        document=judged_policy("judge"), provider_address=f"127.0.0.1:{free_port()}"
    )
    await node.store(scope("How do I quit Vim?"))
    found = await node.lookup(scope("How can I exit the Vim editor?"), similarity_threshold=0.0)
    assert found.status == MISS
