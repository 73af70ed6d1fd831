"""Model chains: "auto" by priority and complexity, explicit models as given, and the
skipping of models too small for the prompt or with an open circuit."""

from __future__ import annotations

import random

import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.policy import Tenant
from llmmesh_router.backoff import BackoffPolicy
from llmmesh_router.complexity import Complexity, classify
from llmmesh_router.policy import CatalogModel, RouterPolicy, RoutingPolicy
from llmmesh_router.routing import choose_chain, larger_window_models

MODELS = [
    CatalogModel(name="small", provider="p", upstream_model="s", input_price_per_1k=0.1,
                 output_price_per_1k=0.2, context_window=8_000, quality=3,
                 speed_tokens_per_s=200),
    CatalogModel(name="medium", provider="p", upstream_model="m", input_price_per_1k=0.5,
                 output_price_per_1k=1.5, context_window=32_000, quality=6,
                 speed_tokens_per_s=100),
    CatalogModel(name="large", provider="q", upstream_model="l", input_price_per_1k=3.0,
                 output_price_per_1k=15.0, context_window=200_000, quality=9,
                 speed_tokens_per_s=40),
]  # fmt: skip
POLICY = RouterPolicy(
    tenants=[Tenant(name="t")],
    models=MODELS,
    routing=RoutingPolicy(fallbacks={"medium": ["large"]}),
)


def _names(**kwargs: object) -> list[str]:
    arguments: dict[str, object] = {
        "requested_model": "auto", "priority": "balanced", "complexity": Complexity.MODERATE,
        "needed_tokens": 1000, "circuit_open": lambda _m: False,
    }  # fmt: skip
    arguments.update(kwargs)
    return [m.name for m in choose_chain(POLICY, **arguments).chain]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("priority", "complexity", "chain"),
    [
        ("cost", Complexity.SIMPLE, ["small", "medium", "large"]),
        ("cost", Complexity.MODERATE, ["medium", "large", "small"]),
        ("cost", Complexity.COMPLEX, ["large", "medium", "small"]),
        ("speed", Complexity.SIMPLE, ["small", "medium", "large"]),
        ("quality", Complexity.SIMPLE, ["large", "medium", "small"]),
    ],
)
def test_auto_ranks_strong_enough_models_by_priority(
    priority: str, complexity: Complexity, chain: list[str]
) -> None:
    assert _names(priority=priority, complexity=complexity) == chain


def test_explicit_model_is_honoured_with_only_its_configured_fallbacks() -> None:
    assert _names(requested_model="medium") == ["medium", "large"]
    assert _names(requested_model="small") == ["small"]


def test_models_too_small_for_the_request_are_skipped() -> None:
    decision = choose_chain(
        POLICY, requested_model="auto", priority="cost", complexity=Complexity.SIMPLE,
        needed_tokens=50_000, circuit_open=lambda _m: False,
    )  # fmt: skip
    assert [m.name for m in decision.chain] == ["large"]
    assert decision.skipped_for_context == ("small", "medium")


def test_models_with_an_open_circuit_are_skipped() -> None:
    decision = choose_chain(
        POLICY, requested_model="auto", priority="cost", complexity=Complexity.SIMPLE,
        needed_tokens=10, circuit_open=lambda m: m.name == "small",
    )  # fmt: skip
    assert [m.name for m in decision.chain] == ["medium", "large"]
    assert decision.skipped_for_circuit == ("small",)


def test_larger_window_models_come_smallest_first() -> None:
    small = MODELS[0]
    assert [m.name for m in larger_window_models(POLICY, small, set())] == ["medium", "large"]
    assert [m.name for m in larger_window_models(POLICY, small, {"medium"})] == ["large"]


@pytest.mark.parametrize(
    ("prompt", "complexity"),
    [
        ("hello", Complexity.SIMPLE),
        ("What is the capital of France?", Complexity.SIMPLE),
        ("Summarise this paragraph about tides for a ten-year-old reader, in plain words "
         "and at most three sentences, keeping the key facts.", Complexity.MODERATE),
        ("Analyze the trade-offs of this design and prove the algorithm terminates:\n"
         "```python\ndef f(x):\n    return f(x - 1) if x else 0\n```", Complexity.COMPLEX),
    ],
)  # fmt: skip
def test_heuristic_classifier(prompt: str, complexity: Complexity) -> None:
    message = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)
    assert classify([message]) is complexity


def test_backoff_is_jittered_exponential_capped_and_honours_retry_info() -> None:
    policy = BackoffPolicy(base_s=0.1, cap_s=1.0)
    rng = random.Random(7)
    first = [policy.delay_s(1, rng, None) for _ in range(200)]
    fifth = [policy.delay_s(5, rng, None) for _ in range(200)]
    assert all(0 <= d <= 0.1 for d in first)
    assert max(first) > 0.05
    assert all(0 <= d <= 1.0 for d in fifth)
    assert max(fifth) > 0.5
    assert min(policy.delay_s(1, rng, 2.5) for _ in range(50)) == 2.5
