"""Policy parsing and the canonical keys a scope maps to."""

from __future__ import annotations

import pytest

from llmmesh.policy import PolicyError
from llmmesh_cache.policy import DEFAULT_SIMILARITY_THRESHOLD, CachePolicy
from llmmesh_cache.scope import NFKC_MAX_CHARS, normalize_text, scope_keys
from llmmesh_cache.testing import policy_document, scope


def test_tenant_overrides_inherit_unset_fields_from_the_defaults() -> None:
    document = policy_document(ttl_s=60)
    document["cache"]["tenants"] = {"globex": {"mode": "exact", "similarity_threshold": 0.95}}
    policy = CachePolicy.from_document(document)
    acme, globex = policy.for_tenant("acme"), policy.for_tenant("globex")
    assert acme is not None
    assert globex is not None
    assert (acme.mode, acme.ttl_s, acme.similarity_threshold) == (
        "semantic",
        60,
        DEFAULT_SIMILARITY_THRESHOLD,
    )
    assert (globex.mode, globex.ttl_s, globex.similarity_threshold) == ("exact", 60, 0.95)
    assert policy.for_tenant("initech") is None


@pytest.mark.parametrize(
    ("cache_section", "named_field"),
    [
        ({"defaults": {"similarity_threshold": 1.2}}, "cache.defaults.similarity_threshold"),
        ({"defaults": {"mode": "fuzzy"}}, "cache.defaults.mode"),
        ({"defaults": {"ttl_s": 0}}, "cache.defaults.ttl_s"),
        ({"defaults": {"max_entries_per_tenant": -1}}, "cache.defaults.max_entries_per_tenant"),
        ({"tenants": {"acme": {"max_bytes": 5}}}, "cache.tenants.acme.max_bytes"),
        ({"tenants": {"initech": {"mode": "exact"}}}, "initech"),
        ({"defaults": {"embedder": "magic"}}, "cache.defaults.embedder"),
        ({"defaults": {"verifier": "vibes"}}, "cache.defaults.verifier"),
        ({"tenants": {"acme": {"verifier": "judge"}}}, "cache.judge: required"),
        ({"judge": {"model": "nowhere"}}, "cache.judge.model: 'nowhere' is not a catalog"),
        ({"judge": {"model": "mini", "timeout_s": 0}}, "cache.judge.timeout_s"),
    ],
)
def test_bad_cache_policy_fails_naming_the_field(cache_section: dict, named_field: str) -> None:
    document = {"tenants": [{"name": "acme"}], "cache": cache_section}
    with pytest.raises(PolicyError, match=named_field.replace(".", r"\.")):
        CachePolicy.from_document(document)


def test_the_judge_is_a_catalog_model_resolved_to_its_provider() -> None:
    document = policy_document(verifier="alignment_and_judge")
    document["cache"]["judge"] = {"model": "mini"}
    document["models"] = [
        {"name": "mini", "provider": "openai-main", "upstream_model": "gpt-4o-mini",
         "input_price_per_1k": 0.00015, "capabilities": ["chat"]},
    ]  # fmt: skip
    policy = CachePolicy.from_document(document)
    assert policy.judge_target == ("openai-main", "gpt-4o-mini")
    acme = policy.for_tenant("acme")
    assert acme is not None
    assert acme.verifier == "alignment_and_judge"


def test_a_long_message_is_keyed_without_nfkc_so_keying_costs_no_expansion() -> None:
    expanding = "\ufdfa" * (NFKC_MAX_CHARS + 1)
    assert normalize_text(expanding) == expanding
    assert normalize_text("\ufdfa") != "\ufdfa"  # short: normalized (18 characters)


def test_semantic_partition_ignores_only_the_last_user_turn() -> None:
    stored = scope_keys(scope("What is the capital of France?"), "simulated")
    paraphrase = scope_keys(scope("Which city is France's capital?"), "simulated")
    other_system = scope_keys(scope("What is the capital of France?", system="Be poetic."), "sim")
    assert stored.partition == paraphrase.partition
    assert stored.entry_id != paraphrase.entry_id
    assert other_system.partition != stored.partition
    assert (
        scope_keys(scope("Hi"), "embedder-a").partition
        != scope_keys(scope("Hi"), "embedder-b").partition
    )


def test_tenant_is_part_of_every_key() -> None:
    acme = scope_keys(scope("Hi", tenant="acme"), "simulated")
    globex = scope_keys(scope("Hi", tenant="globex"), "simulated")
    assert acme.entry_id != globex.entry_id
    assert acme.partition != globex.partition
