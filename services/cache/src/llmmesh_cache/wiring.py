"""Builds the cache servicer and its dependencies from settings and the policy document."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from llmmesh.policy import PolicyError
from llmmesh.runtime.health import READY, Readiness, degraded
from llmmesh.runtime.wiring import Wiring
from llmmesh_cache.answer_cache import AnswerCache
from llmmesh_cache.backends.base import EntryStore
from llmmesh_cache.backends.memory import InMemoryEntryStore
from llmmesh_cache.backends.redis_store import RedisEntryStore
from llmmesh_cache.embedders.base import Embedder
from llmmesh_cache.embedders.names import (
    LOCAL_EMBEDDER_NAME,
    provider_embedder_name,
    simulated_embedder_name,
)
from llmmesh_cache.embedders.registry import EmbedderKind, EmbedderRegistry
from llmmesh_cache.index_sync import RedisIndexSync
from llmmesh_cache.policy import CachePolicy
from llmmesh_cache.servicer import CacheServicer
from llmmesh_cache.settings import CacheSettings
from llmmesh_cache.vector_index import IndexSettings, VectorIndex

REDIS_RETRIES = 2
# A lookup that cannot reach Redis fails, and the router treats it as a miss: answers cost
# an upstream call, requests still succeed. So the cache stays ready, degraded.
REDIS_DOWN = "redis unreachable, no cached answers"


def embedder_registry(settings: CacheSettings) -> EmbedderRegistry:
    """Every embedder kind, built on first use, with the settings' kind as the default.

    An embedder's module (and numpy with it) is imported when the embedder is first built,
    so a cache that serves exact lookups alone never loads them.
    """

    def provider() -> Embedder:
        from llmmesh_cache.embedders.provider import ProviderEmbedder

        return ProviderEmbedder(
            settings.provider_address,
            instance=settings.provider_embed_instance,
            model=settings.provider_embed_model,
            timeout_s=settings.embed_timeout_s,
        )

    def local() -> Embedder:
        from llmmesh_cache.embedders.local import LocalMiniLMEmbedder

        return LocalMiniLMEmbedder()

    def simulated() -> Embedder:
        from llmmesh_cache.embedders.simulated import SimulatedEmbedder

        return SimulatedEmbedder(settings.simulated_dimensions)

    return EmbedderRegistry(
        {
            "provider": EmbedderKind(
                provider_embedder_name(
                    settings.provider_embed_instance, settings.provider_embed_model
                ),
                provider,
            ),
            "local": EmbedderKind(LOCAL_EMBEDDER_NAME, local),
            "simulated": EmbedderKind(
                simulated_embedder_name(settings.simulated_dimensions), simulated
            ),
        },
        default_kind=settings.embedder,
    )


def _check_local_embedder_installed(policy: CachePolicy, embedders: EmbedderRegistry) -> None:
    wanted = {embedders.kind(choice) for choice in policy.embedder_choices()}
    if "local" not in wanted:
        return
    from llmmesh_cache.embedders.local import local_model_importable

    if not local_model_importable():
        raise PolicyError(
            "invalid policy: cache embedder 'local' needs the local-embeddings extra "
            "(pip install 'llmmesh-cache[local-embeddings]')"
        )


async def build_servicer(settings: CacheSettings, policy_document: dict[str, Any]) -> Wiring:
    """The servicer; with Redis configured, readiness reports it degraded while Redis is down."""
    policy = CachePolicy.from_document(policy_document)
    embedders = embedder_registry(settings)
    _check_local_embedder_installed(policy, embedders)
    index = VectorIndex(
        IndexSettings(
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        )
    )
    store: EntryStore
    wiring = Wiring(servicer=None)
    if settings.redis_url:
        client = redis_asyncio.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s + settings.sync_block_ms / 1000,
            socket_connect_timeout=settings.redis_timeout_s,
            # A pooled connection that died with a Redis restart fails once; retrying on a
            # fresh connection keeps that from reaching callers once Redis is back.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=REDIS_RETRIES),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        )
        redis_store = RedisEntryStore(client, settings.redis_key_prefix)
        sync = RedisIndexSync(redis_store, index, settings.sync_block_ms)
        await sync.start()
        store = redis_store
        wiring.closers.append(sync.stop)
    else:
        store = InMemoryEntryStore()
    cache = AnswerCache(
        store, index, embedders, policy, semantic_candidates=settings.semantic_candidates
    )
    servicer = CacheServicer(cache)

    def check_policy(document: dict[str, Any]) -> None:
        _check_local_embedder_installed(CachePolicy.from_document(document), embedders)
        servicer.reload_policy(document)

    async def readiness() -> Readiness:
        # Bounded here: a hung Redis must read as degraded, not as a check that never answers.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.redis_timeout_s):
                if await store.ping():
                    return READY
        return degraded(REDIS_DOWN)

    wiring.servicer = servicer
    wiring.readiness_checks.append(readiness)
    wiring.closers.extend([store.close, embedders.close])
    wiring.reloaders.append(check_policy)
    return wiring
