"""Chooses the chain of models a request tries, in order.

An explicit model is honoured as given, followed only by the fallbacks the policy names
for it. "auto" ranks the catalog by the request's priority among models strong enough for
the prompt's complexity, then lists the others as last resorts. Either way the chain
skips models that lack a capability the request needs (tools, a JSON schema, images,
reasoning), models whose context window cannot hold the request and models whose circuit
is open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from llmmesh.policy import Capability
from llmmesh.router.v1 import router_pb2
from llmmesh_router.capabilities import missing_capabilities
from llmmesh_router.complexity import Complexity
from llmmesh_router.policy import AUTO_MODEL, CatalogModel, RouterPolicy

PRIORITY_NAMES = {
    router_pb2.PRIORITY_COST: "cost",
    router_pb2.PRIORITY_SPEED: "speed",
    router_pb2.PRIORITY_QUALITY: "quality",
    router_pb2.PRIORITY_BALANCED: "balanced",
}


@dataclasses.dataclass(frozen=True)
class RouteDecision:
    chain: tuple[CatalogModel, ...]
    priority: str
    complexity: Complexity | None
    skipped_for_context: tuple[str, ...]
    skipped_for_circuit: tuple[str, ...]
    skipped_for_capability: tuple[str, ...] = ()
    # Every model considered before any was skipped, for an error that names them.
    candidates: tuple[CatalogModel, ...] = ()


def _blended_price(model: CatalogModel) -> float:
    return model.input_price_per_1k + model.output_price_per_1k


def rank(models: Sequence[CatalogModel], priority: str) -> list[CatalogModel]:
    if priority == "cost":
        return sorted(models, key=lambda m: (_blended_price(m), -m.quality))
    if priority == "speed":
        return sorted(models, key=lambda m: (-m.speed_tokens_per_s, _blended_price(m)))
    if priority == "quality":
        return sorted(models, key=lambda m: (-m.quality, _blended_price(m)))
    max_price = max(_blended_price(m) for m in models) or 1.0
    max_speed = max(m.speed_tokens_per_s for m in models) or 1.0

    def balanced_score(model: CatalogModel) -> float:
        return (
            0.5 * model.quality / 10
            + 0.25 * model.speed_tokens_per_s / max_speed
            + 0.25 * (1 - _blended_price(model) / max_price)
        )

    return sorted(models, key=balanced_score, reverse=True)


def choose_chain(
    policy: RouterPolicy,
    *,
    requested_model: str,
    priority: str,
    complexity: Complexity | None,
    needed_tokens: int,
    circuit_open: Callable[[CatalogModel], bool],
    needs: Sequence[Capability] = (),
) -> RouteDecision:
    """The ordered chain for one request; empty when nothing can serve it now."""
    if requested_model == AUTO_MODEL:
        assert complexity is not None
        floor = policy.routing.min_quality[complexity.level]
        strong = [m for m in policy.models if m.quality >= floor]
        weak = [m for m in policy.models if m.quality < floor]
        candidates = (
            rank(strong, priority) + rank(weak, "quality") if strong else rank(weak, "quality")
        )
    else:
        first = policy.model(requested_model)
        assert first is not None
        candidates = [first] + [
            m for name in policy.routing.fallbacks.get(requested_model, [])
            if (m := policy.model(name)) is not None
        ]  # fmt: skip
    incapable = tuple(m.name for m in candidates if missing_capabilities(m, needs))
    capable = [m for m in candidates if m.name not in incapable]
    too_small = tuple(m.name for m in capable if m.context_window < needed_tokens)
    fitting = [m for m in capable if m.context_window >= needed_tokens]
    open_circuits = tuple(m.name for m in fitting if circuit_open(m))
    chain = tuple(m for m in fitting if m.name not in open_circuits)
    return RouteDecision(
        chain, priority, complexity, too_small, open_circuits, incapable, tuple(candidates)
    )


def larger_window_models(
    policy: RouterPolicy, than: CatalogModel, exclude: set[str], needs: Sequence[Capability] = ()
) -> list[CatalogModel]:
    """Capable models able to take a prompt that overflowed `than`, smallest window first."""
    return sorted(
        (
            m
            for m in policy.models
            if m.context_window > than.context_window
            and m.name not in exclude
            and not missing_capabilities(m, needs)
        ),
        key=lambda m: (m.context_window, _blended_price(m)),
    )
