"""Policy parsing and the canonical keys a scope maps to."""

from __future__ import annotations

import pytest

from llmmesh.cache.v1 import cache_pb2
from llmmesh.common.v1 import chat_pb2
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


TOOL = chat_pb2.ToolDefinition(name="lookup", parameters_json_schema='{"type": "object"}')
SCHEMA = chat_pb2.ResponseFormat(
    type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="a", json_schema='{"type": "object"}'
)


@pytest.mark.parametrize(
    "parameters",
    [
        {"tools": [TOOL]},
        {
            "tools": [TOOL],
            "tool_choice": chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED),
        },
        {"tools": [TOOL], "parallel_tool_calls": False},
        {"response_format": SCHEMA},
        {"reasoning_effort": chat_pb2.REASONING_EFFORT_HIGH},
        {"top_k": 5},
    ],
)
def test_every_parameter_that_changes_an_answer_changes_the_key(parameters: dict) -> None:
    plain = scope_keys(scope("Hi"), "simulated").entry_id
    keyed = scope_keys(scope("Hi", **parameters), "simulated").entry_id
    assert keyed != plain
    if "tool_choice" in parameters or "parallel_tool_calls" in parameters:
        assert keyed != scope_keys(scope("Hi", tools=[TOOL]), "simulated").entry_id


def _with_turn(**fields: object) -> cache_pb2.CacheScope:
    conversation = scope("Hi")
    conversation.messages.append(chat_pb2.ChatMessage(**fields))  # type: ignore[arg-type]
    return conversation


def _image(data: bytes = b"", url: str = "") -> chat_pb2.ContentPart:
    source = {"data": data} if data else {"url": url}
    return chat_pb2.ContentPart(image=chat_pb2.ImagePart(media_type="image/png", **source))  # type: ignore[arg-type]


def test_content_parts_tool_calls_and_results_are_keyed() -> None:
    call = chat_pb2.ToolCall(id="call_1", name="lookup", arguments_json='{"q": "a"}')
    other_call = chat_pb2.ToolCall(id="call_1", name="lookup", arguments_json='{"q": "b"}')
    turns = [
        _with_turn(role=chat_pb2.ROLE_USER, parts=[_image(b"one")]),
        _with_turn(role=chat_pb2.ROLE_USER, parts=[_image(b"two")]),
        _with_turn(role=chat_pb2.ROLE_USER, parts=[_image(url="https://x.test/one.png")]),
        _with_turn(role=chat_pb2.ROLE_USER, parts=[chat_pb2.ContentPart(text="a part")]),
        _with_turn(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
        _with_turn(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[other_call]),
        _with_turn(role=chat_pb2.ROLE_TOOL, content="42", tool_call_id="call_1"),
        _with_turn(role=chat_pb2.ROLE_TOOL, content="42", tool_call_id="call_2"),
    ]
    ids = [scope_keys(turn, "simulated").entry_id for turn in turns]
    assert len(set(ids)) == len(ids)
    # The image's bytes are hashed, never kept in the key material.
    assert (
        scope_keys(turns[0], "simulated").entry_id
        == scope_keys(
            _with_turn(role=chat_pb2.ROLE_USER, parts=[_image(b"one")]), "simulated"
        ).entry_id
    )


@pytest.mark.parametrize(
    "exact_only_scope",
    [
        scope("What is the capital of France?", tools=[TOOL]),
        scope("What is the capital of France?", response_format=SCHEMA),
        _with_turn(role=chat_pb2.ROLE_USER, content="What is this?", parts=[_image(b"img")]),
    ],
)
def test_tools_images_and_schemas_are_never_matched_semantically(
    exact_only_scope: cache_pb2.CacheScope,
) -> None:
    # No prompt text means nothing is embedded on store and no semantic lookup runs.
    assert scope_keys(exact_only_scope, "simulated").prompt_text == ""
    assert scope_keys(scope("What is the capital of France?"), "simulated").prompt_text
