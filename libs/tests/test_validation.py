"""The conversation and sampling checks every service shares name fields under a prefix;
the text measure finds every text a message holds."""

from __future__ import annotations

import math

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from llmmesh.common.v1 import chat_pb2
from llmmesh.validation import (
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
