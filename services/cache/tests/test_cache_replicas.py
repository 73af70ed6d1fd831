"""Several cache replicas on one Redis agree on what is cached, also across a Redis restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.common.v1 import caching_pb2
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.health import READY, degraded
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer
from llmmesh_cache.testing import NodeFactory, scope
from llmmesh_cache.wiring import REDIS_DOWN

SEMANTIC = caching_pb2.CACHE_STATUS_SEMANTIC
EXACT = caching_pb2.CACHE_STATUS_EXACT
MISS = caching_pb2.CACHE_STATUS_MISS
SYNC_TIMEOUT_S = 5.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Waits until a replica has caught up with the change stream."""
    deadline = asyncio.get_running_loop().time() + SYNC_TIMEOUT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("replicas did not agree in time")
        await asyncio.sleep(0.02)


async def test_semantic_lookup_on_one_replica_finds_entries_stored_through_another(
    redis_url: str, start_node: NodeFactory
) -> None:
    replica_a = await start_node(redis_url)
    replica_b = await start_node(redis_url)
    stored = await replica_a.store(scope("What is the capital of France?"), "Paris.")

    async def b_finds_it() -> bool:
        reply = await replica_b.lookup(scope("what is the capital of France"))
        return bool(reply.status == SEMANTIC and reply.entry_id == stored.entry_id)

    await eventually(b_finds_it)


async def test_invalidation_through_one_replica_is_seen_by_another(
    redis_url: str, start_node: NodeFactory
) -> None:
    replica_a = await start_node(redis_url)
    replica_b = await start_node(redis_url)
    await replica_a.store(scope("What is the capital of France?"))

    async def b_hits() -> bool:
        reply = await replica_b.lookup(scope("what is the capital of France"))
        return bool(reply.status == SEMANTIC)

    await eventually(b_hits)
    removed = await replica_a.stub.Invalidate(cache_service_pb2.InvalidateRequest(tenant="acme"))
    assert removed.removed == 1
    for prompt in ("What is the capital of France?", "what is the capital of France"):
        reply = await replica_b.lookup(scope(prompt), similarity_threshold=0.0)
        assert reply.status == MISS


async def test_a_replica_started_later_loads_existing_entries_into_its_index(
    redis_url: str, start_node: NodeFactory
) -> None:
    replica_a = await start_node(redis_url)
    await replica_a.store(scope("What is the capital of France?"))
    late_replica = await start_node(redis_url)
    reply = await late_replica.lookup(scope("what is the capital of France"))
    assert reply.status == SEMANTIC


async def test_after_a_redis_restart_the_cache_is_empty_and_works_again(
    start_node: NodeFactory,
) -> None:
    server = RedisServer()
    server.start()
    try:
        replica_a = await start_node(server.url)
        replica_b = await start_node(server.url)
        await replica_a.store(scope("What is the capital of France?"))

        async def b_hits() -> bool:
            reply = await replica_b.lookup(scope("what is the capital of France"))
            return bool(reply.status == SEMANTIC)

        await eventually(b_hits)
        server.stop()
        with pytest.raises(grpc.aio.AioRpcError) as outage:
            await replica_a.lookup(scope("What is the capital of France?"))
        assert outage.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(outage.value).reason == "CACHE_BACKEND_UNAVAILABLE"
        assert await replica_a.wiring.readiness_checks[0]() == degraded(REDIS_DOWN)
        server.start()

        async def both_miss() -> bool:
            try:
                replies = [
                    await replica.lookup(scope(prompt), similarity_threshold=0.0)
                    for replica in (replica_a, replica_b)
                    for prompt in (
                        "What is the capital of France?",
                        "what is the capital of France",
                    )
                ]
            except grpc.aio.AioRpcError:
                return False  # reconnecting
            return all(reply.status == MISS for reply in replies)

        await eventually(both_miss)
        assert await replica_a.wiring.readiness_checks[0]() == READY
        assert (await replica_a.store(scope("What is the capital of Spain?"))).stored

        async def b_hits_new_entry() -> bool:
            reply = await replica_b.lookup(scope("what is the capital of Spain"))
            return bool(reply.status == SEMANTIC)

        await eventually(b_hits_new_entry)
    finally:
        server.close()


async def test_a_replica_starts_without_redis_and_reports_itself_ready_but_degraded(
    start_node: NodeFactory,
) -> None:
    # A lookup without Redis fails and the router treats it as a miss: answers still flow.
    node = await start_node(f"redis://127.0.0.1:{free_port()}/0")
    assert await node.wiring.readiness_checks[0]() == degraded(REDIS_DOWN)
    with pytest.raises(grpc.aio.AioRpcError) as outage:
        await node.lookup(scope("What is the capital of France?"))
    assert outage.value.code() == grpc.StatusCode.UNAVAILABLE
