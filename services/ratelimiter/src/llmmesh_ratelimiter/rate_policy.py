"""The `limits` section of the policy file: tiers, per-tenant overrides and per-model limits.

Shape (every limit is a token bucket that refills continuously over `window_s`, except
concurrency limits, which count leases in flight and have no window):

```yaml
tenants:
  - {name: acme, tier: pro}
limits:
  failure_mode: open            # optional; the LLMMESH_RATELIMITER_FAILURE_MODE default otherwise
  tiers:
    pro:
      - {name: tenant-requests, kind: requests, scope: tenant, limit: 600, window_s: 60}
      - {name: tenant-tokens, kind: tokens, scope: tenant, limit: 200000, window_s: 60}
      - {name: tenant-in-flight, kind: concurrency, scope: tenant, limit: 16}
      - {name: model-tokens, kind: tokens, scope: tenant_model, limit: 100000, window_s: 60,
         shadow: true}
  overrides:                    # per tenant: replaces the tier's limit of the same name, or adds
    acme:
      - {name: tenant-requests, kind: requests, scope: tenant, limit: 1200, window_s: 60}
  models:                       # shared by every tenant: the upstream account's own quotas
    gpt-4o-mini:
      - {name: upstream-tokens, kind: tokens, limit: 2000000, window_s: 60}
```
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import pydantic

from llmmesh.policy import PolicyError, StrictModel, Tenant, parse_section
from llmmesh_ratelimiter.limits import LimitKind, LimitScope

# Capacities stay far below 2**53 so the Lua script's doubles and cjson keep them exact.
MAX_CAPACITY = 10**12


class FailureMode(enum.StrEnum):
    """What a decision is when the shared store cannot be reached in time."""

    OPEN = "open"
    CLOSED = "closed"


class HashTagScope(enum.StrEnum):
    """Which part of a request names the Redis Cluster hash slot of its decision's keys."""

    TENANT = "tenant"
    MODEL = "model"
    GLOBAL = "global"


class _LimitFields(StrictModel):
    name: str = pydantic.Field(min_length=1)
    kind: LimitKind
    limit: int = pydantic.Field(gt=0, le=MAX_CAPACITY)
    window_s: float | None = pydantic.Field(default=None, gt=0, le=86400 * 366)
    # A shadow limit decides and counts like any other but never denies: for trying a limit
    # on live traffic before enforcing it.
    shadow: bool = False

    @pydantic.model_validator(mode="after")
    def _window_fits_kind(self) -> _LimitFields:
        if self.kind is LimitKind.CONCURRENCY and self.window_s is not None:
            raise ValueError("window_s: a concurrency limit counts leases in flight, no window")
        if self.kind is not LimitKind.CONCURRENCY and self.window_s is None:
            raise ValueError(f"window_s: required for a {self.kind.value} limit")
        return self


class TenantLimit(_LimitFields):
    """A limit in a tier or an override: one tenant's traffic, or one tenant's to one model."""

    scope: LimitScope

    @pydantic.field_validator("scope")
    @classmethod
    def _not_per_model(cls, scope: LimitScope) -> LimitScope:
        if scope is LimitScope.MODEL:
            raise ValueError(
                "a model-scoped limit is shared by every tenant; put it under limits.models"
            )
        return scope


class ModelLimit(_LimitFields):
    """A limit under `limits.models`: it counts every tenant's traffic to that model."""

    scope: LimitScope = LimitScope.MODEL

    @pydantic.field_validator("scope")
    @classmethod
    def _per_model(cls, scope: LimitScope) -> LimitScope:
        if scope is not LimitScope.MODEL:
            raise ValueError("limits under limits.models count every tenant: scope is model")
        return scope


LimitT = TypeVar("LimitT", bound=_LimitFields)


def _names_unique(limits: list[LimitT]) -> list[LimitT]:
    seen: set[str] = set()
    for limit in limits:
        if limit.name in seen:
            raise ValueError(f"limit name {limit.name!r} appears twice")
        seen.add(limit.name)
    return limits


TenantLimits = Annotated[list[TenantLimit], pydantic.AfterValidator(_names_unique)]
ModelLimits = Annotated[list[ModelLimit], pydantic.AfterValidator(_names_unique)]


class LimitsSection(StrictModel):
    """The `limits` section as written in the policy file."""

    failure_mode: FailureMode | None = None
    tiers: dict[str, TenantLimits] = pydantic.Field(default_factory=dict)
    overrides: dict[str, TenantLimits] = pydantic.Field(default_factory=dict)
    models: dict[str, ModelLimits] = pydantic.Field(default_factory=dict)


class LimitsDocument(StrictModel):
    """The sections of the policy file the ratelimiter reads."""

    limits: LimitsSection = pydantic.Field(default_factory=LimitsSection)
    tenants: list[Tenant] = pydantic.Field(default_factory=list)


AnyLimit = TenantLimit | ModelLimit


@dataclasses.dataclass(frozen=True)
class RatePolicy:
    """The validated policy, resolved to the limits of each tenant and each model."""

    tenant_limits: Mapping[str, tuple[TenantLimit, ...]]
    model_limits: Mapping[str, tuple[ModelLimit, ...]]
    failure_mode: FailureMode | None
    hash_tag_scope: HashTagScope

    def knows_tenant(self, tenant: str) -> bool:
        return tenant in self.tenant_limits

    def limits_for(self, tenant: str, model: str) -> tuple[AnyLimit, ...]:
        """Every limit a request from `tenant` to `model` must pass."""
        return (*self.tenant_limits[tenant], *self.model_limits.get(model, ()))


def load_rate_policy(document: dict[str, Any]) -> RatePolicy:
    """Validates the `limits` and `tenants` sections; a PolicyError names the bad field."""
    parsed = parse_section(document, LimitsDocument, "limits", "tenants")
    section = parsed.limits
    # Without a `limits` section nothing is limited; once there is one, every tenant's tier
    # must be defined in it, so a misspelt tier fails at start instead of going unlimited.
    limited = "limits" in document
    tenant_limits: dict[str, tuple[TenantLimit, ...]] = {}
    for index, tenant in enumerate(parsed.tenants):
        if tenant.name in tenant_limits:
            raise PolicyError(f"invalid policy: tenants[{index}].name: {tenant.name!r} repeats")
        if not limited:
            tenant_limits[tenant.name] = ()
            continue
        if tenant.tier not in section.tiers:
            known = ", ".join(sorted(section.tiers)) or "none"
            raise PolicyError(
                f"invalid policy: tenants[{index}].tier: unknown tier {tenant.tier!r} "
                f"(limits.tiers defines: {known})"
            )
        tenant_limits[tenant.name] = _with_overrides(
            section.tiers[tenant.tier], section.overrides.get(tenant.name, [])
        )
    for name in section.overrides:
        if name not in tenant_limits:
            raise PolicyError(f"invalid policy: limits.overrides.{name}: no tenant has this name")
    model_limits = {model: tuple(limits) for model, limits in section.models.items()}
    return RatePolicy(
        tenant_limits=tenant_limits,
        model_limits=model_limits,
        failure_mode=section.failure_mode,
        hash_tag_scope=_hash_tag_scope(tenant_limits, model_limits),
    )


def _with_overrides(
    tier: list[TenantLimit], overrides: list[TenantLimit]
) -> tuple[TenantLimit, ...]:
    by_name = {limit.name: limit for limit in tier}
    by_name.update({limit.name: limit for limit in overrides})
    return tuple(by_name.values())


def _hash_tag_scope(
    tenant_limits: Mapping[str, tuple[TenantLimit, ...]],
    model_limits: Mapping[str, tuple[ModelLimit, ...]],
) -> HashTagScope:
    """The widest hash tag that still puts every key of one decision in one cluster slot.

    A tenant-scoped key is shared by that tenant's requests to every model, and a
    model-scoped key by every tenant's requests to that model. Tagging by tenant is exact
    while no limit is per model (tenant+model keys follow their tenant); tagging by model is
    exact while no limit is per tenant. When both kinds exist, the keys of all tenants and
    models are linked through shared keys, so one constant tag (one slot, one shard) is the
    only placement that keeps every decision a single atomic script.
    """
    scopes: set[LimitScope] = {limit.scope for limits in tenant_limits.values() for limit in limits}
    if model_limits:
        scopes.add(LimitScope.MODEL)
    if LimitScope.MODEL not in scopes:
        return HashTagScope.TENANT
    if LimitScope.TENANT not in scopes:
        return HashTagScope.MODEL
    return HashTagScope.GLOBAL
