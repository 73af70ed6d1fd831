"""Checks a completion request before any peer is called, naming every bad field."""

from __future__ import annotations

from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime.errors import FieldViolation
from llmmesh.validation import conversation_violations, sampling_violations

CompletionRequest = router_service_pb2.CompleteRequest | router_service_pb2.StreamCompleteRequest

_KNOWN_PRIORITIES = set(router_pb2.Priority.values())


def prompt_bytes(request: CompletionRequest) -> int:
    return sum(len(m.content.encode()) for m in request.messages)


def find_violations(request: CompletionRequest, *, max_prompt_bytes: int) -> list[FieldViolation]:
    """Every problem with the request; empty when it may proceed."""
    violations: list[FieldViolation] = []
    if not request.model:
        violations.append(FieldViolation("model", 'required: a catalog model name or "auto"'))
    violations.extend(conversation_violations(request.messages))
    size = prompt_bytes(request)
    if size > max_prompt_bytes:
        violations.append(
            FieldViolation("messages", f"prompt is {size} bytes; the limit is {max_prompt_bytes}")
        )
    violations.extend(sampling_violations(request.parameters))
    if request.priority not in _KNOWN_PRIORITIES:
        violations.append(FieldViolation("priority", "unknown priority"))
    if request.cache.HasField("similarity_threshold") and not (
        0.0 <= request.cache.similarity_threshold <= 1.0
    ):
        violations.append(FieldViolation("cache.similarity_threshold", "must be within [0, 1]"))
    return violations
