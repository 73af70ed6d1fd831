"""Every environment variable of the cache service, typed, with defaults that run embedded."""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic_settings import SettingsConfigDict

from llmmesh.runtime.settings import ServiceSettings, shared

EmbedderKind = Literal["provider", "local", "simulated"]


class CacheSettings(ServiceSettings):
    """Read from LLMMESH_CACHE_* (and the shared LLMMESH_REDIS_URL)."""

    model_config = SettingsConfigDict(
        env_prefix="LLMMESH_CACHE_", extra="ignore", frozen=True, populate_by_name=True
    )

    port: int = pydantic.Field(default=50053, ge=0, le=65535)
    # Empty runs on the in-memory store (a single replica).
    redis_url: str = pydantic.Field(default="", validation_alias=shared("REDIS_URL"))
    # The CA bundle a `rediss://` server's certificate must chain to (system CAs if empty).
    redis_ca_file: str = pydantic.Field(default="", validation_alias=shared("REDIS_CA_FILE"))
    redis_key_prefix: str = "llmmesh:cache"
    redis_timeout_s: float = pydantic.Field(default=1.0, gt=0)
    # The embedder a policy's `embedder: default` means.
    embedder: EmbedderKind = "provider"
    # ProviderService for the `provider` embedder.
    provider_address: str = "127.0.0.1:50054"
    provider_embed_instance: str = ""
    provider_embed_model: str = ""
    # Every embedding (in process or by the provider) gives up after this; the lookup misses.
    embed_timeout_s: float = pydantic.Field(default=2.0, gt=0)
    # Verifying one lookup's candidates gives up after this; the lookup misses.
    verify_timeout_s: float = pydantic.Field(default=1.0, gt=0)
    # Threads for embedding and verification, fed round-robin from per-tenant queues.
    cpu_workers: int = pydantic.Field(default=2, ge=1, le=64)
    # Jobs that may wait for a thread, in all and per tenant; beyond, a lookup misses.
    cpu_queue: int = pydantic.Field(default=64, ge=1)
    cpu_queue_per_tenant: int = pydantic.Field(default=8, ge=1)
    # Memory for the verifier's per-prompt features, in bytes.
    feature_cache_bytes: int = pydantic.Field(default=16 * 1024 * 1024, ge=0)
    # Dimensions of the `simulated` embedder's vectors.
    simulated_dimensions: int = pydantic.Field(default=384, gt=0)
    # How many nearest neighbours a semantic lookup verifies before giving up.
    semantic_candidates: int = pydantic.Field(default=4, gt=0, le=64)
    hnsw_m: int = pydantic.Field(default=16, ge=4)
    hnsw_ef_construction: int = pydantic.Field(default=100, ge=8)
    hnsw_ef_search: int = pydantic.Field(default=64, ge=8)
    # How long a replica blocks waiting for index changes before it checks Redis again.
    sync_block_ms: int = pydantic.Field(default=500, gt=0)
