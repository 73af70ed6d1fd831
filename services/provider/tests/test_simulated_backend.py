"""The simulated provider works with no config: deterministic answers, pacing and seeded faults."""

from __future__ import annotations

import time
from typing import Any

import grpc
import grpc.aio

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
