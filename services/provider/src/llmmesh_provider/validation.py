"""Checks Generate and Embed requests and turns them into backend types, naming every bad field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_service_pb2
from llmmesh.runtime.errors import FieldViolation, invalid_argument
from llmmesh.validation import (
    DEFAULT_MAX_IMAGE_BYTES,
    attribution_violations,
    conversation_violations,
    sampling_violations,
)
from llmmesh_provider.backend import (
    ImagePart,
    Message,
    MessageRole,
    Part,
    ReasoningEffort,
    ReasoningPart,
    ResponseFormat,
    Sampling,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Tools,
)

_ROLES: dict[int, MessageRole] = {
    chat_pb2.ROLE_SYSTEM: "system",
    chat_pb2.ROLE_USER: "user",
    chat_pb2.ROLE_ASSISTANT: "assistant",
    chat_pb2.ROLE_TOOL: "tool",
}
_TOOL_CHOICES: dict[int, ToolChoiceMode] = {
    chat_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    chat_pb2.TOOL_CHOICE_MODE_NONE: "none",
    chat_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
    chat_pb2.TOOL_CHOICE_MODE_NAMED: "named",
}
_EFFORTS: dict[int, ReasoningEffort] = {
    chat_pb2.REASONING_EFFORT_NONE: "none",
    chat_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    chat_pb2.REASONING_EFFORT_LOW: "low",
    chat_pb2.REASONING_EFFORT_MEDIUM: "medium",
    chat_pb2.REASONING_EFFORT_HIGH: "high",
}
# The most stop sequences every supported upstream accepts (OpenAI's limit).
MAX_STOP_SEQUENCES = 4
# The schema of a tool that declares no parameters.
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclasses.dataclass(frozen=True)
class EmbedLimits:
    """Bounds on one Embed request, from the service settings."""

    max_inputs: int
    max_input_chars: int
    max_dimensions: int = 8192


@dataclasses.dataclass(frozen=True)
class ValidGenerate:
    instance: str
    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    tools: Tools
    user: str


def validate_generate(
    request: provider_service_pb2.GenerateRequest,
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> ValidGenerate:
    """The request as backend types; raises INVALID_ARGUMENT listing every bad field."""
    violations: list[FieldViolation] = []
    if not request.instance:
        violations.append(FieldViolation("instance", "must name a provider instance"))
    if not request.model:
        violations.append(FieldViolation("model", "must name an upstream model"))
    violations.extend(conversation_violations(request.messages, max_image_bytes=max_image_bytes))
    violations.extend(sampling_violations(request.parameters))
    violations.extend(attribution_violations(request.attribution))
    if len(request.parameters.stop) > MAX_STOP_SEQUENCES:
        violations.append(
            FieldViolation("parameters.stop", f"at most {MAX_STOP_SEQUENCES} sequences")
        )
    if violations:
        raise invalid_argument(violations)
    return ValidGenerate(
        instance=request.instance,
        model=request.model,
        messages=tuple(_message(m) for m in request.messages),
        sampling=_sampling(request.parameters),
        tools=_tools(request.parameters),
        user=request.attribution.user,
    )


def _message(message: chat_pb2.ChatMessage) -> Message:
    parts: tuple[Part, ...] = (
        tuple(_part(part) for part in message.parts)
        if message.parts
        else ((TextPart(message.content),) if message.content else ())
    )
    return Message(
        role=_ROLES[message.role],
        parts=parts,
        name=message.name,
        tool_calls=tuple(
            ToolCall(call.id, call.name, call.arguments_json) for call in message.tool_calls
        ),
        tool_call_id=message.tool_call_id,
    )


def _part(part: chat_pb2.ContentPart) -> Part:
    kind = part.WhichOneof("part")
    if kind == "image":
        image = part.image
        return ImagePart(url=image.url, data=image.data, media_type=image.media_type)
    if kind == "reasoning":
        return ReasoningPart(part.reasoning.text, part.reasoning.signature)
    return TextPart(part.text)


def _sampling(parameters: chat_pb2.GenerationParameters) -> Sampling:
    return Sampling(
        temperature=parameters.temperature if parameters.HasField("temperature") else None,
        top_p=parameters.top_p if parameters.HasField("top_p") else None,
        top_k=parameters.top_k if parameters.HasField("top_k") else None,
        max_tokens=max(parameters.max_tokens, 0),
        stop=tuple(parameters.stop),
        seed=parameters.seed if parameters.HasField("seed") else None,
        response_format=_response_format(parameters.response_format),
        reasoning_effort=_EFFORTS.get(parameters.reasoning_effort),
    )


def _response_format(form: chat_pb2.ResponseFormat) -> ResponseFormat:
    if form.type == chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        return ResponseFormat(kind="json_object")
    if form.type != chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        return ResponseFormat()
    return ResponseFormat(
        kind="json_schema",
        json_schema=json.loads(form.json_schema),
        name=form.name or "answer",
        strict=form.strict if form.HasField("strict") else True,
    )


def _tools(parameters: chat_pb2.GenerationParameters) -> Tools:
    offered = tuple(
        Tool(
            name=tool.name,
            description=tool.description,
            parameters=(
                json.loads(tool.parameters_json_schema)
                if tool.parameters_json_schema
                else NO_PARAMETERS
            ),
            strict=tool.strict,
        )
        for tool in parameters.tools
    )
    mode = _TOOL_CHOICES.get(parameters.tool_choice.mode)
    return Tools(
        offered=offered,
        choice=ToolChoice(mode, parameters.tool_choice.name) if mode else None,
        parallel_calls=(
            parameters.parallel_tool_calls if parameters.HasField("parallel_tool_calls") else None
        ),
    )


def validate_embed(
    request: provider_service_pb2.EmbedRequest, limits: EmbedLimits
) -> tuple[list[str], int | None]:
    """The inputs to embed and the requested dimensions; raises INVALID_ARGUMENT listing
    every bad field."""
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
    dimensions = request.dimensions if request.HasField("dimensions") else None
    if dimensions is not None and not 0 < dimensions <= limits.max_dimensions:
        violations.append(
            FieldViolation("dimensions", f"must be within [1, {limits.max_dimensions}]")
        )
    if violations:
        raise invalid_argument(violations)
    return list(request.inputs), dimensions
