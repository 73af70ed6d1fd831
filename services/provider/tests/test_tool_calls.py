"""Tool calls on each backend: streamed, parallel, answered in a round trip, and cut halfway.

Each test runs the real SDK (or HTTP client) against a fake upstream that speaks the
provider's wire format and refuses what the real API refuses.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import (
    FakeUpstream,
    Reply,
    ToolCallScript,
    UpstreamProblem,
    http_error,
    tool_calls,
)
from llmmesh_provider.testing import collect, generate_request

# A schema with what a lossy client would drop: a nested object, a bound and an anyOf.
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "place": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {
            "anyOf": [{"type": "string", "enum": ["celsius", "fahrenheit"]}, {"type": "null"}]
        },
    },
    "required": ["place", "days", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL = chat_pb2.ToolDefinition(
    name="get_weather",
    description="The forecast for a place",
    parameters_json_schema=json.dumps(WEATHER_SCHEMA),
)
TIME_TOOL = chat_pb2.ToolDefinition(
    name="get_time", parameters_json_schema='{"type": "object", "properties": {}}'
)
PARIS = {"place": {"city": "Paris", "country": "FR"}, "days": 2, "unit": "celsius"}
TOKYO = {"place": {"city": "Tokyo"}, "days": 1, "unit": None}


def with_tools(**parameters: Any) -> chat_pb2.GenerationParameters:
    return chat_pb2.GenerationParameters(tools=[WEATHER_TOOL, TIME_TOOL], **parameters)


def sent_tools(fake: FakeUpstream) -> list[tuple[str, Any]]:
    """(name, schema) of each tool the upstream received, read from its own wire format."""
    body = fake.last_request.body
    if fake.kind == "anthropic":
        return [(tool["name"], tool["input_schema"]) for tool in body["tools"]]
    return [(tool["function"]["name"], tool["function"]["parameters"]) for tool in body["tools"]]


async def test_each_backend_streams_a_tool_call_and_sends_the_schema_whole(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(tool_calls(ToolCallScript("get_weather", PARIS), token_delay_s=0.01))

    outcome = await collect(
        provider_for, generate_request(prompt="weather in Paris?", parameters=with_tools())
    )

    assert outcome.error is None, outcome.error
    [call] = outcome.tool_calls
    assert call.name == "get_weather"
    assert call.id
    assert json.loads(call.arguments_json) == PARIS
    assert outcome.text == ""
    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    # Id and name come with the call's first piece only.
    assert outcome.tool_call_deltas[0].id == call.id
    assert all(not delta.id and not delta.name for delta in outcome.tool_call_deltas[1:])
    if fake_upstream.kind != "ollama":
        # Paced argument pieces are passed on as they arrive (Ollama sends a call whole).
        assert len(outcome.tool_call_deltas) > 2
    assert sent_tools(fake_upstream) == [
        ("get_weather", WEATHER_SCHEMA),
        ("get_time", {"type": "object", "properties": {}}),
    ]


async def test_each_backend_carries_a_whole_round_trip_to_the_final_answer(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(tool_calls(ToolCallScript("get_weather", PARIS)))
    question = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="weather in Paris?")
    first = await collect(
        provider_for, generate_request(messages=[question], parameters=with_tools())
    )
    [call] = first.tool_calls
    conversation = [
        question,
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
        chat_pb2.ChatMessage(
            role=chat_pb2.ROLE_TOOL, tool_call_id=call.id, content='{"celsius": 21}'
        ),
    ]
    fake_upstream.enqueue(Reply(chunks=("It is", " 21 degrees.")))

    final = await collect(
        provider_for, generate_request(messages=conversation, parameters=with_tools())
    )

    assert final.error is None, final.error
    assert final.text == "It is 21 degrees."
    assert final.summary is not None
    assert final.summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    messages = fake_upstream.last_request.body["messages"]
    if fake_upstream.kind == "openai":
        assert messages[1]["tool_calls"][0]["id"] == call.id
        assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == PARIS
        assert messages[2] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": '{"celsius": 21}',
        }
    elif fake_upstream.kind == "anthropic":
        assert messages[1] == {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": PARIS}],
        }
        assert messages[2]["content"] == [
            {"type": "tool_result", "tool_use_id": call.id, "content": '{"celsius": 21}'}
        ]
    else:
        assert messages[1]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": PARIS}}
        ]
        assert messages[2] == {
            "role": "tool",
            "content": '{"celsius": 21}',
            "tool_name": "get_weather",
        }


async def test_each_backend_streams_parallel_calls_apart_by_index(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(
        tool_calls(ToolCallScript("get_weather", PARIS), ToolCallScript("get_weather", TOKYO))
    )

    outcome = await collect(provider_for, generate_request(parameters=with_tools()))

    assert [json.loads(call.arguments_json) for call in outcome.tool_calls] == [PARIS, TOKYO]
    assert len({call.id for call in outcome.tool_calls}) == 2
    assert {delta.index for delta in outcome.tool_call_deltas} == {0, 1}


@pytest.mark.parametrize("fake_upstream", ["anthropic", "openai"], indirect=True)
async def test_tool_choice_and_parallel_switch_reach_the_upstream_in_its_words(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    named = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NAMED, name="get_time")
    fake_upstream.enqueue(tool_calls(ToolCallScript("get_time")))

    outcome = await collect(
        provider_for,
        generate_request(parameters=with_tools(tool_choice=named, parallel_tool_calls=False)),
    )

    assert outcome.error is None, outcome.error
    body = fake_upstream.last_request.body
    if fake_upstream.kind == "openai":
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
        assert body["parallel_tool_calls"] is False
    else:
        assert body["tool_choice"] == {
            "type": "tool",
            "name": "get_time",
            "disable_parallel_tool_use": True,
        }
    # A call without arguments arrives as the empty object.
    assert [call.arguments_json for call in outcome.tool_calls] == ["{}"]


@pytest.mark.parametrize(
    "parameters",
    [
        with_tools(tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED)),
        with_tools(parallel_tool_calls=False),
    ],
    ids=["required", "parallel-off"],
)
@pytest.mark.parametrize("fake_upstream", ["ollama"], indirect=True)
async def test_ollama_refuses_what_it_cannot_force_without_calling_it(
    fake_upstream: FakeUpstream,
    provider_for: provider_service_pb2_grpc.ProviderServiceStub,
    parameters: chat_pb2.GenerationParameters,
) -> None:
    failure = (await collect(provider_for, generate_request(parameters=parameters))).failure

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "CAPABILITY_UNSUPPORTED"
    assert failure.metadata["capability"] == "tools"
    assert failure.field_violations[0].field.startswith("parameters.")
    assert fake_upstream.request_count == 0


@pytest.mark.parametrize("fake_upstream", ["ollama"], indirect=True)
async def test_ollama_honours_tool_choice_none_by_offering_no_tools(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    none = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NONE)

    outcome = await collect(provider_for, generate_request(parameters=with_tools(tool_choice=none)))

    assert outcome.summary is not None
    assert "tools" not in fake_upstream.last_request.body


async def test_a_tool_call_cut_halfway_ends_with_an_error_counting_the_fragments_delivered(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    # Two calls, paced so that each piece reaches the caller before the cut; the cut lands
    # inside the first call's arguments (between the two calls on Ollama, which sends a
    # call whole).
    calls = (ToolCallScript("get_weather", PARIS), ToolCallScript("get_weather", TOKYO))
    fake_upstream.enqueue(tool_calls(*calls, token_delay_s=0.02, cut_after_chunks=2))

    outcome = await collect(provider_for, generate_request(parameters=with_tools()))

    failure = outcome.failure
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert failure.reason == "UPSTREAM_STREAM_CUT"
    assert outcome.tool_call_deltas
    assert failure.metadata["delivered_tool_call_fragments"] == str(len(outcome.tool_call_deltas))
    assert failure.metadata["delivered_deltas"] == str(len(outcome.order))
    assert outcome.summary is None


@pytest.mark.parametrize(
    ("problem", "capability"),
    [
        (UpstreamProblem.TOOLS_UNSUPPORTED, "tools"),
        (UpstreamProblem.IMAGES_UNSUPPORTED, "vision"),
        (UpstreamProblem.SCHEMA_UNSUPPORTED, "json_schema"),
    ],
)
async def test_an_upstream_refusal_of_a_capability_is_told_apart_from_a_bad_request(
    fake_upstream: FakeUpstream,
    provider_for: provider_service_pb2_grpc.ProviderServiceStub,
    problem: UpstreamProblem,
    capability: str,
) -> None:
    fake_upstream.enqueue(http_error(problem))

    failure = (await collect(provider_for, generate_request(parameters=with_tools()))).failure

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "CAPABILITY_UNSUPPORTED"
    assert failure.metadata["capability"] == capability
    assert failure.metadata["instance"] == "upstream"
