"""Semantic lookups with embeddings from the provider service's Embed RPC."""

from __future__ import annotations

import grpc.aio

from llmmesh.common.v1 import caching_pb2
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.ports import free_port
from llmmesh_cache.testing import NodeFactory, policy_document, scope
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.wiring import build_servicer as build_provider

PARAPHRASE_THRESHOLD = 0.5


async def test_semantic_hits_use_the_provider_services_default_embedder(
    start_node: NodeFactory,
) -> None:
    provider = await build_provider(ProviderSettings(), {})
    server = grpc.aio.server()
    provider_service_pb2_grpc.add_ProviderServiceServicer_to_server(provider.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        node = await start_node(
            document=policy_document(embedder="default"),
            embedder="provider",
            provider_address=f"127.0.0.1:{port}",
        )
        stored = await node.store(scope("What is the capital of France?"))
        hit = await node.lookup(
            scope("What is the capital city of France?"),
            similarity_threshold=PARAPHRASE_THRESHOLD,
        )
        assert hit.status == caching_pb2.CACHE_STATUS_SEMANTIC
        assert hit.entry_id == stored.entry_id
    finally:
        await server.stop(None)


async def test_without_the_provider_semantic_lookups_miss_and_exact_ones_still_hit(
    start_node: NodeFactory,
) -> None:
    node = await start_node(
        document=policy_document(embedder="provider"),
        provider_address=f"127.0.0.1:{free_port()}",
        embed_timeout_s=0.5,
    )
    assert (await node.store(scope("What is the capital of France?"))).stored
    exact = await node.lookup(scope("What is the capital of France?"))
    semantic = await node.lookup(scope("What is the capital city of France?"))
    assert exact.status == caching_pb2.CACHE_STATUS_EXACT
    assert semantic.status == caching_pb2.CACHE_STATUS_MISS
