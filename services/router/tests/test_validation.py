"""Every malformed completion request is refused with the bad field named, and one size
budget (and the token estimate) covers every text field."""

from __future__ import annotations

import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh_router.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens
from llmmesh_router.validation import find_violations

USER = chat_pb2.ROLE_USER


def _request(**fields: object) -> router_service_pb2.StreamCompleteRequest:
    defaults: dict[str, object] = {
        "model": "auto",
        "messages": [chat_pb2.ChatMessage(role=USER, content="hello")],
    }
    defaults.update(fields)
    return router_service_pb2.StreamCompleteRequest(**defaults)  # type: ignore[arg-type]


def _fields(request: router_service_pb2.StreamCompleteRequest, max_bytes: int = 1000) -> list[str]:
    return [v.field for v in find_violations(request, max_prompt_bytes=max_bytes)]


def test_well_formed_request_has_no_violations() -> None:
    assert _fields(_request()) == []


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [chat_pb2.ChatMessage(role=chat_pb2.ROLE_UNSPECIFIED, content="x")]},
         "messages[0].role"),
        ({"messages": [chat_pb2.ChatMessage(role=USER, content="a"),
                       chat_pb2.ChatMessage(role=99, content="x")]},  # type: ignore[arg-type]
         "messages[1].role"),
        ({"messages": [chat_pb2.ChatMessage(role=USER, content="  ")]}, "messages[0].content"),
        ({"messages": [chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="be brief")]},
         "messages"),
        ({"parameters": chat_pb2.GenerationParameters(max_tokens=-1)}, "parameters.max_tokens"),
        ({"parameters": chat_pb2.GenerationParameters(temperature=2.5)}, "parameters.temperature"),
        ({"parameters": chat_pb2.GenerationParameters(top_p=0.0)}, "parameters.top_p"),
        ({"priority": 42}, "priority"),
        ({"cache": router_pb2.CacheControl(similarity_threshold=1.5)},
         "cache.similarity_threshold"),
    ],
)  # fmt: skip
def test_malformed_field_is_named(request_fields: dict[str, object], field: str) -> None:
    assert field in _fields(_request(**request_fields))


def test_oversized_prompt_is_refused_by_its_size_in_bytes() -> None:
    big = _request(messages=[chat_pb2.ChatMessage(role=USER, content="é" * 600)])
    [violation] = find_violations(big, max_prompt_bytes=1000)
    assert violation.field == "messages"
    assert "1204 bytes (1200 in messages)" in violation.description  # "auto" counts too


TOOL = chat_pb2.ToolDefinition


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"model": "m" * 2000}, "model"),
        ({"messages": [chat_pb2.ChatMessage(role=USER, content="hi", name="n" * 2000)]},
         "messages"),
        ({"parameters": chat_pb2.GenerationParameters(stop=["s" * 2000])}, "parameters"),
        ({"parameters": chat_pb2.GenerationParameters(stop=["s" * 300] * 7)}, "parameters"),
        ({"parameters": chat_pb2.GenerationParameters(
            response_format=chat_pb2.ResponseFormat(json_schema="{" + " " * 2000 + "}"))},
         "parameters"),
        ({"parameters": chat_pb2.GenerationParameters(tools=[TOOL(description="d" * 2000)])},
         "parameters"),
        ({"parameters": chat_pb2.GenerationParameters(
            tools=[TOOL(parameters_json_schema="x" * 1000), TOOL(name="y" * 1000)])},
         "parameters"),
    ],
)  # fmt: skip
def test_every_text_field_counts_towards_the_size_budget(
    request_fields: dict[str, object], field: str
) -> None:
    [violation] = find_violations(_request(**request_fields), max_prompt_bytes=1000)
    assert violation.field == field
    assert "the limit is 1000" in violation.description


def test_text_spread_over_fields_is_added_up() -> None:
    request = _request(
        messages=[chat_pb2.ChatMessage(role=USER, content="c" * 400, name="n" * 300)],
        parameters=chat_pb2.GenerationParameters(stop=["s" * 300]),
    )
    assert _fields(request, max_bytes=1004) == []
    assert _fields(request, max_bytes=1003) == ["messages"]


def test_prompt_tokens_are_estimated_from_every_text_field() -> None:
    plain = _request(messages=[chat_pb2.ChatMessage(role=USER, content="hello")])
    padded = _request(
        messages=[chat_pb2.ChatMessage(role=USER, content="hello", name="n" * 400)],
        parameters=chat_pb2.GenerationParameters(
            stop=["s" * 400],
            tools=[TOOL(name="t", parameters_json_schema="j" * 400)],
            response_format=chat_pb2.ResponseFormat(json_schema="r" * 400),
        ),
    )
    extra = estimate_prompt_tokens(padded, 1) - estimate_prompt_tokens(plain, 1)
    assert extra >= 4 * 400 // CHARS_PER_TOKEN


def test_prompt_tokens_of_wide_characters_count_their_bytes() -> None:
    wide = _request(messages=[chat_pb2.ChatMessage(role=USER, content="数" * 400)])
    narrow = _request(messages=[chat_pb2.ChatMessage(role=USER, content="n" * 400)])
    assert estimate_prompt_tokens(wide, 1) > 2 * estimate_prompt_tokens(narrow, 1)


def test_every_problem_is_reported_at_once() -> None:
    request = _request(model="", parameters=chat_pb2.GenerationParameters(max_tokens=-5, top_p=3.0))
    assert sorted(_fields(request)) == ["model", "parameters.max_tokens", "parameters.top_p"]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"messages": [chat_pb2.ChatMessage()] * 11}, "messages"),
        ({"parameters": chat_pb2.GenerationParameters(stop=["s"] * 11)}, "parameters.stop"),
        ({"parameters": chat_pb2.GenerationParameters(tools=[TOOL()] * 11)}, "parameters.tools"),
    ],
)
def test_a_list_longer_than_the_bound_is_the_only_problem_reported(
    request_fields: dict[str, object], field: str
) -> None:
    request = _request(model="", **request_fields)
    [violation] = find_violations(request, max_prompt_bytes=1000, max_list_items=10)
    assert (violation.field, violation.description) == (field, "holds 11 items; the limit is 10")


def test_lists_at_the_bound_are_checked_element_by_element() -> None:
    request = _request(messages=[chat_pb2.ChatMessage(role=USER, content=" ")] * 10)
    violations = find_violations(request, max_prompt_bytes=1000, max_list_items=10)
    assert len(violations) == 10
