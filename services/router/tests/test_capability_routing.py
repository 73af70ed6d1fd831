"""What a request needs of a model, and chains that hold only models that have it."""

from __future__ import annotations

import grpc
import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.policy import Capability, Tenant
from llmmesh_router.capabilities import (
    missing_capabilities,
    no_capable_model,
    required_capabilities,
)
from llmmesh_router.complexity import Complexity
from llmmesh_router.policy import CatalogModel, RouterPolicy, RoutingPolicy
from llmmesh_router.routing import choose_chain, larger_window_models


def _model(name: str, window: int, *capabilities: Capability) -> CatalogModel:
    return CatalogModel(
        name=name, provider="p", upstream_model=name, context_window=window, quality=5,
        capabilities=list(capabilities),
    )  # fmt: skip


TEXT_ONLY = _model("text-only", 8_000, "chat")
VISION = _model("vision", 32_000, "chat", "vision", "tools", "json_schema")
UNDECLARED = _model("undeclared", 16_000)
POLICY = RouterPolicy(
    tenants=[Tenant(name="t")],
    models=[TEXT_ONLY, VISION, UNDECLARED],
    routing=RoutingPolicy(fallbacks={"text-only": ["vision"]}),
)
IMAGE = chat_pb2.ContentPart(image=chat_pb2.ImagePart(url="https://x.test/a.png"))
SCHEMA = chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)


@pytest.mark.parametrize(
    ("messages", "parameters", "needs"),
    [
        ([chat_pb2.ChatMessage(content="hi")], {}, ()),
        ([chat_pb2.ChatMessage(parts=[IMAGE])], {}, ("vision",)),
        ([chat_pb2.ChatMessage(content="hi")], {"tools": [chat_pb2.ToolDefinition(name="t")]},
         ("tools",)),
        ([chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="c")], {}, ("tools",)),
        ([chat_pb2.ChatMessage(content="hi")], {"response_format": SCHEMA}, ("json_schema",)),
        ([chat_pb2.ChatMessage(content="hi")], {"reasoning_effort": chat_pb2.REASONING_EFFORT_LOW},
         ("reasoning",)),
        ([chat_pb2.ChatMessage(content="hi")], {"reasoning_effort": chat_pb2.REASONING_EFFORT_NONE},
         ()),
    ],
)  # fmt: skip
def test_required_capabilities_come_from_the_request(
    messages: list[chat_pb2.ChatMessage], parameters: dict[str, object], needs: tuple[str, ...]
) -> None:
    assert required_capabilities(messages, chat_pb2.GenerationParameters(**parameters)) == needs  # type: ignore[arg-type]


def test_a_model_that_declares_nothing_is_held_to_nothing_and_json_schema_covers_json() -> None:
    assert missing_capabilities(UNDECLARED, ["vision", "tools"]) == []
    assert missing_capabilities(TEXT_ONLY, ["vision", "json"]) == ["vision", "json"]
    assert missing_capabilities(VISION, ["json"]) == []


def _chain(requested: str, needs: tuple[Capability, ...]) -> list[str]:
    decision = choose_chain(
        POLICY, requested_model=requested, priority="quality", complexity=Complexity.SIMPLE,
        needed_tokens=100, circuit_open=lambda _m: False, needs=needs,
    )  # fmt: skip
    return [m.name for m in decision.chain]


def test_a_vision_request_skips_a_text_only_model_in_auto_and_in_fallbacks() -> None:
    assert "text-only" in _chain("auto", ())
    assert "text-only" not in _chain("auto", ("vision",))
    assert _chain("text-only", ("vision",)) == ["vision"]
    assert _chain("text-only", ()) == ["text-only", "vision"]


def test_a_context_fallback_skips_models_without_the_capability() -> None:
    larger = larger_window_models(POLICY, TEXT_ONLY, {"text-only"}, ["json_schema"])
    assert [m.name for m in larger] == ["undeclared", "vision"]
    assert [m.name for m in larger_window_models(POLICY, TEXT_ONLY, set(), ["reasoning"])] == [
        "undeclared"
    ]


def test_no_capable_model_names_the_missing_capability_by_its_field() -> None:
    failure = no_capable_model(["vision", "tools"], [TEXT_ONLY])
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "CAPABILITY_UNSUPPORTED"
    assert failure.metadata["capability"] == "vision,tools"
    assert [v.field for v in failure.field_violations] == ["messages", "parameters.tools"]
