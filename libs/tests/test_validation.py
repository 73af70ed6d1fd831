"""The conversation and sampling checks every service shares name fields under a prefix."""

from __future__ import annotations

import math

from llmmesh.common.v1 import chat_pb2
from llmmesh.validation import conversation_violations, sampling_violations


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
