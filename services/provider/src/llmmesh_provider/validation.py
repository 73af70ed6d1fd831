"""Checks Generate and Embed requests and turns them into backend types, naming every bad field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2
from llmmesh.runtime.errors import FieldViolation, invalid_argument
from llmmesh.validation import conversation_violations, sampling_violations
from llmmesh_provider.backend import Message, MessageRole, ResponseFormat, Sampling

_ROLES: dict[int, MessageRole] = {
    chat_pb2.ROLE_SYSTEM: "system",
    chat_pb2.ROLE_USER: "user",
    chat_pb2.ROLE_ASSISTANT: "assistant",
}
# The most stop sequences every supported upstream accepts (OpenAI's limit).
MAX_STOP_SEQUENCES = 4


@dataclasses.dataclass(frozen=True)
class EmbedLimits:
    """Bounds on one Embed request, from the service settings."""

    max_inputs: int
    max_input_chars: int


@dataclasses.dataclass(frozen=True)
class ValidGenerate:
    instance: str
    model: str
    messages: tuple[Message, ...]
    sampling: Sampling


def validate_generate(request: provider_service_pb2.GenerateRequest) -> ValidGenerate:
    """The request as backend types; raises INVALID_ARGUMENT listing every bad field."""
    violations: list[FieldViolation] = []
    if not request.instance:
        violations.append(FieldViolation("instance", "must name a provider instance"))
    if not request.model:
        violations.append(FieldViolation("model", "must name an upstream model"))
    messages = _messages(request, violations)
    sampling = _sampling(request.parameters, violations)
    if violations:
        raise invalid_argument(violations)
    return ValidGenerate(request.instance, request.model, messages, sampling)


def _messages(
    request: provider_service_pb2.GenerateRequest, violations: list[FieldViolation]
) -> tuple[Message, ...]:
    violations.extend(conversation_violations(request.messages))
    for index, message in enumerate(request.messages):
        if message.role == chat_pb2.ROLE_TOOL:
            violations.append(
                FieldViolation(
                    f"messages[{index}].role", "ROLE_TOOL needs tool calls, not supported yet"
                )
            )
    return tuple(
        Message(role=_ROLES[m.role], content=m.content, name=m.name)
        for m in request.messages
        if m.role in _ROLES
    )


def _sampling(
    parameters: chat_pb2.GenerationParameters, violations: list[FieldViolation]
) -> Sampling:
    field = "parameters"
    temperature = parameters.temperature if parameters.HasField("temperature") else None
    top_p = parameters.top_p if parameters.HasField("top_p") else None
    violations.extend(sampling_violations(parameters, field))
    if len(parameters.stop) > MAX_STOP_SEQUENCES:
        violations.append(
            FieldViolation(f"{field}.stop", f"at most {MAX_STOP_SEQUENCES} sequences")
        )
    if parameters.tools:
        violations.append(
            FieldViolation(f"{field}.tools", "tool calls are not supported by the provider yet")
        )
    return Sampling(
        temperature=temperature,
        top_p=top_p,
        max_tokens=max(parameters.max_tokens, 0),
        stop=tuple(parameters.stop),
        seed=parameters.seed if parameters.HasField("seed") else None,
        response_format=_response_format(parameters.response_format, violations),
    )


def _response_format(
    form: chat_pb2.ResponseFormat, violations: list[FieldViolation]
) -> ResponseFormat:
    field = "parameters.response_format"
    if form.type == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return ResponseFormat(kind="json_object")
    if form.type != chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        if form.json_schema:
            violations.append(
                FieldViolation(f"{field}.json_schema", "only with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
            )
        return ResponseFormat()
    try:
        schema: Any = json.loads(form.json_schema)
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        violations.append(FieldViolation(f"{field}.json_schema", "must be a JSON object"))
        return ResponseFormat()
    return ResponseFormat(kind="json_schema", json_schema=schema)


def validate_embed(request: provider_service_pb2.EmbedRequest, limits: EmbedLimits) -> list[str]:
    """The inputs to embed; raises INVALID_ARGUMENT listing every bad field."""
    violations: list[FieldViolation] = []
    if not request.inputs:
        violations.append(FieldViolation("inputs", "must hold at least one text"))
    if len(request.inputs) > limits.max_inputs:
        violations.append(
            FieldViolation(
                "inputs", f"holds {len(request.inputs)} texts; at most {limits.max_inputs}"
            )
        )
    for index, text in enumerate(request.inputs):
        if not text.strip():
            violations.append(FieldViolation(f"inputs[{index}]", "must not be empty"))
        elif len(text) > limits.max_input_chars:
            violations.append(
                FieldViolation(
                    f"inputs[{index}]", f"longer than {limits.max_input_chars} characters"
                )
            )
    if violations:
        raise invalid_argument(violations)
    return list(request.inputs)
