"""What a request needs of a model (tools, json, json_schema, vision, reasoning), and
whether a catalog model declares it.

A model that declares no capabilities at all is taken to accept anything, and its upstream
decides (a refusal there, CAPABILITY_UNSUPPORTED, moves the chain on); a model that
declares some is held to its list, so routing never sends it what it lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from llmmesh.common.v1 import chat_pb2
from llmmesh.policy import Capability
from llmmesh.runtime.errors import FieldViolation, RpcFailure
from llmmesh_router.policy import CatalogModel

# Where in a request each need comes from, for the BadRequest that names it.
NEED_FIELDS: dict[Capability, str] = {
    "tools": "parameters.tools",
    "json": "parameters.response_format",
    "json_schema": "parameters.response_format",
    "vision": "messages",
    "reasoning": "parameters.reasoning_effort",
    "embeddings": "model",
}
# A model that takes a JSON schema can also be asked for any JSON object.
_SATISFIED_BY: dict[Capability, frozenset[Capability]] = {
    "json": frozenset({"json", "json_schema"}),
}
_EFFORTS = frozenset(
    {
        chat_pb2.REASONING_EFFORT_MINIMAL,
        chat_pb2.REASONING_EFFORT_LOW,
        chat_pb2.REASONING_EFFORT_MEDIUM,
        chat_pb2.REASONING_EFFORT_HIGH,
    }
)


def required_capabilities(
    messages: Sequence[chat_pb2.ChatMessage], parameters: chat_pb2.GenerationParameters
) -> tuple[Capability, ...]:
    needs: list[Capability] = []
    if parameters.tools or any(m.tool_calls or m.tool_call_id for m in messages):
        needs.append("tools")
    kind = parameters.response_format.type
    if kind == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        needs.append("json_schema")
    elif kind == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        needs.append("json")
    if any(part.HasField("image") for m in messages for part in m.parts):
        needs.append("vision")
    if parameters.reasoning_effort in _EFFORTS:
        needs.append("reasoning")
    return tuple(needs)


def missing_capabilities(model: CatalogModel, needs: Sequence[Capability]) -> list[Capability]:
    if not model.capabilities:
        return []
    declared = set(model.capabilities)
    return [need for need in needs if not (_SATISFIED_BY.get(need, frozenset({need})) & declared)]


def no_capable_model(needs: Sequence[Capability], candidates: Sequence[CatalogModel]) -> RpcFailure:
    """INVALID_ARGUMENT naming each capability no candidate model has, by the field that
    asked for it."""
    lacking = [
        need for need in needs if all(missing_capabilities(m, [need]) for m in candidates)
    ] or list(needs)  # each need is met somewhere, but never all by one model
    names = ", ".join(m.name for m in candidates)
    return RpcFailure(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"no model for this request supports {', '.join(lacking)}",
        reason="CAPABILITY_UNSUPPORTED",
        metadata={"capability": ",".join(lacking)},
        field_violations=[
            FieldViolation(
                NEED_FIELDS[need], f"needs the {need} capability, which no model here has: {names}"
            )
            for need in lacking
        ],
    )
