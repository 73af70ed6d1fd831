"""Checks a completion request before any peer is called, naming every bad field."""

from __future__ import annotations

from llmmesh.common.v1 import chat_pb2
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime.errors import FieldViolation

CompletionRequest = router_service_pb2.CompleteRequest | router_service_pb2.StreamCompleteRequest

_KNOWN_ROLES = {
    chat_pb2.ROLE_SYSTEM,
    chat_pb2.ROLE_USER,
    chat_pb2.ROLE_ASSISTANT,
    chat_pb2.ROLE_TOOL,
}
_KNOWN_PRIORITIES = set(router_pb2.Priority.values())


def prompt_bytes(request: CompletionRequest) -> int:
    return sum(len(m.content.encode()) for m in request.messages)


def find_violations(request: CompletionRequest, *, max_prompt_bytes: int) -> list[FieldViolation]:
    """Every problem with the request; empty when it may proceed."""
    violations: list[FieldViolation] = []
    if not request.model:
        violations.append(FieldViolation("model", 'required: a catalog model name or "auto"'))
    if not request.messages:
        violations.append(FieldViolation("messages", "at least one message is required"))
    for index, message in enumerate(request.messages):
        if message.role not in _KNOWN_ROLES:
            violations.append(
                FieldViolation(
                    f"messages[{index}].role",
                    "must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL",
                )
            )
        if not message.content.strip():
            violations.append(FieldViolation(f"messages[{index}].content", "must not be empty"))
    if request.messages and request.messages[-1].role == chat_pb2.ROLE_SYSTEM:
        violations.append(
            FieldViolation("messages", "the conversation must not end with a system message")
        )
    size = prompt_bytes(request)
    if size > max_prompt_bytes:
        violations.append(
            FieldViolation("messages", f"prompt is {size} bytes; the limit is {max_prompt_bytes}")
        )
    violations.extend(_parameter_violations(request.parameters))
    if request.priority not in _KNOWN_PRIORITIES:
        violations.append(FieldViolation("priority", "unknown priority"))
    if request.cache.HasField("similarity_threshold") and not (
        0.0 <= request.cache.similarity_threshold <= 1.0
    ):
        violations.append(FieldViolation("cache.similarity_threshold", "must be within [0, 1]"))
    return violations


def _parameter_violations(parameters: chat_pb2.GenerationParameters) -> list[FieldViolation]:
    violations = []
    if parameters.max_tokens < 0:
        violations.append(FieldViolation("parameters.max_tokens", "must not be negative"))
    if parameters.HasField("temperature") and not 0.0 <= parameters.temperature <= 2.0:
        violations.append(FieldViolation("parameters.temperature", "must be within [0, 2]"))
    if parameters.HasField("top_p") and not 0.0 < parameters.top_p <= 1.0:
        violations.append(FieldViolation("parameters.top_p", "must be within (0, 1]"))
    return violations
