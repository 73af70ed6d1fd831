"""Helpers for tests of the cache and of its callers: requests, answers, a served cache node."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio
from opentelemetry import metrics

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2, cache_service_pb2_grpc
from llmmesh.common.v1 import chat_pb2
from llmmesh.runtime.wiring import Wiring
from llmmesh_cache.settings import CacheSettings
from llmmesh_cache.wiring import build_servicer

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

TENANTS = ("acme", "globex")


def policy_document(**defaults: Any) -> dict[str, Any]:
    """Two tenants; semantic mode on the simulated embedder unless a default is overridden."""
    return {
        "tenants": [{"name": name} for name in TENANTS],
        "cache": {"defaults": {"mode": "semantic", "embedder": "simulated", **defaults}},
    }


def scope(
    prompt: str,
    *,
    tenant: str = "acme",
    model: str = "gpt-test",
    system: str = "You are terse.",
    **parameters: Any,
) -> cache_pb2.CacheScope:
    """A conversation of an optional system prompt and one user turn."""
    messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=system)] if system else []
    messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt))
    return cache_pb2.CacheScope(
        tenant=tenant,
        model=model,
        messages=messages,
        parameters=chat_pb2.GenerationParameters(**parameters),
    )


def answer(
    *chunks: str, finish: chat_pb2.FinishReason.ValueType = chat_pb2.FINISH_REASON_STOP
) -> cache_pb2.CachedAnswer:
    """A complete answer as a provider streamed it."""
    return cache_pb2.CachedAnswer(
        chunks=list(chunks),
        finish_reason=finish,
        usage=chat_pb2.Usage(input_tokens=12, output_tokens=len(chunks)),
        model="gpt-test",
        provider="simulated-primary",
    )


@dataclasses.dataclass
class CacheNode:
    """One cache replica served on a loopback port, with a stub to call it."""

    wiring: Wiring
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    stub: cache_service_pb2_grpc.CacheServiceAsyncStub

    async def store(
        self, request_scope: cache_pb2.CacheScope, *chunks: str, **fields: Any
    ) -> cache_service_pb2.StoreResponse:
        request = cache_service_pb2.StoreRequest(
            scope=request_scope, answer=answer(*(chunks or ("an answer",))), **fields
        )
        response: cache_service_pb2.StoreResponse = await self.stub.Store(request)
        return response

    async def lookup(
        self, request_scope: cache_pb2.CacheScope, **fields: Any
    ) -> cache_service_pb2.LookupResponse:
        request = cache_service_pb2.LookupRequest(scope=request_scope, **fields)
        response: cache_service_pb2.LookupResponse = await self.stub.Lookup(request)
        return response

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        for closer in self.wiring.closers:
            await closer()


async def start_cache_node(
    redis_url: str = "",
    document: dict[str, Any] | None = None,
    *,
    meter: metrics.Meter | None = None,
    **settings: Any,
) -> CacheNode:
    """Builds a cache through `build_servicer` and serves it on 127.0.0.1."""
    values: dict[str, Any] = {"embedder": "simulated", "sync_block_ms": 50, **settings}
    wiring = await build_servicer(
        CacheSettings(redis_url=redis_url, **values), document or policy_document(), meter=meter
    )
    server = grpc.aio.server()
    cache_service_pb2_grpc.add_CacheServiceServicer_to_server(wiring.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    # The async stub type exists for type checkers only, hence the quoted name.
    stub = cast(
        "cache_service_pb2_grpc.CacheServiceAsyncStub",
        cache_service_pb2_grpc.CacheServiceStub(channel),
    )
    return CacheNode(wiring, server, channel, stub)


def counter_total(reader: InMemoryMetricReader, name: str, **attributes: str) -> int:
    """The sum of a counter's points whose attributes include the given ones."""
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else []:
        for scope_metrics in resource.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if attributes.items() <= dict(point.attributes or {}).items():
                        total += int(getattr(point, "value", 0))
    return total


# What a fixture that starts (and later closes) cache nodes hands to a test.
NodeFactory = Callable[..., Awaitable[CacheNode]]
