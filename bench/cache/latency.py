"""Lookup latency of the cache at 10k and 100k entries, index search and embedding apart.

    python -m bench.cache.latency [--sizes 10000 100000] [--queries 2000]

Runs against a real redis-server on loopback (started here, no persistence) with the
cache's own store, index and lookup code in this process (no gRPC hop). All entries sit
in one tenant partition, the worst case for the index. Reported, as p50/p99:
  exact lookup          Lookup answered by the exact key (one Redis round trip + touch)
  index search          HNSW k-NN search alone (the <= 1 ms target)
  semantic lookup       Lookup answered semantically, embedding time subtracted
                        (exact miss + search + candidate re-read + verification + touch)
  embedding             the embedder alone: simulated (used to fill the cache) and, when
                        the local-embeddings extra is installed, all-MiniLM-L6-v2 on CPU
HNSW recall@1 against brute-force cosine is reported beside the search times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import redis.asyncio as redis_asyncio

from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.common.v1 import caching_pb2
from llmmesh.testing.redis_server import running_redis
from llmmesh_cache.answer_cache import AnswerCache
from llmmesh_cache.backends.redis_store import RedisEntryStore
from llmmesh_cache.cpu_pool import FairCpuPool
from llmmesh_cache.embedders.local import LocalMiniLMEmbedder, local_model_importable
from llmmesh_cache.embedders.registry import EmbedderKind, EmbedderRegistry
from llmmesh_cache.embedders.simulated import SimulatedEmbedder
from llmmesh_cache.entries import CacheEntry, TenantLimits
from llmmesh_cache.observability import CacheMetrics
from llmmesh_cache.policy import CachePolicy
from llmmesh_cache.scope import scope_keys
from llmmesh_cache.semantic import SemanticMatcher
from llmmesh_cache.testing import answer, policy_document, scope
from llmmesh_cache.vector_index import VectorIndex
from llmmesh_cache.verification.features import FeatureCache

SUBJECTS = (
    "invoice",
    "refund",
    "shipment",
    "password",
    "account",
    "subscription",
    "router",
    "printer",
    "laptop",
    "contract",
    "payment",
    "order",
    "ticket",
    "license",
    "server",
)
ACTIONS = ("cancel", "track", "reset", "renew", "update", "export", "transfer", "verify",
           "configure", "restore", "upgrade", "close", "open", "share", "archive")  # fmt: skip
EMBED_SAMPLES_LOCAL = 200
PUT_CONCURRENCY = 64


class TimedEmbedder:
    """Wraps an embedder and keeps the duration of each call, to subtract it later."""

    def __init__(self, inner: SimulatedEmbedder) -> None:
        self._inner = inner
        self.durations_s: list[float] = []

    @property
    def name(self) -> str:
        return self._inner.name

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        vectors = await self._inner.embed(texts)
        self.durations_s.append(time.perf_counter() - started)
        return vectors

    async def close(self) -> None:
        return None


def prompt(number: int) -> str:
    rng = random.Random(number)
    return (
        f"How do I {rng.choice(ACTIONS)} {rng.choice(SUBJECTS)} {number} for customer "
        f"{rng.randrange(10**6)} in region {rng.choice(SUBJECTS)}?"
    )


def percentiles_ms(samples_s: Sequence[float]) -> str:
    values = np.array(samples_s) * 1000
    return f"p50 {np.percentile(values, 50):7.3f} ms   p99 {np.percentile(values, 99):7.3f} ms"


async def fill(
    store: RedisEntryStore, index: VectorIndex, embedder: SimulatedEmbedder, size: int
) -> list[str]:
    prompts = [prompt(number) for number in range(size)]
    vectors = embedder.embed_now(prompts)
    limits = TenantLimits(max_entries=size * 2, max_bytes=2**40, ttl_s=3600)
    stored_answer = answer("Open settings,", " then choose the option.").SerializeToString()
    now_ms = int(time.time() * 1000)
    entries = []
    for text, vector in zip(prompts, vectors, strict=True):
        keys = scope_keys(scope(text), embedder.name)
        entries.append(
            CacheEntry(
                tenant="acme", entry_id=keys.entry_id, model="gpt-test",
                partition=keys.partition, prompt_text=keys.prompt_text, answer=stored_answer,
                vector=vector.tobytes(), expires_at_ms=now_ms + 3_600_000,
            )
        )  # fmt: skip
    semaphore = asyncio.Semaphore(PUT_CONCURRENCY)

    async def put(entry: CacheEntry) -> None:
        async with semaphore:
            await store.put(entry, limits, now_ms)

    await asyncio.gather(*(put(entry) for entry in entries))
    index.add_many(entries)
    return prompts


async def run_size(redis_url: str, size: int, query_count: int) -> None:
    client = redis_asyncio.Redis.from_url(redis_url, max_connections=PUT_CONCURRENCY)
    await client.flushall()
    store = RedisEntryStore(client)
    index = VectorIndex()
    simulated = SimulatedEmbedder(384)
    timed = TimedEmbedder(simulated)
    registry = EmbedderRegistry(
        {"simulated": EmbedderKind(timed.name, lambda: timed)}, default_kind="simulated"
    )
    pool = FairCpuPool(workers=2, max_queued=64, max_queued_per_tenant=64)
    semantic = SemanticMatcher(registry, pool, FeatureCache(16 << 20), CacheMetrics())
    policy = CachePolicy.from_document(policy_document())
    cache = AnswerCache(store, index, registry, policy, semantic, pool)
    started = time.perf_counter()
    prompts = await fill(store, index, simulated, size)
    load_1m = os.getloadavg()[0]
    print(
        f"\n== {size} entries (filled in {time.perf_counter() - started:.1f} s; "
        f"load average {load_1m:.2f} on {os.cpu_count()} cores)"
    )

    rng = random.Random(size)
    chosen = [rng.randrange(size) for _ in range(query_count)]
    exact_s = []
    for number in chosen:
        request = cache_service_pb2.LookupRequest(
            scope=scope(prompts[number]), mode=caching_pb2.CACHE_MODE_EXACT
        )
        began = time.perf_counter()
        reply = await cache.lookup(request)
        exact_s.append(time.perf_counter() - began)
        assert reply.status == caching_pb2.CACHE_STATUS_EXACT
    print(f"exact lookup           {percentiles_ms(exact_s)}")

    paraphrases = [prompts[number].replace("How do I", "How can I") for number in chosen]
    query_vectors = simulated.embed_now(paraphrases)
    partition = scope_keys(scope(prompts[0]), simulated.name).partition
    now_ms = int(time.time() * 1000)
    search_s = []
    for vector in query_vectors:
        began = time.perf_counter()
        index.search("acme", partition, vector, 4, now_ms)
        search_s.append(time.perf_counter() - began)
    all_vectors = simulated.embed_now(prompts)
    sample = query_vectors[:500]
    truth = np.argmax(sample @ all_vectors.T, axis=1)
    expected = [scope_keys(scope(prompts[int(i)]), simulated.name).entry_id for i in truth]
    found = [index.search("acme", partition, v, 1, now_ms)[0].entry_id for v in sample]
    recall = np.mean([a == b for a, b in zip(found, expected, strict=True)])
    print(f"index search (k=4)     {percentiles_ms(search_s)}   recall@1 {recall:.3f}")

    semantic_s = []
    timed.durations_s.clear()
    hits = 0
    for text in paraphrases:
        began = time.perf_counter()
        reply = await cache.lookup(cache_service_pb2.LookupRequest(scope=scope(text)))
        semantic_s.append(time.perf_counter() - began)
        hits += reply.status == caching_pb2.CACHE_STATUS_SEMANTIC
    net_s = [total - embed for total, embed in zip(semantic_s, timed.durations_s, strict=True)]
    print(f"semantic lookup        {percentiles_ms(net_s)}   (embedding excluded; "
          f"{hits}/{len(paraphrases)} verified hits)")  # fmt: skip
    print(f"embedding (simulated)  {percentiles_ms(timed.durations_s)}")
    await client.aclose()
    pool.close()


def local_embedding_times(texts: Sequence[str]) -> None:
    if not local_model_importable():
        print("\nembedding (all-MiniLM-L6-v2): skipped, local-embeddings extra not installed")
        return
    model = LocalMiniLMEmbedder()
    model.embed_now(["warm up"])
    durations = []
    for text in texts[:EMBED_SAMPLES_LOCAL]:
        began = time.perf_counter()
        model.embed_now([text])
        durations.append(time.perf_counter() - began)
    print(f"\nembedding (all-MiniLM-L6-v2, CPU, one prompt) {percentiles_ms(durations)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=2000)
    arguments = parser.parse_args()
    with running_redis() as server:
        for size in arguments.sizes:
            asyncio.run(run_size(server.url, size, arguments.queries))
    local_embedding_times([prompt(number) for number in range(EMBED_SAMPLES_LOCAL)])


if __name__ == "__main__":
    main()
