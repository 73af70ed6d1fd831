"""Fixtures for the ratelimiter tests: real Redis servers and in-process gRPC replicas."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
import redis

from llmmesh.ratelimit.v1 import ratelimit_service_pb2_grpc
from llmmesh.runtime.wiring import Wiring
from llmmesh.testing.redis_server import RedisCluster, RedisServer, running_redis
from llmmesh_ratelimiter.servicer import RateLimitServicer
from llmmesh_ratelimiter.settings import RatelimiterSettings
from llmmesh_ratelimiter.wiring import build_servicer


@dataclasses.dataclass
class Replica:
    """One ratelimiter server in this process, with its own backend and connection pool."""

    server: grpc.aio.Server
    channel: grpc.aio.Channel
    stub: ratelimit_service_pb2_grpc.RateLimitServiceStub
    wiring: Wiring | None

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        if self.wiring is not None:
            for closer in self.wiring.closers:
                await closer()


async def serve(servicer: RateLimitServicer, wiring: Wiring | None = None) -> Replica:
    server = grpc.aio.server()
    ratelimit_service_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Replica(
        server, channel, ratelimit_service_pb2_grpc.RateLimitServiceStub(channel), wiring
    )


StartReplica = Callable[[RatelimiterSettings, dict[str, Any]], Awaitable[Replica]]
ServeServicer = Callable[[RateLimitServicer], Awaitable[Replica]]


@pytest.fixture
async def serve_servicer() -> AsyncIterator[ServeServicer]:
    """Serves an already built servicer on a free port; stopped after the test."""
    replicas: list[Replica] = []

    async def start(servicer: RateLimitServicer) -> Replica:
        replica = await serve(servicer)
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        await replica.close()


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    """Starts replicas through `build_servicer`, as the service's composition root does."""
    replicas: list[Replica] = []

    async def start(settings: RatelimiterSettings, document: dict[str, Any]) -> Replica:
        wiring = await build_servicer(settings, document)
        replica = await serve(wiring.servicer, wiring)
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        await replica.close()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server this test may kill and restart."""
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(shared_redis: RedisServer) -> str:
    """A single Redis node, emptied for this test."""
    client = redis.Redis(host="127.0.0.1", port=shared_redis.port)
    client.flushall()
    client.close()
    return shared_redis.url


@pytest.fixture
def cluster_url(shared_redis_cluster: RedisCluster) -> str:
    """A three-master Redis Cluster, emptied for this test."""
    for node in shared_redis_cluster.nodes:
        client = redis.Redis(host="127.0.0.1", port=node.port)
        client.flushall()
        client.close()
    return shared_redis_cluster.url
