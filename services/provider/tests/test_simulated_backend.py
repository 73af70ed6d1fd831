"""The simulated provider works with no config: deterministic answers, pacing and seeded faults."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import grpc.aio
import jsonschema

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_pb2, provider_service_pb2
from llmmesh_provider.testing import (
    StreamOutcome,
    collect,
    generate_request,
    policy_with,
    running_provider,
)


def simulated(**settings: Any) -> dict[str, Any]:
    return {"name": "sim", "backend": "simulated", **settings}


def sim_request(prompt: str = "what is a mesh", max_tokens: int = 0) -> Any:
    return generate_request(
        instance="sim", model="simulated-chat", prompt=prompt, max_tokens=max_tokens
    )


async def test_with_no_config_the_simulated_instance_answers_for_any_model() -> None:
    async with running_provider({}) as stub:
        outcome = await collect(stub, generate_request(instance="simulated", model="sim-fast"))

    assert outcome.error is None
    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert outcome.summary.usage.output_tokens == len(outcome.text.split()) == 48
    assert outcome.summary.usage.input_tokens == 5
    assert outcome.summary.response_model == "sim-fast"
    assert outcome.summary.provider_request_id


async def test_list_models_shows_the_models_a_simulated_instance_names() -> None:
    async with running_provider(policy_with(simulated(models=["sim-a", "sim-b"]))) as stub:
        listed = await stub.ListModels(provider_service_pb2.ListModelsRequest())
        unknown = await collect(stub, generate_request(instance="sim", model="sim-c"))

    assert list(listed.models) == [
        provider_pb2.ProviderModel(instance="sim", backend="simulated", model=name)
        for name in ("sim-a", "sim-b")
    ]
    assert unknown.failure.reason == "UNKNOWN_MODEL"


async def test_the_same_prompt_gets_the_same_answer_and_another_prompt_another() -> None:
    async with running_provider(policy_with(simulated(answer_tokens=12))) as stub:
        first = await collect(stub, sim_request("tell me about caches"))
        again = await collect(stub, sim_request("tell me about caches"))
        other = await collect(stub, sim_request("tell me about limits"))

    assert first.text == again.text
    assert first.text != other.text
    assert len(first.text.split()) == 12
    assert first.text.endswith(".")


async def test_max_tokens_caps_the_answer_and_finishes_with_length() -> None:
    async with running_provider(policy_with(simulated(answer_tokens=12))) as stub:
        outcome = await collect(stub, sim_request(max_tokens=5))

    assert len(outcome.text.split()) == 5
    assert outcome.summary is not None
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_LENGTH


async def test_time_to_first_token_and_token_rate_pace_the_stream() -> None:
    pacing = simulated(answer_tokens=6, first_token_delay_ms=200, tokens_per_s=20)
    async with running_provider(policy_with(pacing)) as stub:
        started = time.monotonic()
        call = stub.Generate(sim_request(), timeout=5)
        await call.read()
        first_token_s = time.monotonic() - started
        while await call.read() is not grpc.aio.EOF:
            pass
        total_s = time.monotonic() - started

    assert 0.2 <= first_token_s < 1.0
    # Five more tokens at 20 per second follow the first.
    assert total_s >= 0.2 + 5 / 20


async def _fault_sequence(seed: int) -> list[str]:
    faults = {"seed": seed, "unavailable_rate": 0.3, "stream_cut_rate": 0.3}
    outcomes: list[str] = []
    async with running_provider(policy_with(simulated(answer_tokens=8, faults=faults))) as stub:
        for _ in range(12):
            outcome: StreamOutcome = await collect(stub, sim_request())
            if outcome.error is None:
                outcomes.append("ok")
            else:
                outcomes.append(f"{outcome.error.reason}@{len(outcome.text.split())}")
    return outcomes


async def test_seeded_faults_replay_identically() -> None:
    first = await _fault_sequence(seed=7)
    again = await _fault_sequence(seed=7)

    assert first == again
    assert any(o.startswith("UPSTREAM_UNAVAILABLE@0") for o in first)
    assert any(o.startswith("UPSTREAM_STREAM_CUT@") and not o.endswith("@0") for o in first)
    assert "ok" in first


async def test_a_simulated_rate_limit_carries_retry_advice() -> None:
    faults = {"rate_limited_rate": 1.0}
    async with running_provider(policy_with(simulated(faults=faults))) as stub:
        failure = (await collect(stub, sim_request())).failure

    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.reason == "UPSTREAM_RATE_LIMITED"
    assert failure.retry_after_s == 1.0


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL = chat_pb2.ToolDefinition(
    name="get_weather", parameters_json_schema=json.dumps(WEATHER_SCHEMA)
)
NOTE_TOOL = chat_pb2.ToolDefinition(name="take_note")


async def test_offered_tools_the_simulated_model_calls_the_first_with_schema_arguments() -> None:
    parameters = chat_pb2.GenerationParameters(tools=[WEATHER_TOOL, NOTE_TOOL])
    async with running_provider(policy_with(simulated(tokens_per_s=1000))) as stub:
        first = await collect(stub, sim_request_with(parameters=parameters))
        again = await collect(stub, sim_request_with(parameters=parameters))

    assert first.error is None
    [call] = first.tool_calls
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments_json), WEATHER_SCHEMA)
    # Streamed in pieces, id and name on the first.
    assert len(first.tool_call_deltas) > 2
    assert first.summary is not None
    assert first.summary.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert again.tool_calls == first.tool_calls


async def test_the_simulated_model_answers_a_tool_result_in_words_and_obeys_tool_choice() -> None:
    tools = [WEATHER_TOOL, NOTE_TOOL]
    async with running_provider(policy_with(simulated())) as stub:
        named = await collect(
            stub,
            sim_request_with(
                parameters=chat_pb2.GenerationParameters(
                    tools=tools,
                    tool_choice=chat_pb2.ToolChoice(
                        mode=chat_pb2.TOOL_CHOICE_MODE_NAMED, name="take_note"
                    ),
                )
            ),
        )
        [call] = named.tool_calls
        conversation = [
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="note the weather"),
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id=call.id, content="ok"),
        ]
        final = await collect(
            stub,
            sim_request_with(
                messages=conversation, parameters=chat_pb2.GenerationParameters(tools=tools)
            ),
        )
        declined = await collect(
            stub,
            sim_request_with(
                parameters=chat_pb2.GenerationParameters(
                    tools=tools,
                    tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NONE),
                )
            ),
        )

    assert (call.name, call.arguments_json) == ("take_note", "{}")
    assert final.tool_calls == []
    assert final.text
    assert final.summary is not None
    assert final.summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert declined.tool_calls == []
    assert declined.text


async def test_asked_for_a_schema_the_simulated_model_answers_json_that_matches_it() -> None:
    form = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema=json.dumps(WEATHER_SCHEMA)
    )
    json_mode = chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    async with running_provider(policy_with(simulated())) as stub:
        schema_answer = await collect(
            stub, sim_request_with(parameters=chat_pb2.GenerationParameters(response_format=form))
        )
        object_answer = await collect(
            stub,
            sim_request_with(parameters=chat_pb2.GenerationParameters(response_format=json_mode)),
        )

    jsonschema.validate(json.loads(schema_answer.text), WEATHER_SCHEMA)
    assert isinstance(json.loads(object_answer.text), dict)


async def test_asked_to_reason_the_simulated_model_streams_reasoning_before_the_answer() -> None:
    effort = chat_pb2.GenerationParameters(reasoning_effort=chat_pb2.REASONING_EFFORT_HIGH)
    async with running_provider(policy_with(simulated(answer_tokens=5, tokens_per_s=1000))) as stub:
        outcome = await collect(stub, sim_request_with(parameters=effort))

    assert outcome.reasoning
    assert outcome.order[0] == "reasoning"
    assert outcome.order[-1] == "text"
    assert outcome.summary is not None
    assert outcome.summary.usage.reasoning_tokens > 0


async def test_a_simulated_stop_sequence_ends_the_answer_before_it_and_is_named() -> None:
    async with running_provider(policy_with(simulated(answer_tokens=12))) as stub:
        full = await collect(stub, sim_request_with(parameters=chat_pb2.GenerationParameters()))
        stop = full.text.split()[5]
        stopped = await collect(
            stub, sim_request_with(parameters=chat_pb2.GenerationParameters(stop=[stop]))
        )

    assert stop not in stopped.text
    assert full.text.startswith(stopped.text)
    assert stopped.summary is not None
    assert stopped.summary.stop_sequence == stop


def sim_request_with(
    *,
    parameters: chat_pb2.GenerationParameters,
    messages: list[chat_pb2.ChatMessage] | None = None,
) -> Any:
    return generate_request(
        instance="sim",
        model="simulated-chat",
        prompt="what is the weather in Paris",
        messages=messages,
        parameters=parameters,
    )
