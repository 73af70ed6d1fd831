"""The router refuses, at start and by name, a policy it cannot honour."""

from __future__ import annotations

import pytest

from llmmesh.policy import PolicyError, read_policy_document
from llmmesh_router.settings import RouterSettings
from llmmesh_router.wiring import build_servicer


async def test_shared_breakers_without_redis_fail_at_start_naming_the_field() -> None:
    document = read_policy_document(None)
    document["routing"] = {"breaker": {"shared": True}}
    with pytest.raises(PolicyError, match=r"routing\.breaker\.shared"):
        await build_servicer(RouterSettings(redis_url=""), document)


@pytest.mark.parametrize(
    ("routing", "field"),
    [
        ({"fallbacks": {"sim-fast": ["no-such-model"]}}, "routing.fallbacks.sim-fast"),
        ({"classifier": {"kind": "model", "model": "nope"}}, "routing.classifier.model"),
        ({"default_priority": "cheapest"}, "routing.default_priority"),
        ({"retry": {"max_attempts_per_model": 0}}, "routing.retry.max_attempts_per_model"),
    ],
)
async def test_bad_routing_policy_fails_naming_the_field(
    routing: dict[str, object], field: str
) -> None:
    document = read_policy_document(None)
    document["routing"] = routing
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        await build_servicer(RouterSettings(), document)


async def test_an_unknown_model_capability_fails_at_start_naming_the_field() -> None:
    document = read_policy_document(None)
    document["models"][0]["capabilities"] = ["chat", "vison"]
    with pytest.raises(PolicyError, match=r"models\[0\]\.capabilities\[1\]"):
        await build_servicer(RouterSettings(), document)
