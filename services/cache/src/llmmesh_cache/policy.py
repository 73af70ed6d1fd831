"""The `cache` section of the policy file: defaults plus per-tenant overrides.

```yaml
tenants:
  - name: acme
cache:
  defaults:
    mode: semantic              # bypass | exact | semantic
    ttl_s: 3600
    similarity_threshold: 0.86
    allow_nonzero_temperature: false
    max_entries_per_tenant: 10000
    max_bytes_per_tenant: 67108864
    embedder: default           # default (the service setting) | provider | local | simulated
  tenants:
    acme: {mode: exact, ttl_s: 600}
```
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from llmmesh.common.v1 import caching_pb2
from llmmesh.policy import StrictModel, Tenant, parse_section

CacheModeName = Literal["bypass", "exact", "semantic"]
EmbedderChoice = Literal["default", "provider", "local", "simulated"]

# Chosen from the measurements in docs/semantic-cache-quality.md.
DEFAULT_SIMILARITY_THRESHOLD = 0.86

MODES = {
    "bypass": caching_pb2.CACHE_MODE_BYPASS,
    "exact": caching_pb2.CACHE_MODE_EXACT,
    "semantic": caching_pb2.CACHE_MODE_SEMANTIC,
}


class TenantCachePolicy(StrictModel):
    """How one tenant's requests use the cache."""

    mode: CacheModeName = "exact"
    ttl_s: float = pydantic.Field(default=3600.0, gt=0)
    similarity_threshold: float = pydantic.Field(
        default=DEFAULT_SIMILARITY_THRESHOLD, ge=0.0, le=1.0
    )
    allow_nonzero_temperature: bool = False
    max_entries_per_tenant: int = pydantic.Field(default=10_000, gt=0)
    max_bytes_per_tenant: int = pydantic.Field(default=64 * 1024 * 1024, gt=0)
    embedder: EmbedderChoice = "default"


class TenantCacheOverride(StrictModel):
    """The fields a tenant sets differently from the defaults; unset ones inherit."""

    mode: CacheModeName | None = None
    ttl_s: float | None = pydantic.Field(default=None, gt=0)
    similarity_threshold: float | None = pydantic.Field(default=None, ge=0.0, le=1.0)
    allow_nonzero_temperature: bool | None = None
    max_entries_per_tenant: int | None = pydantic.Field(default=None, gt=0)
    max_bytes_per_tenant: int | None = pydantic.Field(default=None, gt=0)
    embedder: EmbedderChoice | None = None


class CacheSection(StrictModel):
    defaults: TenantCachePolicy = TenantCachePolicy()
    tenants: dict[str, TenantCacheOverride] = pydantic.Field(default_factory=dict)


class CachePolicyDocument(StrictModel):
    """The sections of the policy file the cache reads."""

    tenants: list[Tenant] = pydantic.Field(default_factory=list)
    cache: CacheSection = CacheSection()

    @pydantic.model_validator(mode="after")
    def _overrides_name_known_tenants(self) -> CachePolicyDocument:
        known = {tenant.name for tenant in self.tenants}
        unknown = sorted(set(self.cache.tenants) - known)
        if unknown:
            raise ValueError(f"cache.tenants names tenants not in the tenants list: {unknown}")
        return self


class CachePolicy:
    """Resolved per-tenant cache rules."""

    def __init__(self, document: CachePolicyDocument) -> None:
        defaults = document.cache.defaults
        self._by_tenant: dict[str, TenantCachePolicy] = {}
        for tenant in document.tenants:
            override = document.cache.tenants.get(tenant.name)
            changes = override.model_dump(exclude_none=True) if override else {}
            self._by_tenant[tenant.name] = defaults.model_copy(update=changes)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CachePolicy:
        """Validates the `tenants` and `cache` sections; raises PolicyError naming the field."""
        return cls(parse_section(document, CachePolicyDocument, "tenants", "cache"))

    def for_tenant(self, tenant: str) -> TenantCachePolicy | None:
        """The tenant's rules, or None for a tenant the policy does not know."""
        return self._by_tenant.get(tenant)

    def embedder_choices(self) -> set[str]:
        return {policy.embedder for policy in self._by_tenant.values()}
