"""The router's view of the policy file: tenants and keys, the model catalog, routing rules."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from llmmesh.policy import Capability, StrictModel, Tenant, parse_section

AUTO_MODEL = "auto"


class CatalogModel(StrictModel):
    """One model callers may ask for, and where and at what price it is served."""

    name: str = pydantic.Field(min_length=1)
    # Provider instance name, as configured in the provider service.
    provider: str = pydantic.Field(min_length=1)
    # The model's name at the provider.
    upstream_model: str = pydantic.Field(min_length=1)
    input_price_per_1k: float = pydantic.Field(default=0.0, ge=0)
    output_price_per_1k: float = pydantic.Field(default=0.0, ge=0)
    context_window: int = pydantic.Field(default=8192, gt=0)
    # Relative answer quality, 1 (weakest) to 10, used by "auto" routing.
    quality: int = pydantic.Field(default=5, ge=1, le=10)
    # Expected output speed, used by the "speed" priority.
    speed_tokens_per_s: float = pydantic.Field(default=50.0, gt=0)
    # What the model supports; an unknown name fails at start.
    capabilities: list[Capability] = pydantic.Field(default_factory=list)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_price_per_1k + output_tokens * self.output_price_per_1k
        ) / 1000


Priority = Literal["cost", "speed", "quality", "balanced"]
ComplexityLevel = Literal["simple", "moderate", "complex"]


def _default_min_quality() -> dict[ComplexityLevel, int]:
    return {"simple": 1, "moderate": 4, "complex": 7}


class RetryPolicy(StrictModel):
    """How often one model is tried before the chain moves on, and how long to wait."""

    max_attempts_per_model: int = pydantic.Field(default=2, ge=1, le=10)
    backoff_base_s: float = pydantic.Field(default=0.1, ge=0)
    backoff_cap_s: float = pydantic.Field(default=2.0, ge=0)


class BreakerPolicy(StrictModel):
    """Circuit breaker per provider instance and model."""

    consecutive_failures: int = pydantic.Field(default=5, ge=1)
    failure_rate: float = pydantic.Field(default=0.5, gt=0, le=1)
    window: int = pydantic.Field(default=20, ge=1)
    min_calls: int = pydantic.Field(default=10, ge=1)
    recovery_timeout_s: float = pydantic.Field(default=30.0, gt=0)
    # Share open/closed transitions with the other router replicas through Redis
    # (LLMMESH_REDIS_URL); otherwise each replica keeps its own.
    shared: bool = False


class ClassifierPolicy(StrictModel):
    """How "auto" judges a prompt's complexity."""

    # "heuristic" reads surface features; "model" asks `model` and caches its verdict.
    kind: Literal["heuristic", "model"] = "heuristic"
    model: str | None = None
    cache_ttl_s: float = pydantic.Field(default=3600.0, gt=0)
    cache_entries: int = pydantic.Field(default=10_000, gt=0)


class DegradedPolicy(StrictModel):
    """What to do when every model of the chain is unavailable."""

    serve_from_cache: bool = False
    similarity_threshold: float = pydantic.Field(default=0.8, ge=0, le=1)


class RoutingPolicy(StrictModel):
    default_priority: Priority = "balanced"
    # Minimum model quality for each prompt complexity, for "auto".
    min_quality: dict[ComplexityLevel, int] = pydantic.Field(default_factory=_default_min_quality)
    # Models to try, in order, after an explicitly requested model fails.
    fallbacks: dict[str, list[str]] = pydantic.Field(default_factory=dict)
    classifier: ClassifierPolicy = ClassifierPolicy()
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    degraded: DegradedPolicy = DegradedPolicy()


class RouterPolicy(StrictModel):
    """The `tenants`, `models` and `routing` sections."""

    tenants: list[Tenant] = pydantic.Field(min_length=1)
    models: list[CatalogModel] = pydantic.Field(min_length=1)
    routing: RoutingPolicy = RoutingPolicy()

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> RouterPolicy:
        for kind, names in (
            ("tenants", [t.name for t in self.tenants]),
            ("models", [m.name for m in self.models]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind}: duplicate names {duplicates}")
        if any(m.name == AUTO_MODEL for m in self.models):
            raise ValueError(f"models: '{AUTO_MODEL}' is reserved for automatic routing")
        catalog = {m.name for m in self.models}
        for model, chain in self.routing.fallbacks.items():
            unknown = [n for n in [model, *chain] if n not in catalog]
            if unknown:
                raise ValueError(f"routing.fallbacks.{model}: unknown models {unknown}")
        classifier = self.routing.classifier
        if classifier.kind == "model" and classifier.model not in catalog:
            raise ValueError("routing.classifier.model: must name a catalog model")
        return self

    def model(self, name: str) -> CatalogModel | None:
        return next((m for m in self.models if m.name == name), None)


def load_router_policy(document: dict[str, Any]) -> RouterPolicy:
    return parse_section(document, RouterPolicy, "tenants", "models", "routing")
