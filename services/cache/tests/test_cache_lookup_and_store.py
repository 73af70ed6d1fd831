"""Lookup and Store through gRPC against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh_cache.policy import DEFAULT_SIMILARITY_THRESHOLD
from llmmesh_cache.testing import NodeFactory, answer, policy_document, scope

EXACT = caching_pb2.CACHE_STATUS_EXACT
SEMANTIC = caching_pb2.CACHE_STATUS_SEMANTIC
MISS = caching_pb2.CACHE_STATUS_MISS
BYPASS = caching_pb2.CACHE_STATUS_BYPASS


async def test_exact_hit_replays_the_answer_in_its_original_chunking(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    stored = await node.store(scope("What is the capital of France?"), "The capital", " is Paris.")
    assert stored.stored
    hit = await node.lookup(scope("What is the capital of France?"))
    assert hit.status == EXACT
    assert list(hit.answer.chunks) == ["The capital", " is Paris."]
    assert hit.answer.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert hit.answer.usage.output_tokens == 2
    assert hit.answer.provider == "simulated-primary"
    assert hit.entry_id == stored.entry_id
    assert hit.similarity == pytest.approx(1.0)


async def test_whitespace_differences_still_hit_exactly(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is  the capital of\nFrance?"))
    assert (await node.lookup(scope(" What is the capital of France? "))).status == EXACT


async def test_tenants_never_see_each_others_entries_in_exact_or_semantic_mode(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?", tenant="acme"))
    exact = await node.lookup(scope("What is the capital of France?", tenant="globex"))
    semantic = await node.lookup(
        scope("what is the capital of France", tenant="globex"), similarity_threshold=0.0
    )
    assert exact.status == MISS
    assert semantic.status == MISS
    own = await node.lookup(scope("what is the capital of France", tenant="acme"))
    assert own.status == SEMANTIC


@pytest.mark.parametrize(
    ("stored_with", "looked_up_with"),
    [
        ({"temperature": 0.0}, {"temperature": 0.0, "top_p": 0.5}),
        ({"max_tokens": 100}, {"max_tokens": 200}),
        ({"stop": ["END"]}, {"stop": ["STOP"]}),
        ({"seed": 1}, {"seed": 2}),
        ({"tools": [chat_pb2.ToolDefinition(name="search")]}, {}),
        (
            {
                "response_format": chat_pb2.ResponseFormat(
                    type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
                )
            },
            {},
        ),
        ({}, {"temperature": 0.0}),
    ],
)
async def test_every_generation_parameter_is_part_of_the_scope(
    redis_url: str, start_node: NodeFactory, stored_with: dict, looked_up_with: dict
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?", **stored_with))
    exact = await node.lookup(scope("What is the capital of France?", **looked_up_with))
    semantic = await node.lookup(
        scope("what is the capital of France", **looked_up_with), similarity_threshold=0.0
    )
    assert (exact.status, semantic.status) == (MISS, MISS)


@pytest.mark.parametrize(
    "other",
    [
        {"model": "other-model"},
        {"system": "You are verbose."},
        {"system": ""},
    ],
)
async def test_model_and_system_prompt_are_part_of_the_scope(
    redis_url: str, start_node: NodeFactory, other: dict
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?"))
    exact = await node.lookup(scope("What is the capital of France?", **other))
    semantic = await node.lookup(
        scope("what is the capital of France", **other), similarity_threshold=0.0
    )
    assert (exact.status, semantic.status) == (MISS, MISS)


async def test_semantic_hit_reports_its_similarity_and_matched_entry(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    stored = await node.store(scope("What is the capital of France?"), "Paris.")
    hit = await node.lookup(scope("What is the capital city of France?"))
    assert hit.status == SEMANTIC
    assert hit.entry_id == stored.entry_id
    assert DEFAULT_SIMILARITY_THRESHOLD <= hit.similarity < 0.99
    assert list(hit.answer.chunks) == ["Paris."]


async def test_exact_mode_request_never_matches_semantically(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?"))
    reply = await node.lookup(
        scope("what is the capital of France"), mode=caching_pb2.CACHE_MODE_EXACT
    )
    assert reply.status == MISS


async def test_request_threshold_overrides_the_policy_threshold(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?"))
    strict = await node.lookup(scope("what is the capital of France"), similarity_threshold=1.0)
    assert strict.status == MISS


@pytest.mark.parametrize(
    ("stored_prompt", "near_miss"),
    [
        ("Book a flight from London to Paris", "Book a flight from Paris to London"),
        ("Is coffee bad for your health?", "Is coffee not bad for your health?"),
        ("What is the capital of France?", "What is the capital of Germany?"),
        ("Convert 10 km to miles", "Convert 12 km to miles"),
    ],
)
async def test_near_misses_are_refused_even_with_no_similarity_threshold(
    redis_url: str, start_node: NodeFactory, stored_prompt: str, near_miss: str
) -> None:
    node = await start_node(redis_url)
    await node.store(scope(stored_prompt))
    reply = await node.lookup(scope(near_miss), similarity_threshold=0.0)
    assert reply.status == MISS


async def test_nonzero_temperature_is_neither_stored_nor_looked_up_without_opt_in(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    warm = scope("Write a haiku about rain", temperature=0.7)
    skipped = await node.store(warm)
    assert (skipped.stored, skipped.skipped_reason) == (False, "TEMPERATURE_ABOVE_ZERO")
    assert (await node.lookup(warm)).status == BYPASS
    assert (await node.store(warm, allow_nonzero_temperature=True)).stored
    assert (await node.lookup(warm, allow_nonzero_temperature=True)).status == EXACT


async def test_policy_may_allow_nonzero_temperature(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url, policy_document(allow_nonzero_temperature=True))
    warm = scope("Write a haiku about rain", temperature=0.7)
    assert (await node.store(warm)).stored
    assert (await node.lookup(warm)).status == EXACT


async def test_bypass_mode_neither_stores_nor_serves(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url, policy_document(mode="bypass"))
    reply = await node.store(scope("What is the capital of France?"))
    assert (reply.stored, reply.skipped_reason) == (False, "CACHE_DISABLED")
    looked = await node.lookup(scope("What is the capital of France?"))
    assert looked.status == BYPASS


async def test_content_filtered_answers_are_not_stored(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    reply = await node.stub.Store(
        cache_service_pb2.StoreRequest(
            scope=scope("Tell me a story"),
            answer=answer("Once", finish=chat_pb2.FINISH_REASON_CONTENT_FILTER),
        )
    )
    assert (reply.stored, reply.skipped_reason) == (False, "CONTENT_FILTERED")
    assert (await node.lookup(scope("Tell me a story"))).status == MISS


async def test_entries_expire_after_the_policy_ttl(redis_url: str, start_node: NodeFactory) -> None:
    node = await start_node(redis_url, policy_document(ttl_s=0.3))
    await node.store(scope("What is the capital of France?"))
    assert (await node.lookup(scope("What is the capital of France?"))).status == EXACT
    await asyncio.sleep(0.45)
    assert (await node.lookup(scope("What is the capital of France?"))).status == MISS
    semantic = await node.lookup(scope("what is the capital of France"), similarity_threshold=0.0)
    assert semantic.status == MISS


async def test_least_recently_used_entries_are_evicted_beyond_max_entries(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url, policy_document(max_entries_per_tenant=3))
    for number in range(3):
        await node.store(scope(f"Question number {number}"))
    # Using the oldest entry makes the second one the least recently used.
    assert (await node.lookup(scope("Question number 0"))).status == EXACT
    await node.store(scope("Question number 3"))
    statuses = [(await node.lookup(scope(f"Question number {n}"))).status for n in range(4)]
    assert statuses == [EXACT, MISS, EXACT, EXACT]
    other_tenant = await node.store(scope("Question number 0", tenant="globex"))
    assert other_tenant.stored
    assert (await node.lookup(scope("Question number 0"))).status == EXACT


async def test_entries_are_evicted_beyond_max_bytes(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url, policy_document(max_bytes_per_tenant=6000))
    big_chunk = "x" * 1500
    for number in range(4):
        assert (await node.store(scope(f"Question number {number}"), big_chunk)).stored
    statuses = [(await node.lookup(scope(f"Question number {n}"))).status for n in range(4)]
    assert statuses[-1] == EXACT
    assert MISS in statuses
    too_big = await node.store(scope("Question number 9"), "y" * 7000)
    assert (too_big.stored, too_big.skipped_reason) == (False, "ENTRY_TOO_LARGE")


async def test_invalidation_by_entry_model_and_tenant(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    first = await node.store(scope("Question number 1"))
    await node.store(scope("Question number 2"))
    await node.store(scope("Question number 3", model="other-model"))
    await node.store(scope("Question number 4", tenant="globex"))
    by_entry = await node.stub.Invalidate(
        cache_service_pb2.InvalidateRequest(tenant="acme", entry_id=first.entry_id)
    )
    assert by_entry.removed == 1
    assert (await node.lookup(scope("Question number 1"))).status == MISS
    by_model = await node.stub.Invalidate(
        cache_service_pb2.InvalidateRequest(tenant="acme", model="other-model")
    )
    assert by_model.removed == 1
    assert (await node.lookup(scope("Question number 2"))).status == EXACT
    by_tenant = await node.stub.Invalidate(cache_service_pb2.InvalidateRequest(tenant="acme"))
    assert by_tenant.removed == 1
    assert (await node.lookup(scope("Question number 2"))).status == MISS
    assert (await node.lookup(scope("Question number 4", tenant="globex"))).status == EXACT


async def test_semantic_candidates_that_were_invalidated_are_never_served(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url)
    await node.store(scope("What is the capital of France?"))
    await node.stub.Invalidate(cache_service_pb2.InvalidateRequest(tenant="acme"))
    reply = await node.lookup(scope("what is the capital of France"), similarity_threshold=0.0)
    assert reply.status == MISS
