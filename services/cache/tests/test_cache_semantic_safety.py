"""A semantic lookup never fails the call: a check that raises, a prompt too long to verify,
numbers with several dots. And the cache says so when its embeddings are simulated."""

from __future__ import annotations

import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from llmmesh.common.v1 import caching_pb2
from llmmesh_cache import semantic
from llmmesh_cache.embedders.simulated import SimulatedEmbedder
from llmmesh_cache.testing import NodeFactory, counter_total, policy_document, scope
from llmmesh_cache.verification import MAX_VERIFIED_BYTES

SEMANTIC = caching_pb2.CACHE_STATUS_SEMANTIC
EXACT = caching_pb2.CACHE_STATUS_EXACT
MISS = caching_pb2.CACHE_STATUS_MISS
SECRET_PROMPT = "What is the dosage for patient 4711-secret?"


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


async def test_a_check_that_raises_is_a_counted_miss_logged_without_the_prompt(
    start_node: NodeFactory, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await start_node(meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    await node.store(scope(SECRET_PROMPT))

    def broken(*_: object) -> None:
        raise ValueError(f"could not parse {SECRET_PROMPT}")

    monkeypatch.setattr(semantic, "verify", broken)
    with structlog.testing.capture_logs() as logs:
        found = await node.lookup(scope(SECRET_PROMPT.lower()), similarity_threshold=0.0)
    assert found.status == MISS
    assert counter_total(reader, "llmmesh.cache.verification.errors") == 1
    assert any(entry["event"].startswith("verification failed") for entry in logs)
    assert "4711" not in repr(logs)


async def test_an_embedder_that_raises_is_a_counted_miss(
    start_node: NodeFactory, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await start_node(meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    await node.store(scope("What is the capital of Peru?"))

    def broken(self: SimulatedEmbedder, texts: object) -> None:
        raise RuntimeError("the model's weights are corrupt")

    monkeypatch.setattr(SimulatedEmbedder, "embed_now", broken)
    found = await node.lookup(scope("what's the capital of Peru"), similarity_threshold=0.0)
    assert found.status == MISS
    assert counter_total(reader, "llmmesh.cache.semantic.skipped",
                         **{"llmmesh.cache.skip_reason": "embed_error"}) == 1  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "asked", "status"),
    [
        ("What is new in Python 3.11.2?", "What's new in Python 3.11.2?", SEMANTIC),
        ("Is 192.168.1.1 a private address?", "is 192.168.1.1 a private address", SEMANTIC),
        ("Which weekday was 12.05.2024?", "Which weekday was 05.12.2024?", MISS),
        ("Is 192.168.1.1 a private address?", "Is 192.169.1.1 a private address?", MISS),
    ],
)
async def test_numbers_with_several_dots_are_compared_as_written(
    start_node: NodeFactory, stored: str, asked: str, status: caching_pb2.CacheStatus.ValueType
) -> None:
    node = await start_node()
    await node.store(scope(stored))
    assert (await node.lookup(scope(asked), similarity_threshold=0.3)).status == status


async def test_a_prompt_over_the_cap_is_exact_only(
    start_node: NodeFactory, reader: InMemoryMetricReader
) -> None:
    node = await start_node(meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    long_prompt = "Summarize: " + "word " * (MAX_VERIFIED_BYTES // 5)
    assert (await node.store(scope(long_prompt))).stored
    assert (await node.lookup(scope(long_prompt))).status == EXACT
    assert (await node.lookup(scope(long_prompt + "!"), similarity_threshold=0.0)).status == MISS
    # Neither the store nor the lookup embedded it.
    assert counter_total(reader, "llmmesh.cache.semantic.skipped", **{
        "llmmesh.cache.skip_reason": "too_long"}) == 2  # fmt: skip


async def test_nfkc_expanding_characters_are_measured_after_normalization(
    start_node: NodeFactory,
) -> None:
    node = await start_node()
    # 1,000 characters, 18,000 once NFKC-normalized: over the cap, so exact-only.
    expanding = "\ufdfa" * 1000
    assert (await node.store(scope(expanding))).stored
    assert (await node.lookup(scope(expanding))).status == EXACT
    assert (await node.lookup(scope(expanding + "?"), similarity_threshold=0.0)).status == MISS


async def test_a_per_request_semantic_opt_in_embeds_on_store(start_node: NodeFactory) -> None:
    node = await start_node(document=policy_document(mode="exact"))
    opted_in = {"mode": caching_pb2.CACHE_MODE_SEMANTIC}
    await node.store(scope("What is the capital of Peru?"), **opted_in)
    await node.store(scope("What is the capital of Chile?"))
    peru = await node.lookup(scope("what's the capital of Peru"), similarity_threshold=0.3,
                             **opted_in)  # fmt: skip
    chile = await node.lookup(scope("what's the capital of Chile"), similarity_threshold=0.3,
                              **opted_in)  # fmt: skip
    assert peru.status == SEMANTIC
    # Stored without the opt-in under an exact policy: never embedded, so never found.
    assert chile.status == MISS


async def test_a_semantic_policy_on_simulated_embeddings_warns_at_start(
    start_node: NodeFactory,
) -> None:
    with structlog.testing.capture_logs() as logs:
        node = await start_node(document=policy_document(embedder="simulated"))
        await node.lookup(scope("warm"))
    warnings = [
        entry for entry in logs if entry["event"] == "semantic cache on simulated embeddings"
    ]
    assert warnings
    assert warnings[0]["log_level"] == "warning"
    assert node.wiring.health_notes["semantic-embeddings"]() is False


async def test_an_exact_policy_has_nothing_to_warn_about(start_node: NodeFactory) -> None:
    with structlog.testing.capture_logs() as logs:
        node = await start_node(document=policy_document(mode="exact"))
        await node.lookup(scope("warm"))
    assert not [entry for entry in logs if "simulated embeddings" in entry["event"]]
    assert node.wiring.health_notes["semantic-embeddings"]() is True
