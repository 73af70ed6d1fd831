"""Fixtures for the cache tests: a real redis-server and cache nodes served over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from llmmesh.testing.redis_server import RedisServer, running_redis
from llmmesh_cache.testing import CacheNode, NodeFactory, start_cache_node


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def start_node() -> AsyncIterator[NodeFactory]:
    """Starts cache nodes (replicas) that are closed when the test ends."""
    nodes: list[CacheNode] = []

    async def start(redis_url: str = "", document: Any = None, **settings: Any) -> CacheNode:
        node = await start_cache_node(redis_url, document, **settings)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.close()
