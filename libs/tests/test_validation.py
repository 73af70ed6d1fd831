"""The conversation, sampling, tool and schema checks every service shares: every problem named
by its field path; the text measure finds every text a message holds."""

from __future__ import annotations

import json
import math
import time

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from llmmesh.common.v1 import chat_pb2
from llmmesh.validation import (
    attribution_violations,
    conversation_violations,
    list_length_violations,
    sampling_violations,
    text_bytes,
    text_bytes_by_field,
)


def test_nested_conversation_problems_are_named_under_the_prefix() -> None:
    messages = [
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="be brief"),
        chat_pb2.ChatMessage(role=9, content=" "),  # type: ignore[arg-type]
    ]
    fields = [v.field for v in conversation_violations(messages, "scope.messages")]
    assert fields == ["scope.messages[1].role", "scope.messages[1].content"]


def test_a_conversation_of_system_messages_only_is_refused() -> None:
    system = chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="rules")
    assert [v.field for v in conversation_violations([system])] == ["messages"]


def test_not_a_number_is_outside_every_range() -> None:
    parameters = chat_pb2.GenerationParameters(temperature=math.nan, top_p=math.nan)
    fields = [v.field for v in sampling_violations(parameters)]
    assert fields == ["parameters.temperature", "parameters.top_p"]


def test_empty_stop_sequence_is_named_by_position() -> None:
    parameters = chat_pb2.GenerationParameters(stop=["END", ""])
    assert [v.field for v in sampling_violations(parameters)] == ["parameters.stop[1]"]


def _user(content: str = "hi", **fields: object) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=content, **fields)  # type: ignore[arg-type]


def _call(
    call_id: str = "call_1", name: str = "lookup", arguments: str = "{}"
) -> chat_pb2.ToolCall:
    return chat_pb2.ToolCall(id=call_id, name=name, arguments_json=arguments)


def _fields(messages: list[chat_pb2.ChatMessage], **limits: int) -> list[str]:
    return [v.field for v in conversation_violations(messages, **limits)]


def test_a_tool_round_trip_is_valid_and_an_answer_to_no_call_is_not() -> None:
    assistant = chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[_call()])
    answer = chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="call_1", content="42")
    stray = chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="call_9", content="42")
    early = chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="call_1", content="42")

    assert _fields([_user(), assistant, answer]) == []
    assert _fields([_user(), assistant, stray]) == ["messages[2].tool_call_id"]
    # The answer must come after the call it answers.
    assert _fields([_user(), early, assistant]) == ["messages[1].tool_call_id"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (_call(call_id=""), "messages[1].tool_calls[0].id"),
        (_call(name="two words"), "messages[1].tool_calls[0].name"),
        (_call(arguments="[1, 2]"), "messages[1].tool_calls[0].arguments_json"),
        (_call(arguments="{"), "messages[1].tool_calls[0].arguments_json"),
    ],
)
def test_a_malformed_tool_call_is_named_by_its_path(call: chat_pb2.ToolCall, field: str) -> None:
    assistant = chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call])
    assert _fields([_user(), assistant]) == [field]


def test_repeated_call_ids_and_calls_outside_assistant_turns_are_refused() -> None:
    twice = chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[_call(), _call()])
    assert _fields([_user(), twice]) == ["messages[1].tool_calls[1].id"]
    assert _fields([_user(tool_calls=[_call()])]) == ["messages[0].tool_calls"]


def test_content_parts_replace_content_and_images_are_bounded() -> None:
    png = chat_pb2.ImagePart(data=b"x" * 11, media_type="image/png")
    parts = [chat_pb2.ContentPart(text="look"), chat_pb2.ContentPart(image=png)]

    assert _fields([_user("", parts=parts)], max_image_bytes=11) == []
    assert _fields([_user("", parts=parts)], max_image_bytes=10) == [
        "messages[0].parts[1].image.data"
    ]
    assert _fields([_user("also text", parts=parts)]) == ["messages[0].parts"]


@pytest.mark.parametrize(
    ("image", "field"),
    [
        (chat_pb2.ImagePart(data=b"x"), "messages[0].parts[0].image.media_type"),
        (
            chat_pb2.ImagePart(data=b"x", media_type="image/tiff"),
            "messages[0].parts[0].image.media_type",
        ),
        (chat_pb2.ImagePart(url="file:///etc/passwd"), "messages[0].parts[0].image.url"),
        (chat_pb2.ImagePart(), "messages[0].parts[0].image"),
    ],
)
def test_an_image_needs_an_http_url_or_bytes_of_a_known_type(
    image: chat_pb2.ImagePart, field: str
) -> None:
    message = _user("", parts=[chat_pb2.ContentPart(image=image)])
    assert _fields([message]) == [field]


def test_images_belong_to_user_turns_and_reasoning_to_assistant_turns() -> None:
    image = chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://example.com/a.png"))
    thought = chat_pb2.ContentPart(reasoning=chat_pb2.ReasoningPart(text="hm", signature="s"))
    assistant = chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, parts=[image, thought])
    user = _user("", parts=[thought])

    assert _fields([assistant, user]) == [
        "messages[0].parts[0].image",
        "messages[1].parts[0].reasoning",
    ]


def _tool(name: str = "lookup", schema: str = '{"type": "object"}') -> chat_pb2.ToolDefinition:
    return chat_pb2.ToolDefinition(name=name, parameters_json_schema=schema)


@pytest.mark.parametrize(
    ("tools", "field", "words"),
    [
        ([_tool(name="has space")], "parameters.tools[0].name", "must match"),
        ([_tool(name="x" * 65)], "parameters.tools[0].name", "must match"),
        ([_tool(), _tool()], "parameters.tools[1].name", "repeats"),
        ([_tool(schema="{not json")], "parameters.tools[0].parameters_json_schema", "JSON object"),
        ([_tool(schema="[]")], "parameters.tools[0].parameters_json_schema", "JSON object"),
        (
            [_tool(schema='{"type": "objekt"}')],
            "parameters.tools[0].parameters_json_schema",
            "not a valid JSON Schema: schema.type",
        ),
        (
            [_tool(schema='{"type": "string"}')],
            "parameters.tools[0].parameters_json_schema",
            "object",
        ),
    ],
)
def test_bad_tools_are_named_with_what_is_wrong(
    tools: list[chat_pb2.ToolDefinition], field: str, words: str
) -> None:
    [violation] = sampling_violations(chat_pb2.GenerationParameters(tools=tools))
    assert violation.field == field
    assert words in violation.description


def test_a_named_tool_choice_must_name_an_offered_tool_and_required_needs_tools() -> None:
    named = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NAMED, name="other")
    required = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED)

    assert [
        v.field
        for v in sampling_violations(
            chat_pb2.GenerationParameters(tools=[_tool()], tool_choice=named)
        )
    ] == ["parameters.tool_choice.name"]
    assert [
        v.field for v in sampling_violations(chat_pb2.GenerationParameters(tool_choice=required))
    ] == ["parameters.tool_choice.mode"]


@pytest.mark.parametrize(
    "schema",
    ['{"type": "object"', '"a string"', '{"$schema": ["not", "a", "uri"]}', "[" * 5000, "{" * 5000],
)
def test_a_response_schema_that_is_not_a_json_schema_object_is_refused_not_crashed_on(
    schema: str,
) -> None:
    form = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema=schema
    )
    fields = [
        v.field for v in sampling_violations(chat_pb2.GenerationParameters(response_format=form))
    ]
    assert fields == ["parameters.response_format.json_schema"]


def test_attribution_is_bounded() -> None:
    attribution = chat_pb2.Attribution(user="u" * 129, tags={f"k{i}": "v" for i in range(17)})
    assert [v.field for v in attribution_violations(attribution)] == [
        "attribution.user",
        "attribution.tags",
    ]


def _wide_schema(properties: int) -> str:
    shape = {
        "type": "object",
        "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
    }
    return json.dumps({"type": "object", "properties": {f"p{i}": shape for i in range(properties)}})


def test_schemas_at_the_size_bound_are_checked_quickly_and_past_it_refused_unread() -> None:
    schema = _wide_schema(600)  # about 60 KiB
    tools = [_tool(name=f"tool{i}", schema=schema) for i in range(4)]
    started = time.monotonic()
    assert sampling_violations(chat_pb2.GenerationParameters(tools=tools)) == []
    # Generous for a loaded machine; the bound exists so no request holds the loop for long.
    assert time.monotonic() - started < 2.0

    tools.append(_tool(name="tool4", schema=schema))
    [violation] = sampling_violations(chat_pb2.GenerationParameters(tools=tools))
    assert violation.field == "parameters.tools"


def test_text_bytes_reaches_every_string_and_bytes_value_however_nested() -> None:
    info = error_details_pb2.ErrorInfo(reason="ab", domain="cd", metadata={"k": "vv", "é": ""})
    assert text_bytes(info) == 2 + 2 + (1 + 2) + 2  # maps count keys and values
    assert text_bytes(any_pb2.Any(type_url="t", value=b"\x00\xff")) == 3
    nested = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="f", description="数"),
            error_details_pb2.BadRequest.FieldViolation(field="g"),
        ]
    )
    assert text_bytes(nested) == 1 + 3 + 1
    assert text_bytes_by_field(info) == {"reason": 2, "domain": 2, "metadata": 5}
    assert text_bytes_by_field(error_details_pb2.ErrorInfo()) == {}


def test_list_length_violations_reach_nested_lists_and_skip_long_ones() -> None:
    nested = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="f")] * 3
    )
    assert [v.field for v in list_length_violations(nested, 2)] == ["field_violations"]
    assert list_length_violations(nested, 3) == []
    info = error_details_pb2.ErrorInfo(metadata={str(i): "" for i in range(3)})
    [violation] = list_length_violations(info, 2)
    assert (violation.field, violation.description) == ("metadata", "holds 3 items; the limit is 2")
    status = status_pb2.Status(details=[any_pb2.Any(type_url="t")] * 2)
    assert list_length_violations(status, 1)[0].field == "details"
