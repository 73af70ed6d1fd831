"""Tool calls, JSON schemas, images, embeddings and client request ids through all four
services as processes: the simulated backend's scripted tool call, and the real openai,
anthropic and ollama clients against their fakes."""

from __future__ import annotations

import asyncio
import json
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
import yaml
from typer.testing import CliRunner

from llmmesh import cli
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import (
    FakeAnthropic,
    FakeOllama,
    FakeOpenAI,
    FakeUpstream,
    Reply,
    ToolCallScript,
    UpstreamProblem,
    http_error,
    tool_calls,
)
from llmmesh.testing.mesh import AUTH_METADATA, DEV_API_KEY, local_mesh

WEATHER = chat_pb2.ToolDefinition(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema=json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with serving_in_background(FakeOpenAI()) as running:
        yield running


@pytest.fixture(scope="module")
def others() -> Iterator[dict[str, FakeUpstream]]:
    """Fakes of the other two APIs: "ant" (Anthropic) and "oll" (Ollama)."""
    with (
        serving_in_background(FakeAnthropic()) as anthropic,
        serving_in_background(FakeOllama()) as ollama,
    ):
        yield {"ant": anthropic, "oll": ollama}


@pytest.fixture(scope="module")
def mesh(
    fake: FakeOpenAI, others: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    directory = tmp_path_factory.mktemp("tools")
    model = {"context_window": 32_000, "input_price_per_1k": 0.001,
             "output_price_per_1k": 0.002, "quality": 5}  # fmt: skip
    policy = {
        "tenants": [
            {"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]},
            {"name": "metered", "tier": "metered", "api_keys_sha256": [hash_api_key("m-key")]},
            {"name": "once", "tier": "once", "api_keys_sha256": [hash_api_key("once-key")]},
        ],
        "limits": {"tiers": {"default": [], "metered": [
            {"name": "tenant-tokens", "kind": "tokens", "scope": "tenant", "limit": 200,
             "window_s": 600}],
            "once": [{"name": "one-request", "kind": "requests", "scope": "tenant", "limit": 1,
                      "window_s": 600}]}},
        "models": [
            {"name": "sim", "provider": "sim", "upstream_model": "sim-1", **model},
            {"name": "oai", "provider": "openai", "upstream_model": "gpt-test", **model},
            {"name": "ant", "provider": "anthropic", "upstream_model": "claude-test", **model},
            {"name": "oll", "provider": "ollama", "upstream_model": "llama-test", **model},
            # Capability routing: a text-only model that falls back to a vision one, and a
            # model that says it sees images but whose upstream refuses them.
            {"name": "text-only", "provider": "openai", "upstream_model": "gpt-text",
             "capabilities": ["chat"], **model},
            {"name": "sim-vision", "provider": "sim", "upstream_model": "sim-v",
             "capabilities": ["chat", "vision", "tools", "json_schema"], **model},
            {"name": "claims-vision", "provider": "openai", "upstream_model": "gpt-old",
             "capabilities": ["chat", "vision"], **model},
            {"name": "sim-embed", "provider": "sim", "upstream_model": "simulated-embed",
             "capabilities": ["embeddings"], **model},
            {"name": "oai-embed", "provider": "openai", "upstream_model": "text-embedding-3-small",
             "capabilities": ["embeddings"], **model},
        ],
        "routing": {"fallbacks": {"text-only": ["sim-vision"], "claims-vision": ["sim-vision"]}},
        "providers": {
            "instances": [
                {"name": "sim", "backend": "simulated"},
                {"name": "openai", "backend": "openai", "base_url": fake.base_url,
                 "api_key_env": "FAKE_UPSTREAM_KEY",
                 "embedding_models": ["text-embedding-3-small"]},
                {"name": "anthropic", "backend": "anthropic", "base_url": others["ant"].base_url,
                 "api_key_env": "FAKE_UPSTREAM_KEY"},
                {"name": "ollama", "backend": "ollama", "base_url": others["oll"].base_url},
            ],
        },
    }  # fmt: skip
    policy_path = directory / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    env = {"LLMMESH_POLICY_FILE": str(policy_path), "FAKE_UPSTREAM_KEY": "sk-test-secret"}
    with local_mesh(pathlib.Path(directory / "services.log"), env) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeOpenAI, others: dict[str, FakeUpstream]) -> Iterator[None]:
    for each in (fake, *others.values()):
        each.reset()
    yield
    assert not fake.pending_replies, "scripted replies were never requested"
    assert not any(each.pending_replies for each in others.values())


def _upstream(model: str, fake: FakeOpenAI, others: dict[str, FakeUpstream]) -> FakeUpstream | None:
    """The fake behind a model, None for the simulated backend."""
    return fake if model == "oai" else others.get(model)


MODELS = ["sim", "oai", "ant", "oll"]


@pytest.fixture
async def router(mesh: Mesh) -> AsyncIterator[router_service_pb2_grpc.RouterServiceStub]:
    async with grpc.aio.insecure_channel(mesh.router_address) as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def _user(text: str | None = None, **fields: object) -> chat_pb2.ChatMessage:
    content = text if text is not None else f"question {uuid.uuid4().hex}"
    return chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=content, **fields)  # type: ignore[arg-type]


def _request(
    model: str, messages: list[chat_pb2.ChatMessage], **parameters: object
) -> router_service_pb2.StreamCompleteRequest:
    return router_service_pb2.StreamCompleteRequest(
        model=model,
        messages=messages,
        parameters=chat_pb2.GenerationParameters(**parameters),  # type: ignore[arg-type]
    )


async def _events(
    router: router_service_pb2_grpc.RouterServiceStub,
    request: router_service_pb2.StreamCompleteRequest,
) -> list[router_service_pb2.StreamCompleteResponse]:
    return [e async for e in router.StreamComplete(request, metadata=AUTH_METADATA, timeout=15)]


def _calls(events: list[router_service_pb2.StreamCompleteResponse]) -> list[chat_pb2.ToolCall]:
    """The tool calls of a stream, put together by index as a client would."""
    calls: dict[int, chat_pb2.ToolCall] = {}
    for event in events:
        if event.HasField("tool_call"):
            piece = event.tool_call
            call = calls.setdefault(piece.index, chat_pb2.ToolCall())
            call.id = call.id or piece.id
            call.name = call.name or piece.name
            call.arguments_json += piece.arguments_fragment
    return [calls[index] for index in sorted(calls)]


@pytest.mark.parametrize("model", MODELS)
async def test_a_streamed_tool_call_arrives_whole_and_complete_returns_the_same(
    router: router_service_pb2_grpc.RouterServiceStub,
    fake: FakeOpenAI,
    others: dict[str, FakeUpstream],
    model: str,
) -> None:
    upstream = _upstream(model, fake, others)
    script = tool_calls(ToolCallScript("get_weather", {"city": "Paris"}))
    if upstream is not None:
        upstream.enqueue(script)
    request = _request(model, [_user()], tools=[WEATHER])
    request.cache.mode = caching_pb2.CACHE_MODE_BYPASS
    events = await _events(router, request)
    [call] = _calls(events)
    assert call.name == "get_weather"
    assert json.loads(call.arguments_json)["city"]
    assert call.id or model == "oll"  # Ollama gives its calls no ids
    summary = events[-1].summary
    assert summary.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert summary.usage.output_tokens > 0
    if model in ("oai", "ant"):
        # The API's fragments reach the caller as fragments, not only the assembled call.
        assert sum(e.HasField("tool_call") for e in events) > 1
    if upstream is not None:
        upstream.enqueue(script)
    whole = await router.Complete(
        router_service_pb2.CompleteRequest(
            model=model, messages=request.messages, parameters=request.parameters,
            cache=request.cache,
        ),
        metadata=AUTH_METADATA,
        timeout=15,
    )  # fmt: skip
    assert [(c.name, json.loads(c.arguments_json)) for c in whole.tool_calls] == [
        (call.name, json.loads(call.arguments_json))
    ]
    assert whole.summary.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize("model", MODELS)
async def test_a_full_tool_round_trip_ends_in_an_answer(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI, model: str
) -> None:
    call = chat_pb2.ToolCall(id="call_7", name="get_weather", arguments_json='{"city": "Oslo"}')
    messages = [
        _user(),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="call_7", content="-3 C"),
    ]
    events = await _events(router, _request(model, messages, tools=[WEATHER]))
    assert not _calls(events)
    assert "".join(e.delta.text for e in events if e.HasField("delta"))
    assert events[-1].summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    if model == "oai":
        sent = fake.requests[-1].body
        assert sent["messages"][1]["tool_calls"][0]["id"] == "call_7"
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_7", "content": "-3 C"}


async def test_a_tool_message_answering_no_call_is_refused_by_the_router(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    messages = [_user(), chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="nope")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _events(router, _request("oai", messages, tools=[WEATHER]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any("tool_call_id" in v.field for v in error_details(caught.value).field_violations)
    assert fake.request_count == 0


@pytest.mark.parametrize("model", MODELS)
async def test_a_json_schema_answer_matches_its_schema(
    router: router_service_pb2_grpc.RouterServiceStub, model: str
) -> None:
    response_format = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="city",
        json_schema=json.dumps(CITY_SCHEMA), strict=True,
    )  # fmt: skip
    events = await _events(router, _request(model, [_user()], response_format=response_format))
    answer = json.loads("".join(e.delta.text for e in events if e.HasField("delta")))
    assert set(answer) == {"city", "population"}
    assert isinstance(answer["population"], int)


@pytest.mark.parametrize("model", MODELS)
async def test_an_image_part_reaches_the_upstream(
    router: router_service_pb2_grpc.RouterServiceStub,
    fake: FakeOpenAI,
    others: dict[str, FakeUpstream],
    model: str,
) -> None:
    image = chat_pb2.ContentPart(image=chat_pb2.ImagePart(data=PNG, media_type="image/png"))
    question = chat_pb2.ContentPart(text="What is in this picture?")
    events = await _events(router, _request(model, [_user("", parts=[question, image])]))
    assert events[-1].summary.finish_reason == chat_pb2.FINISH_REASON_STOP
    if model == "oai":
        parts = fake.requests[-1].body["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["text", "image_url"]
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    elif model == "ant":
        blocks = others["ant"].requests[-1].body["messages"][0]["content"]
        assert [b["type"] for b in blocks] == ["text", "image"]
    elif model == "oll":
        assert others["oll"].requests[-1].body["messages"][0]["images"]


async def test_a_tool_call_stream_cut_halfway_says_how_many_fragments_arrived(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    script = ToolCallScript("get_weather", {"city": "Reykjavik", "unit": "celsius"}, id="c1")
    # Paced so that each piece reaches the caller before the cut, inside the arguments.
    fake.enqueue(tool_calls(script, token_delay_s=0.02, cut_after_chunks=3))
    request = _request("oai", [_user()], tools=[WEATHER])
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in router.StreamComplete(request, metadata=AUTH_METADATA, timeout=15):
            received.append(event)
    details = error_details(caught.value)
    assert details.reason == "STREAM_INTERRUPTED"
    assert details.metadata["upstream_reason"] == "UPSTREAM_STREAM_CUT"
    fragments = sum(e.HasField("tool_call") for e in received)
    assert fragments >= 1
    assert details.metadata["delivered_tool_call_fragments"] == str(fragments)
    # Past the first piece nothing is retried, so the answer is never spliced.
    assert fake.request_count == 1


async def test_a_cached_tool_call_answer_replays_as_the_same_calls(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    fake.enqueue(
        tool_calls(
            ToolCallScript("get_weather", {"city": "Lima"}, id="call_l"),
            ToolCallScript("get_weather", {"city": "Quito"}, id="call_q"),
        )
    )
    request = _request("oai", [_user()], tools=[WEATHER], temperature=0.0)
    first = await _events(router, request)
    assert first[-1].summary.cache_status == caching_pb2.CACHE_STATUS_MISS
    for _ in range(50):  # the store runs in the background
        again = await _events(router, request)
        if again[-1].summary.cache_status == caching_pb2.CACHE_STATUS_EXACT:
            break
    assert again[-1].summary.cache_status == caching_pb2.CACHE_STATUS_EXACT
    assert _calls(again) == _calls(first)
    assert again[-1].summary.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert fake.request_count == 1
    # Another tool choice is another question.
    fake.enqueue(tool_calls(ToolCallScript("get_weather", {"city": "Lima"}, id="call_m")))
    request.parameters.tool_choice.CopyFrom(
        chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED)
    )
    third = await _events(router, request)
    assert third[-1].summary.cache_status == caching_pb2.CACHE_STATUS_MISS


async def test_an_oversized_image_is_refused_within_the_size_budget(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    image = chat_pb2.ContentPart(
        image=chat_pb2.ImagePart(data=b"\x00" * (3 * 1024 * 1024), media_type="image/png")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _events(router, _request("sim", [_user("", parts=[image])]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = error_details(caught.value).field_violations
    assert violation.field == "messages"


async def test_a_vision_request_skips_a_text_only_model_for_its_capable_fallback(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    image = chat_pb2.ContentPart(image=chat_pb2.ImagePart(data=PNG, media_type="image/png"))
    events = await _events(router, _request("text-only", [_user("", parts=[image])]))
    assert events[-1].summary.model == "sim-vision"
    assert events[-1].summary.attempts == 1
    assert fake.request_count == 0


async def test_no_capable_model_is_a_bad_request_naming_the_capability(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    # Neither "text-only" nor its fallback declares reasoning.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _events(
            router,
            _request("text-only", [_user()], reasoning_effort=chat_pb2.REASONING_EFFORT_HIGH),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(caught.value)
    assert details.reason == "CAPABILITY_UNSUPPORTED"
    assert [v.field for v in details.field_violations] == ["parameters.reasoning_effort"]
    assert fake.request_count == 0


async def test_an_upstream_capability_refusal_moves_on_to_the_next_capable_model(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    fake.enqueue(http_error(UpstreamProblem.IMAGES_UNSUPPORTED))
    image = chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://x.test/cat.png"))
    events = await _events(router, _request("claims-vision", [_user("", parts=[image])]))
    summary = events[-1].summary
    assert (summary.model, summary.attempts) == ("sim-vision", 2)
    assert fake.request_count == 1


@pytest.mark.parametrize("model", ["sim-embed", "oai-embed"])
async def test_embed_through_the_router_is_charged_costed_and_one_vector_per_text(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI, model: str
) -> None:
    texts = ["first document", "second document", "third"]
    response = await router.Embed(
        router_service_pb2.EmbedRequest(model=model, inputs=texts),
        metadata=AUTH_METADATA,
        timeout=15,
    )
    assert len(response.embeddings) == len(texts)
    assert all(len(e.values) == response.dimensions > 0 for e in response.embeddings)
    summary = response.summary
    assert (summary.model, summary.attempts) == (model, 1)
    assert summary.usage.input_tokens > 0
    assert summary.cost_usd == pytest.approx(summary.usage.input_tokens * 0.001 / 1000)
    assert summary.request_id
    if model == "oai-embed":
        assert fake.requests[-1].body["input"] == texts


async def test_embed_refuses_a_model_without_embeddings_and_charges_tokens_against_limits(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.Embed(
            router_service_pb2.EmbedRequest(model="text-only", inputs=["x"]),
            metadata=AUTH_METADATA, timeout=15,
        )  # fmt: skip
    assert error_details(caught.value).reason == "CAPABILITY_UNSUPPORTED"
    metered = (("authorization", "Bearer m-key"),)
    await router.Embed(
        router_service_pb2.EmbedRequest(model="sim-embed", inputs=["a short text"]),
        metadata=metered, timeout=15,
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.Embed(
            router_service_pb2.EmbedRequest(model="sim-embed", inputs=["word " * 400]),
            metadata=metered, timeout=15,
        )  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(caught.value).reason == "RATE_LIMITED"


ONE_REQUEST = (("authorization", "Bearer once-key"),)


async def test_a_retry_with_the_same_client_request_id_replays_and_is_charged_once(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    fake.enqueue(tool_calls(ToolCallScript("get_weather", {"city": "Bern"}, id="call_b")))
    request = _request("oai", [_user()], tools=[WEATHER])
    request.cache.mode = caching_pb2.CACHE_MODE_BYPASS
    request.client_request_id = f"retry-{uuid.uuid4().hex}"

    async def call() -> list[router_service_pb2.StreamCompleteResponse]:
        return [e async for e in router.StreamComplete(request, metadata=ONE_REQUEST, timeout=15)]

    first = await call()
    # The tenant may make one request in ten minutes: a retry that were charged again would
    # be refused (as a new id is, last); replays are charged nothing.
    for _ in range(4):
        again = await call()
        assert again == first  # the same pieces and the same summary, request id included
    assert fake.request_count == 1
    assert _calls(first)[0].name == "get_weather"
    charged_again = _request("oai", list(request.messages), tools=[WEATHER])
    charged_again.client_request_id = f"other-{uuid.uuid4().hex}"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [e async for e in router.StreamComplete(charged_again, metadata=ONE_REQUEST, timeout=15)]
    assert error_details(caught.value).reason == "RATE_LIMITED"

    # The same id for another request is refused, naming the field.
    request.messages[0].content = "something else"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    details = error_details(caught.value)
    assert details.reason == "CLIENT_REQUEST_ID_REUSED"
    assert [v.field for v in details.field_violations] == ["client_request_id"]


async def test_concurrent_calls_with_one_client_request_id_share_one_upstream_call(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply(chunks=("slow", " answer", " here"), token_delay_s=0.3))
    request = _request("oai", [_user()])
    request.cache.mode = caching_pb2.CACHE_MODE_BYPASS
    request.client_request_id = f"join-{uuid.uuid4().hex}"
    both = await asyncio.gather(_events(router, request), _events(router, request))
    texts = ["".join(e.delta.text for e in events if e.HasField("delta")) for events in both]
    assert texts == ["slow answer here"] * 2
    assert fake.request_count == 1


async def test_an_embed_retry_with_the_same_client_request_id_is_embedded_once(
    router: router_service_pb2_grpc.RouterServiceStub, fake: FakeOpenAI
) -> None:
    request = router_service_pb2.EmbedRequest(
        model="oai-embed", inputs=["one text"], client_request_id=f"e-{uuid.uuid4().hex}"
    )
    first = await router.Embed(request, metadata=AUTH_METADATA, timeout=15)
    again = await router.Embed(request, metadata=AUTH_METADATA, timeout=15)
    assert again == first
    assert fake.request_count == 1


def test_llmmesh_chat_takes_tools_from_a_file_and_prints_the_call(
    mesh: Mesh, tmp_path: pathlib.Path
) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [{"name": "get_weather", "description": "The weather in a city.",
              "parameters": json.loads(WEATHER.parameters_json_schema)}]
        )
    )  # fmt: skip
    result = CliRunner().invoke(
        cli.app,
        ["chat", f"weather {uuid.uuid4().hex}", "--model", "sim", "--tools", str(tools),
         "--router", mesh.router_address],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "-> tool call get_weather({" in result.stdout

    tools.write_text('{"name": "not a list"}')
    refused = CliRunner().invoke(cli.app, ["chat", "hi", "--tools", str(tools)])
    assert refused.exit_code == 2


@pytest.mark.parametrize("model", ["oai", "ant", "oll"])
async def test_parallel_tool_calls_and_usage_details_reach_the_caller(
    router: router_service_pb2_grpc.RouterServiceStub,
    fake: FakeOpenAI,
    others: dict[str, FakeUpstream],
    model: str,
) -> None:
    upstream = _upstream(model, fake, others)
    assert upstream is not None
    upstream.enqueue(
        tool_calls(
            ToolCallScript("get_weather", {"city": "Lima"}),
            ToolCallScript("get_weather", {"city": "Quito"}),
            cached_input_tokens=4,
            cache_write_input_tokens=2,
        )
    )
    request = _request(model, [_user()], tools=[WEATHER])
    request.cache.mode = caching_pb2.CACHE_MODE_BYPASS
    events = await _events(router, request)
    assert [json.loads(c.arguments_json)["city"] for c in _calls(events)] == ["Lima", "Quito"]
    usage = events[-1].summary.usage
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    if model == "oai":
        assert usage.cached_input_tokens == 4
    if model == "ant":
        assert (usage.cached_input_tokens, usage.cache_write_input_tokens) == (4, 2)
