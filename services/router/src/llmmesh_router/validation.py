"""Checks a completion request before any peer is called, naming every bad field.

One size budget covers all the text of a request (content, names, stop sequences, schemas,
tool definitions, the model name, and any text field added later), so no field is a way
around the limit. Lists are bounded first, before any check visits their elements.
"""

from __future__ import annotations

from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime.errors import FieldViolation
from llmmesh.validation import (
    conversation_violations,
    list_length_violations,
    sampling_violations,
    text_bytes_by_field,
)

CompletionRequest = router_service_pb2.CompleteRequest | router_service_pb2.StreamCompleteRequest

_KNOWN_PRIORITIES = set(router_pb2.Priority.values())


# The default bound on every list of a request (messages, stop sequences, tools).
MAX_LIST_ITEMS = 2048


def find_violations(
    request: CompletionRequest, *, max_prompt_bytes: int, max_list_items: int = MAX_LIST_ITEMS
) -> list[FieldViolation]:
    """Every problem with the request; empty when it may proceed. A list that is too long is
    the only problem reported: nothing else is checked element by element."""
    too_long = list_length_violations(request, max_list_items)
    if too_long:
        return too_long
    violations: list[FieldViolation] = []
    if not request.model:
        violations.append(FieldViolation("model", 'required: a catalog model name or "auto"'))
    violations.extend(conversation_violations(request.messages))
    violations.extend(_size_violations(request, max_prompt_bytes))
    violations.extend(sampling_violations(request.parameters))
    if request.priority not in _KNOWN_PRIORITIES:
        violations.append(FieldViolation("priority", "unknown priority"))
    if request.cache.HasField("similarity_threshold") and not (
        0.0 <= request.cache.similarity_threshold <= 1.0
    ):
        violations.append(FieldViolation("cache.similarity_threshold", "must be within [0, 1]"))
    return violations


def _size_violations(request: CompletionRequest, max_prompt_bytes: int) -> list[FieldViolation]:
    sizes = text_bytes_by_field(request)
    total = sum(sizes.values())
    if total <= max_prompt_bytes:
        return []
    largest = max(sizes, key=sizes.__getitem__)
    return [
        FieldViolation(
            largest,
            f"the request's text is {total} bytes ({sizes[largest]} in {largest}); "
            f"the limit is {max_prompt_bytes}",
        )
    ]
