"""With no Redis URL the cache runs embedded in memory, exact and semantic."""

from __future__ import annotations

import asyncio

from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.common.v1 import caching_pb2
from llmmesh_cache.testing import NodeFactory, policy_document, scope

EXACT = caching_pb2.CACHE_STATUS_EXACT
SEMANTIC = caching_pb2.CACHE_STATUS_SEMANTIC
MISS = caching_pb2.CACHE_STATUS_MISS


async def test_in_memory_cache_serves_exact_and_verified_semantic_hits(
    start_node: NodeFactory,
) -> None:
    node = await start_node()
    await node.store(scope("What is the capital of France?"), "Paris.")
    assert (await node.lookup(scope("What is the capital of France?"))).status == EXACT
    assert (await node.lookup(scope("what is the capital of France"))).status == SEMANTIC
    near_miss = await node.lookup(scope("What is the capital of Germany?"), similarity_threshold=0)
    assert near_miss.status == MISS
    other_tenant = await node.lookup(scope("What is the capital of France?", tenant="globex"))
    assert other_tenant.status == MISS


async def test_in_memory_cache_expires_evicts_and_invalidates(start_node: NodeFactory) -> None:
    node = await start_node(document=policy_document(ttl_s=0.3, max_entries_per_tenant=2))
    for number in range(3):
        await node.store(scope(f"Question number {number}"))
    statuses = [(await node.lookup(scope(f"Question number {n}"))).status for n in range(3)]
    assert statuses == [MISS, EXACT, EXACT]
    removed = await node.stub.Invalidate(
        cache_service_pb2.InvalidateRequest(tenant="acme", model="gpt-test")
    )
    assert removed.removed == 2
    await node.store(scope("Question number 7"))
    await asyncio.sleep(0.45)
    assert (await node.lookup(scope("Question number 7"))).status == MISS
    semantic = await node.lookup(scope("question number 7"), similarity_threshold=0)
    assert semantic.status == MISS
