"""The cache's decisions: what may be served, what may be stored, and what goes on invalidation.

A lookup tries the exact key first. In semantic mode it then embeds the last user turn,
searches only the tenant's partition of the vector index, re-reads each candidate from the
entry store (so nothing expired or deleted is served) and serves the most similar one that
passes verification. A last user turn over the verification cap is exact-only.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh_cache.backends.base import EntryStore
from llmmesh_cache.cpu_pool import FairCpuPool, PoolBusyError
from llmmesh_cache.embedders.registry import EmbedderRegistry
from llmmesh_cache.entries import CacheEntry, TenantLimits
from llmmesh_cache.policy import MODES, CachePolicy, TenantCachePolicy
from llmmesh_cache.scope import ScopeKeys, scope_keys
from llmmesh_cache.semantic import SemanticMatcher, semantic_eligible
from llmmesh_cache.vector_index import Neighbour, VectorIndex

# Conversations longer than this are keyed on the worker pool: normalizing and hashing a
# megabyte takes about 10 ms, which on the event loop would hold up every other tenant.
INLINE_KEY_CHARS = 64 * 1024
KEY_TIMEOUT_S = 5.0


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _temperature_above_zero(parameters: chat_pb2.GenerationParameters) -> bool:
    return parameters.HasField("temperature") and parameters.temperature > 0.0


class AnswerCache:
    """Lookup, store and invalidate over an entry store, a vector index and embedders."""

    def __init__(
        self,
        store: EntryStore,
        index: VectorIndex,
        embedders: EmbedderRegistry,
        policy: CachePolicy,
        semantic: SemanticMatcher,
        cpu: FairCpuPool,
        *,
        semantic_candidates: int = 4,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._index = index
        self._embedders = embedders
        self._policy = policy
        self._semantic = semantic
        self._cpu = cpu
        self._semantic_candidates = semantic_candidates
        self._clock_ms = clock_ms

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    def replace_policy(self, policy: CachePolicy) -> None:
        self._policy = policy

    def _tenant_policy(self, tenant: str) -> TenantCachePolicy:
        policy = self._policy.for_tenant(tenant)
        if policy is None:
            raise LookupError(f"unknown tenant {tenant!r}")  # validation rejects these first
        return policy

    async def _keys(self, scope: cache_pb2.CacheScope, embedder: str) -> ScopeKeys:
        """The scope's keys; raises PoolBusyError or TimeoutError for a large scope when the
        worker pool cannot take it in time."""
        name = self._embedders.name(embedder)
        if sum(len(message.content) for message in scope.messages) <= INLINE_KEY_CHARS:
            return scope_keys(scope, name)
        derive = functools.partial(scope_keys, scope, name)
        return await self._cpu.run(scope.tenant, derive, timeout_s=KEY_TIMEOUT_S)

    async def lookup(
        self, request: cache_service_pb2.LookupRequest
    ) -> cache_service_pb2.LookupResponse:
        scope = request.scope
        policy = self._tenant_policy(scope.tenant)
        mode = request.mode or MODES[policy.mode]
        allow_temperature = request.allow_nonzero_temperature or policy.allow_nonzero_temperature
        if mode == caching_pb2.CACHE_MODE_BYPASS or (
            _temperature_above_zero(scope.parameters) and not allow_temperature
        ):
            return cache_service_pb2.LookupResponse(status=caching_pb2.CACHE_STATUS_BYPASS)
        miss = cache_service_pb2.LookupResponse(status=caching_pb2.CACHE_STATUS_MISS)
        try:
            keys = await self._keys(scope, policy.embedder)
        except (PoolBusyError, TimeoutError):
            return miss
        now_ms = self._clock_ms()
        (exact,) = await self._store.get(scope.tenant, [keys.entry_id])
        if exact is not None:
            await self._store.touch(scope.tenant, exact.entry_id, now_ms)
            return _hit(caching_pb2.CACHE_STATUS_EXACT, exact, 1.0)
        if mode != caching_pb2.CACHE_MODE_SEMANTIC or not keys.prompt_text:
            return miss
        threshold = (
            request.similarity_threshold
            if request.HasField("similarity_threshold")
            else policy.similarity_threshold
        )
        vector = await self._semantic.embed(scope.tenant, policy.embedder, keys.prompt_text)
        if vector is None:
            return miss
        neighbours = [
            neighbour
            for neighbour in self._index.search(
                scope.tenant, keys.partition, vector, self._semantic_candidates, now_ms
            )
            if neighbour.similarity >= threshold
        ]
        if not neighbours:
            return miss
        found = await self._store.get(scope.tenant, [n.entry_id for n in neighbours])
        live: list[tuple[Neighbour, CacheEntry]] = []
        for neighbour, candidate in zip(neighbours, found, strict=True):
            if candidate is None:
                # Gone from the store (expired, evicted, invalidated): never served, and
                # dropped here so this replica stops finding it.
                self._index.remove(scope.tenant, [neighbour.entry_id])
            elif candidate.partition == keys.partition:
                live.append((neighbour, candidate))
        if not live:
            return miss
        chosen = await self._semantic.choose(
            scope.tenant,
            policy.verifier,
            keys.prompt_text,
            [candidate.prompt_text for _, candidate in live],
        )
        if chosen is None:
            return miss
        neighbour, candidate = live[chosen]
        await self._store.touch(scope.tenant, candidate.entry_id, now_ms)
        return _hit(caching_pb2.CACHE_STATUS_SEMANTIC, candidate, neighbour.similarity)

    async def store(
        self, request: cache_service_pb2.StoreRequest
    ) -> cache_service_pb2.StoreResponse:
        scope = request.scope
        policy = self._tenant_policy(scope.tenant)
        if policy.mode == "bypass":
            return _skipped("CACHE_DISABLED")
        if request.mode == caching_pb2.CACHE_MODE_BYPASS:
            return _skipped("BYPASS_REQUESTED")
        allow_temperature = request.allow_nonzero_temperature or policy.allow_nonzero_temperature
        if _temperature_above_zero(scope.parameters) and not allow_temperature:
            return _skipped("TEMPERATURE_ABOVE_ZERO")
        if request.answer.finish_reason == chat_pb2.FINISH_REASON_CONTENT_FILTER:
            # A filtered answer is cut short by the provider: not a complete answer to reuse.
            return _skipped("CONTENT_FILTERED")
        try:
            keys = await self._keys(scope, policy.embedder)
        except (PoolBusyError, TimeoutError):
            return _skipped("BUSY")
        # A prompt too long to verify is exact-only: its text is not kept for verification.
        prompt_text = keys.prompt_text if semantic_eligible(keys.prompt_text) else ""
        vector = b""
        # A per-request semantic opt-in embeds too, so a later semantic lookup can find it.
        semantic = policy.mode == "semantic" or request.mode == caching_pb2.CACHE_MODE_SEMANTIC
        if semantic and request.mode != caching_pb2.CACHE_MODE_EXACT and keys.prompt_text:
            embedded = await self._semantic.embed(scope.tenant, policy.embedder, keys.prompt_text)
            vector = b"" if embedded is None else embedded.tobytes()
        now_ms = self._clock_ms()
        entry = CacheEntry(
            tenant=scope.tenant,
            entry_id=keys.entry_id,
            model=scope.model,
            partition=keys.partition,
            prompt_text=prompt_text,
            answer=request.answer.SerializeToString(deterministic=True),
            vector=vector,
            expires_at_ms=now_ms + int(policy.ttl_s * 1000),
        )
        if entry.size_bytes > policy.max_bytes_per_tenant:
            return _skipped("ENTRY_TOO_LARGE")
        limits = TenantLimits(
            max_entries=policy.max_entries_per_tenant,
            max_bytes=policy.max_bytes_per_tenant,
            ttl_s=policy.ttl_s,
        )
        removed = await self._store.put(entry, limits, now_ms)
        self._index.remove(scope.tenant, removed)
        if vector:
            self._index.add(entry)
        return cache_service_pb2.StoreResponse(stored=True, entry_id=entry.entry_id)

    async def invalidate(self, tenant: str, model: str, entry_id: str) -> int:
        removed = await self._store.invalidate(tenant, model, entry_id)
        self._index.remove(tenant, removed)
        return len(removed)


def _hit(
    status: caching_pb2.CacheStatus.ValueType, entry: CacheEntry, similarity: float
) -> cache_service_pb2.LookupResponse:
    answer = cache_pb2.CachedAnswer()
    answer.ParseFromString(entry.answer)
    return cache_service_pb2.LookupResponse(
        status=status, answer=answer, entry_id=entry.entry_id, similarity=similarity
    )


def _skipped(reason: str) -> cache_service_pb2.StoreResponse:
    return cache_service_pb2.StoreResponse(stored=False, skipped_reason=reason)
