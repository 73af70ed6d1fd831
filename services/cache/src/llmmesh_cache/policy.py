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
    verifier: alignment         # alignment | judge | alignment_and_judge
  judge:                        # needed when any tenant's verifier uses the judge
    model: sim-fast             # a catalog model (the `models` section)
    timeout_s: 2.0
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
# alignment: every content word matched (the default); judge: a model decides after the
# exact-token and negation checks; alignment_and_judge: both must agree.
VerifierMode = Literal["alignment", "judge", "alignment_and_judge"]
JUDGE_MODES = frozenset({"judge", "alignment_and_judge"})

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
    verifier: VerifierMode = "alignment"


class TenantCacheOverride(StrictModel):
    """The fields a tenant sets differently from the defaults; unset ones inherit."""

    mode: CacheModeName | None = None
    ttl_s: float | None = pydantic.Field(default=None, gt=0)
    similarity_threshold: float | None = pydantic.Field(default=None, ge=0.0, le=1.0)
    allow_nonzero_temperature: bool | None = None
    max_entries_per_tenant: int | None = pydantic.Field(default=None, gt=0)
    max_bytes_per_tenant: int | None = pydantic.Field(default=None, gt=0)
    embedder: EmbedderChoice | None = None
    verifier: VerifierMode | None = None


class JudgeSettings(StrictModel):
    """The model that judges semantic candidates for tenants whose verifier uses it."""

    # A catalog model name from the `models` section: cheap and fast is the point.
    model: str = pydantic.Field(min_length=1)
    timeout_s: float = pydantic.Field(default=2.0, gt=0, le=30)
    max_in_flight: int = pydantic.Field(default=16, gt=0, le=1024)
    verdict_cache_bytes: int = pydantic.Field(default=4 * 1024 * 1024, gt=0)


class CatalogEntry(pydantic.BaseModel):
    """What the cache reads of a catalog model: where it is served (the rest is the router's)."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    name: str
    provider: str
    upstream_model: str


class CacheSection(StrictModel):
    defaults: TenantCachePolicy = TenantCachePolicy()
    tenants: dict[str, TenantCacheOverride] = pydantic.Field(default_factory=dict)
    judge: JudgeSettings | None = None


class CachePolicyDocument(StrictModel):
    """The sections of the policy file the cache reads."""

    tenants: list[Tenant] = pydantic.Field(default_factory=list)
    cache: CacheSection = CacheSection()
    models: list[CatalogEntry] = pydantic.Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _overrides_name_known_tenants(self) -> CachePolicyDocument:
        known = {tenant.name for tenant in self.tenants}
        unknown = sorted(set(self.cache.tenants) - known)
        if unknown:
            raise ValueError(f"cache.tenants names tenants not in the tenants list: {unknown}")
        return self

    @pydantic.model_validator(mode="after")
    def _judge_configured_where_used(self) -> CachePolicyDocument:
        verifiers = {self.cache.defaults.verifier} | {
            override.verifier for override in self.cache.tenants.values() if override.verifier
        }
        judge = self.cache.judge
        if verifiers & JUDGE_MODES and judge is None:
            raise ValueError("cache.judge: required when a verifier uses the judge")
        if judge is not None and judge.model not in {model.name for model in self.models}:
            raise ValueError(f"cache.judge.model: {judge.model!r} is not a catalog model")
        return self


class CachePolicy:
    """Resolved per-tenant cache rules."""

    def __init__(self, document: CachePolicyDocument) -> None:
        defaults = document.cache.defaults
        self.judge = document.cache.judge
        self.judge_target = next(
            (
                (model.provider, model.upstream_model)
                for model in document.models
                if self.judge is not None and model.name == self.judge.model
            ),
            None,
        )
        self._by_tenant: dict[str, TenantCachePolicy] = {}
        for tenant in document.tenants:
            override = document.cache.tenants.get(tenant.name)
            changes = override.model_dump(exclude_none=True) if override else {}
            self._by_tenant[tenant.name] = defaults.model_copy(update=changes)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CachePolicy:
        """Validates the `tenants` and `cache` sections; raises PolicyError naming the field."""
        return cls(parse_section(document, CachePolicyDocument, "tenants", "cache", "models"))

    def for_tenant(self, tenant: str) -> TenantCachePolicy | None:
        """The tenant's rules, or None for a tenant the policy does not know."""
        return self._by_tenant.get(tenant)

    def embedder_choices(self) -> set[str]:
        return {policy.embedder for policy in self._by_tenant.values()}

    def semantic_embedder_choices(self) -> set[str]:
        """The embedders of tenants whose policy is semantic."""
        return {p.embedder for p in self._by_tenant.values() if p.mode == "semantic"}
