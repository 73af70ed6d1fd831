"""The `limits` policy: every kind of mistake fails at start naming its field; tiers resolve."""

from __future__ import annotations

import pathlib

import pytest

from llmmesh.policy import PolicyError, read_policy_document
from llmmesh_ratelimiter.limits import LimitScope
from llmmesh_ratelimiter.rate_policy import FailureMode, HashTagScope, load_rate_policy

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# Each fixture holds one kind of error; the message must name the field and say what is wrong.
BAD_POLICIES = {
    "bad_unknown_kind.yaml": ["limits.tiers.free[0].kind", "requests"],
    "bad_nonpositive_limit.yaml": ["limits.tiers.free[0].limit", "greater than 0"],
    "bad_negative_window.yaml": ["limits.tiers.free[0].window_s", "greater than 0"],
    "bad_missing_window.yaml": ["limits.tiers.free[0]", "window_s: required for a tokens limit"],
    "bad_window_on_concurrency.yaml": ["limits.tiers.free[0]", "window_s: a concurrency limit"],
    "bad_duplicate_limit_name.yaml": ["limits.tiers.free", "'tenant-requests' appears twice"],
    "bad_unknown_field.yaml": ["limits.tiers.free[0].windows_s", "Extra inputs"],
    "bad_model_scope_in_tier.yaml": ["limits.tiers.free[0].scope", "under limits.models"],
    "bad_unknown_scope.yaml": ["limits.tiers.free[0].scope", "'tenant', 'tenant_model' or 'model'"],
    "bad_failure_mode.yaml": ["limits.failure_mode", "'open' or 'closed'"],
    "bad_unknown_tier.yaml": ["tenants[0].tier", "unknown tier 'gold'", "free"],
    "bad_duplicate_tenant.yaml": ["tenants[1].name", "repeats"],
    "bad_override_unknown_tenant.yaml": ["limits.overrides.globex", "no tenant"],
    "bad_model_limit.yaml": ["limits.models.gpt-4o-mini[0].limit", "greater than 0"],
    "bad_limits_not_a_mapping.yaml": ["limits", "valid dictionary"],
}


def test_every_bad_fixture_is_covered() -> None:
    assert {path.name for path in FIXTURES.glob("bad_*.yaml")} == set(BAD_POLICIES)


@pytest.mark.parametrize(("fixture", "expected"), sorted(BAD_POLICIES.items()))
def test_bad_policy_fails_naming_the_field(fixture: str, expected: list[str]) -> None:
    document = read_policy_document(FIXTURES / fixture)
    with pytest.raises(PolicyError) as failure:
        load_rate_policy(document)
    message = str(failure.value)
    assert message.startswith("invalid policy: ")
    for fragment in expected:
        assert fragment in message


def test_overrides_replace_same_named_tier_limits_and_add_new_ones() -> None:
    policy = load_rate_policy(read_policy_document(FIXTURES / "good_policy.yaml"))
    acme = {limit.name: limit for limit in policy.limits_for("acme", "gpt-4o-mini")}
    assert acme["tenant-requests"].limit == 3  # override beats the pro tier's 5
    assert acme["tenant-tokens"].limit == 100000  # from the pro tier
    assert acme["tenant-in-flight"].limit == 10  # added by the override
    assert acme["model-tokens"].shadow
    assert acme["upstream-requests"].scope is LimitScope.MODEL
    initech = {limit.name: limit for limit in policy.limits_for("initech", "other-model")}
    assert set(initech) == {"tenant-requests", "tenant-tokens", "tenant-in-flight"}
    assert initech["tenant-requests"].limit == 2
    assert policy.failure_mode is FailureMode.CLOSED


def test_policy_without_limits_section_limits_nothing_but_knows_the_tenants() -> None:
    policy = load_rate_policy({"tenants": [{"name": "dev", "tier": "default"}]})
    assert policy.limits_for("dev", "any-model") == ()
    assert not policy.knows_tenant("acme")
    assert policy.failure_mode is None


def test_embedded_default_policy_loads() -> None:
    policy = load_rate_policy(read_policy_document(None))
    assert policy.knows_tenant("dev")


def _scope_for(scopes: list[str], with_model_limits: bool) -> HashTagScope:
    tier = [
        {"name": f"l{i}", "kind": "requests", "scope": scope, "limit": 1, "window_s": 1}
        for i, scope in enumerate(scopes)
    ]
    models = {"m": [{"name": "up", "kind": "requests", "limit": 1, "window_s": 1}]}
    document = {
        "tenants": [{"name": "acme", "tier": "t"}],
        "limits": {"tiers": {"t": tier}, "models": models if with_model_limits else {}},
    }
    return load_rate_policy(document).hash_tag_scope


def test_hash_tag_is_the_widest_that_keeps_one_decision_in_one_slot() -> None:
    assert _scope_for(["tenant", "tenant_model"], with_model_limits=False) is HashTagScope.TENANT
    assert _scope_for(["tenant_model"], with_model_limits=True) is HashTagScope.MODEL
    assert _scope_for(["tenant"], with_model_limits=True) is HashTagScope.GLOBAL
