"""Every upstream failure becomes a precise gRPC status with machine-readable details."""

from __future__ import annotations

import grpc
import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import (
    DEFAULT_ANSWER_CHUNKS,
    FakeAnthropic,
    FakeOpenAI,
    FakeUpstream,
    UpstreamProblem,
    http_error,
    rate_limited,
    stream_error,
)
from llmmesh.testing.ports import free_port
from llmmesh_provider.testing import (
    TEST_KEY,
    TEST_KEY_ENV,
    collect,
    generate_request,
    instance_for,
    policy_with,
    running_provider,
)
from llmmesh_provider.upstream_errors import (
    UpstreamHttpError,
    UpstreamTarget,
    failure_from_http,
    retry_after_s,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INVALID = grpc.StatusCode.INVALID_ARGUMENT

ALL_KINDS = ("anthropic", "ollama", "openai")
CREDENTIALS_REJECTED = (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_CREDENTIALS_REJECTED")

# problem -> (kinds, expected code, expected reason)
MAPPING: list[tuple[UpstreamProblem, tuple[str, ...], grpc.StatusCode, str]] = [
    (UpstreamProblem.SERVER_ERROR, ALL_KINDS, UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
    (UpstreamProblem.BAD_GATEWAY, ALL_KINDS, UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
    (UpstreamProblem.SERVICE_UNAVAILABLE, ALL_KINDS, UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
    (UpstreamProblem.GATEWAY_TIMEOUT, ALL_KINDS, UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
    # Only Anthropic has a distinct overload status (529); the others send a plain 503.
    (UpstreamProblem.OVERLOADED, ("anthropic",), UNAVAILABLE, "UPSTREAM_OVERLOADED"),
    (UpstreamProblem.OVERLOADED, ("ollama", "openai"), UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
    (UpstreamProblem.CONTEXT_LENGTH_EXCEEDED, ALL_KINDS, INVALID, "CONTEXT_LENGTH_EXCEEDED"),
    # Ollama has no content filter.
    (UpstreamProblem.CONTENT_FILTERED, ("anthropic", "openai"), INVALID, "CONTENT_FILTERED"),
    (UpstreamProblem.BAD_REQUEST, ALL_KINDS, INVALID, "UPSTREAM_BAD_REQUEST"),
    (UpstreamProblem.UNAUTHORIZED, ALL_KINDS, *CREDENTIALS_REJECTED),
    (UpstreamProblem.FORBIDDEN, ALL_KINDS, *CREDENTIALS_REJECTED),
    (
        UpstreamProblem.MODEL_NOT_FOUND,
        ALL_KINDS,
        grpc.StatusCode.NOT_FOUND,
        "UPSTREAM_MODEL_NOT_FOUND",
    ),
]


@pytest.mark.parametrize(
    ("fake_upstream", "problem", "code", "reason"),
    [
        pytest.param(kind, problem, code, reason, id=f"{kind}-{problem.value}")
        for problem, kinds, code, reason in MAPPING
        for kind in kinds
    ],
    indirect=["fake_upstream"],
)
async def test_http_error_maps_to_status_and_reason_with_one_upstream_call(
    fake_upstream: FakeUpstream,
    provider_for: provider_service_pb2_grpc.ProviderServiceStub,
    problem: UpstreamProblem,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    fake_upstream.enqueue(http_error(problem))

    failure = (await collect(provider_for, generate_request())).failure

    assert (failure.code, failure.reason) == (code, reason)
    assert failure.metadata["instance"] == "upstream"
    assert failure.metadata["model"] == "test-model"
    assert failure.metadata["backend"] == fake_upstream.kind
    assert TEST_KEY not in failure.message
    # The SDKs' own retries are off: the router decides about retries.
    assert fake_upstream.request_count == 1


async def test_rate_limit_maps_to_resource_exhausted_with_the_upstreams_retry_advice(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(rate_limited(retry_after_s=3))

    failure = (await collect(provider_for, generate_request())).failure

    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.reason == "UPSTREAM_RATE_LIMITED"
    assert failure.retry_after_s == pytest.approx(3.0)
    assert fake_upstream.request_count == 1


async def test_retry_after_ms_is_preferred_for_sub_second_advice(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(rate_limited(retry_after_s=0.25))
    instance = instance_for(fake_openai, api_key_env=TEST_KEY_ENV)
    async with running_provider(policy_with(instance)) as stub:
        failure = (await collect(stub, generate_request())).failure

    assert failure.retry_after_s == pytest.approx(0.25)


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    assert retry_after_s({"Retry-After": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({}) is None


def test_upstream_text_that_echoes_the_key_is_redacted() -> None:
    target = UpstreamTarget("openai-primary", "openai", "gpt")
    error = UpstreamHttpError(status=400, headers={}, message=f"bad key {TEST_KEY} in header")

    failure = failure_from_http(target, error, secret=TEST_KEY)

    assert TEST_KEY not in failure.message
    assert "[redacted]" in failure.message


async def test_credentials_rejection_never_mentions_the_key(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.enqueue(http_error(UpstreamProblem.UNAUTHORIZED))
    instance = instance_for(fake_anthropic, api_key_env=TEST_KEY_ENV)
    async with running_provider(policy_with(instance)) as stub:
        failure = (await collect(stub, generate_request())).failure

    assert failure.reason == "UPSTREAM_CREDENTIALS_REJECTED"
    assert TEST_KEY not in failure.message
    assert all(TEST_KEY not in value for value in failure.metadata.values())
    # The fake did receive the key, so the call really was authenticated with it.
    assert any(TEST_KEY in value for value in fake_anthropic.last_request.headers.values())


@pytest.mark.parametrize(
    ("fake_upstream", "problem", "reason"),
    [
        ("anthropic", UpstreamProblem.OVERLOADED, "UPSTREAM_OVERLOADED"),
        ("openai", UpstreamProblem.SERVER_ERROR, "UPSTREAM_UNAVAILABLE"),
        ("ollama", UpstreamProblem.SERVER_ERROR, "UPSTREAM_UNAVAILABLE"),
    ],
    indirect=["fake_upstream"],
)
async def test_an_error_event_mid_stream_ends_the_stream_with_its_status(
    fake_upstream: FakeUpstream,
    provider_for: provider_service_pb2_grpc.ProviderServiceStub,
    problem: UpstreamProblem,
    reason: str,
) -> None:
    fake_upstream.enqueue(stream_error(problem, after_chunks=2))

    outcome = await collect(provider_for, generate_request())

    assert outcome.text == "".join(DEFAULT_ANSWER_CHUNKS[:2])
    assert (outcome.failure.code, outcome.failure.reason) == (UNAVAILABLE, reason)
    assert outcome.failure.metadata["delivered_deltas"] == str(len(outcome.deltas))


async def test_an_unreachable_upstream_is_unavailable() -> None:
    closed = {"name": "gone", "backend": "ollama", "base_url": f"http://127.0.0.1:{free_port()}"}
    async with running_provider(policy_with(closed)) as stub:
        failure = (await collect(stub, generate_request(instance="gone"))).failure

    assert (failure.code, failure.reason) == (UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
    assert failure.retry_after_s is not None


async def test_an_unknown_instance_is_not_found_naming_the_field() -> None:
    async with running_provider({}) as stub:
        failure = (await collect(stub, generate_request(instance="nope"))).failure

    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.reason == "UNKNOWN_INSTANCE"
    assert [v.field for v in failure.field_violations] == ["instance"]


async def test_a_model_the_instance_does_not_list_is_not_found_naming_the_field() -> None:
    listed = {"name": "simulated", "backend": "simulated", "models": ["sim-fast"]}
    async with running_provider(policy_with(listed)) as stub:
        failure = (
            await collect(stub, generate_request(instance="simulated", model="gpt-9"))
        ).failure

    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.reason == "UNKNOWN_MODEL"
    assert [v.field for v in failure.field_violations] == ["model"]


async def test_an_instance_without_its_key_fails_precondition_without_calling_upstream(
    fake_openai: FakeOpenAI,
) -> None:
    instance = instance_for(fake_openai, api_key_env="LLMMESH_TEST_UNSET_KEY")
    async with running_provider(policy_with(instance)) as stub:
        failure = (await collect(stub, generate_request())).failure

    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "UPSTREAM_CREDENTIALS_MISSING"
    assert failure.metadata["api_key_env"] == "LLMMESH_TEST_UNSET_KEY"
    assert fake_openai.request_count == 0


def _request(**changes: object) -> provider_service_pb2.GenerateRequest:
    request = generate_request(instance="simulated", model="simulated-chat")
    for name, value in changes.items():
        if name == "messages":
            del request.messages[:]
            request.messages.extend(value)  # type: ignore[arg-type]
        elif name == "parameters":
            request.parameters.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(request, name, value)
    return request


def _message(role: int, content: str = "hi") -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(role=role, content=content)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_request(messages=[]), "messages"),
        (_request(messages=[_message(chat_pb2.ROLE_UNSPECIFIED)]), "messages[0].role"),
        (_request(messages=[_message(99)]), "messages[0].role"),
        (_request(messages=[_message(chat_pb2.ROLE_TOOL)]), "messages[0].tool_call_id"),
        (_request(messages=[_message(chat_pb2.ROLE_USER, "")]), "messages[0].content"),
        (_request(messages=[_message(chat_pb2.ROLE_SYSTEM)]), "messages"),
        (_request(instance=""), "instance"),
        (_request(model=""), "model"),
        (
            _request(parameters=chat_pb2.GenerationParameters(temperature=2.5)),
            "parameters.temperature",
        ),
        (_request(parameters=chat_pb2.GenerationParameters(top_p=0)), "parameters.top_p"),
        (
            _request(parameters=chat_pb2.GenerationParameters(max_tokens=-1)),
            "parameters.max_tokens",
        ),
        (
            _request(parameters=chat_pb2.GenerationParameters(stop=["a", "b", "c", "d", "e"])),
            "parameters.stop",
        ),
        (
            _request(
                parameters=chat_pb2.GenerationParameters(
                    tools=[chat_pb2.ToolDefinition(name="no spaces")]
                )
            ),
            "parameters.tools[0].name",
        ),
        (
            _request(
                parameters=chat_pb2.GenerationParameters(
                    response_format=chat_pb2.ResponseFormat(
                        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema="[1"
                    )
                )
            ),
            "parameters.response_format.json_schema",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_bad_generate_input_is_invalid_argument_naming_the_field(
    request_: provider_service_pb2.GenerateRequest, field: str
) -> None:
    async with running_provider({}) as stub:
        failure = (await collect(stub, request_)).failure

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in failure.field_violations]
