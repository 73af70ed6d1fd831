"""JSON-schema answers, images, reasoning and full usage on each backend, and the parameters a
backend drops or refuses, each named."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import grpc
import jsonschema
import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2_grpc
from llmmesh.testing.fake_upstreams import FakeUpstream, Reply
from llmmesh_provider.backend import Support
from llmmesh_provider.backends.anthropic_backend import FEATURES as ANTHROPIC_FEATURES
from llmmesh_provider.backends.ollama_backend import FEATURES as OLLAMA_FEATURES
from llmmesh_provider.backends.openai_backend import FEATURES as OPENAI_FEATURES
from llmmesh_provider.backends.simulated_backend import FEATURES as SIMULATED_FEATURES
from llmmesh_provider.features import feature_table
from llmmesh_provider.testing import collect, generate_request

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "population": {"type": "integer", "minimum": 1000},
        "districts": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["city", "population", "districts"],
    "additionalProperties": False,
}
# The smallest valid PNG: one transparent pixel.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
PROVIDER_README = pathlib.Path(__file__).parents[1] / "README.md"


def sent_schema(fake: FakeUpstream) -> Any:
    body = fake.last_request.body
    if fake.kind == "openai":
        return body["response_format"]["json_schema"]["schema"]
    if fake.kind == "anthropic":
        return body["output_config"]["format"]["schema"]
    return body["format"]


async def test_each_backend_asks_for_the_schema_and_passes_the_json_answer_on(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    form = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        json_schema=json.dumps(ANSWER_SCHEMA),
        name="city_facts",
    )
    outcome = await collect(
        provider_for,
        generate_request(parameters=chat_pb2.GenerationParameters(response_format=form)),
    )

    assert outcome.error is None, outcome.error
    jsonschema.validate(json.loads(outcome.text), ANSWER_SCHEMA)
    assert sent_schema(fake_upstream) == ANSWER_SCHEMA
    if fake_upstream.kind == "openai":
        sent = fake_upstream.last_request.body["response_format"]["json_schema"]
        assert (sent["name"], sent["strict"]) == ("city_facts", True)


def image_message(*images: chat_pb2.ImagePart) -> chat_pb2.ChatMessage:
    parts = [chat_pb2.ContentPart(text="what is in this picture?")]
    parts += [chat_pb2.ContentPart(image=image) for image in images]
    return chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, parts=parts)


async def test_each_backend_sends_an_inline_image_in_its_own_shape(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    image = chat_pb2.ImagePart(data=PIXEL_PNG, media_type="image/png")

    outcome = await collect(provider_for, generate_request(messages=[image_message(image)]))

    assert outcome.error is None, outcome.error
    assert outcome.summary is not None
    # Five words and one image, which the fakes bill at 85 tokens.
    assert outcome.summary.usage.input_tokens == 5 + 85
    encoded = base64.b64encode(PIXEL_PNG).decode()
    [message] = fake_upstream.last_request.body["messages"]
    if fake_upstream.kind == "openai":
        assert message["content"] == [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        ]
    elif fake_upstream.kind == "anthropic":
        assert message["content"][1] == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": encoded},
        }
    else:
        assert message == {
            "role": "user",
            "content": "what is in this picture?",
            "images": [encoded],
        }


@pytest.mark.parametrize("fake_upstream", ["anthropic", "openai"], indirect=True)
async def test_an_image_by_url_goes_to_upstreams_that_fetch_it(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    url = "https://example.com/cat.png"

    outcome = await collect(
        provider_for, generate_request(messages=[image_message(chat_pb2.ImagePart(url=url))])
    )

    assert outcome.error is None, outcome.error
    sent = fake_upstream.last_request.body["messages"][0]["content"][1]
    if fake_upstream.kind == "openai":
        assert sent == {"type": "image_url", "image_url": {"url": url}}
    else:
        assert sent == {"type": "image", "source": {"type": "url", "url": url}}


@pytest.mark.parametrize("fake_upstream", ["ollama"], indirect=True)
async def test_ollama_refuses_an_image_by_url_naming_the_part(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    message = image_message(chat_pb2.ImagePart(url="https://example.com/cat.png"))

    failure = (await collect(provider_for, generate_request(messages=[message]))).failure

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "CAPABILITY_UNSUPPORTED"
    assert failure.metadata["capability"] == "vision"
    assert [v.field for v in failure.field_violations] == ["messages[0].parts[1].image.url"]
    assert fake_upstream.request_count == 0


async def test_each_backend_reports_reasoning_apart_and_every_usage_detail(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(
        Reply(
            reasoning=("First, ", "think."),
            cached_input_tokens=2,
            cache_write_input_tokens=1,
            reasoning_tokens=7,
        )
    )
    effort = chat_pb2.GenerationParameters(
        reasoning_effort=chat_pb2.REASONING_EFFORT_LOW, max_tokens=4096
    )

    outcome = await collect(
        provider_for,
        generate_request(prompt="one two three four five six", parameters=effort),
    )

    assert outcome.error is None, outcome.error
    assert outcome.reasoning == "First, think."
    assert outcome.order[0] == "reasoning"
    assert outcome.order[-1] == "text"
    assert outcome.summary is not None
    usage = outcome.summary.usage
    assert usage.reasoning_tokens == (0 if fake_upstream.kind == "ollama" else 7)
    if fake_upstream.kind == "ollama":
        # Ollama reports neither a prompt cache nor reasoning tokens.
        assert fake_upstream.last_request.body["think"] == "low"
        return
    assert (usage.input_tokens, usage.cached_input_tokens) == (6, 2)
    assert usage.cache_write_input_tokens == 1
    if fake_upstream.kind == "anthropic":
        assert fake_upstream.last_request.body["thinking"] == {
            "type": "enabled",
            "budget_tokens": 2048,
        }
        # The signature that closes a thinking block comes as a delta of its own.
        assert outcome.reasoning_deltas[-1].signature
    else:
        assert fake_upstream.last_request.body["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    ("fake_upstream", "parameters", "ignored", "absent"),
    [
        ("anthropic", chat_pb2.GenerationParameters(seed=7), ["parameters.seed"], "seed"),
        ("openai", chat_pb2.GenerationParameters(top_k=40), ["parameters.top_k"], "top_k"),
        ("ollama", chat_pb2.GenerationParameters(seed=7, top_k=40), [], ""),
    ],
    indirect=["fake_upstream"],
)
async def test_a_dropped_parameter_is_named_in_the_summary_and_never_sent(
    fake_upstream: FakeUpstream,
    provider_for: provider_service_pb2_grpc.ProviderServiceStub,
    parameters: chat_pb2.GenerationParameters,
    ignored: list[str],
    absent: str,
) -> None:
    outcome = await collect(provider_for, generate_request(parameters=parameters))

    assert outcome.summary is not None
    assert list(outcome.summary.ignored_parameters) == ignored
    if absent:
        assert absent not in json.dumps(fake_upstream.last_request.body)


@pytest.mark.parametrize("fake_upstream", ["anthropic"], indirect=True)
async def test_anthropic_names_the_stop_sequence_that_ended_the_answer(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    fake_upstream.enqueue(Reply(chunks=("one", " two"), stop_sequence="three"))

    outcome = await collect(
        provider_for, generate_request(parameters=chat_pb2.GenerationParameters(stop=["three"]))
    )

    assert outcome.summary is not None
    assert outcome.summary.stop_sequence == "three"
    assert outcome.summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert fake_upstream.last_request.body["stop_sequences"] == ["three"]


@pytest.mark.parametrize("fake_upstream", ["anthropic", "openai"], indirect=True)
async def test_the_end_user_goes_upstream_in_the_field_each_api_has_for_it(
    fake_upstream: FakeUpstream, provider_for: provider_service_pb2_grpc.ProviderServiceStub
) -> None:
    request = generate_request()
    request.attribution.user = "user-7f3a"
    request.attribution.tags["team"] = "search"

    await collect(provider_for, request)

    body = fake_upstream.last_request.body
    if fake_upstream.kind == "openai":
        assert body["safety_identifier"] == "user-7f3a"
    else:
        assert body["metadata"] == {"user_id": "user-7f3a"}
    # Tags are the gateway's own; no upstream sees them.
    assert "search" not in json.dumps(body)


def test_the_readme_feature_table_is_the_one_the_backends_declare() -> None:
    table = feature_table(
        {
            "openai": OPENAI_FEATURES,
            "anthropic": ANTHROPIC_FEATURES,
            "ollama": OLLAMA_FEATURES,
            "simulated": SIMULATED_FEATURES,
        }
    )

    assert table in PROVIDER_README.read_text()
    assert Support.DROPPED.value in table
    assert Support.REFUSED.value in table
