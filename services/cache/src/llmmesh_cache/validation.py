"""Checks of incoming requests; every problem becomes a BadRequest field violation."""

from __future__ import annotations

import math

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.runtime.errors import FieldViolation, invalid_argument
from llmmesh_cache.policy import CachePolicy


def _scope_violations(
    scope: cache_pb2.CacheScope, present: bool, policy: CachePolicy
) -> list[FieldViolation]:
    if not present:
        return [FieldViolation("scope", "required: tenant, model and messages")]
    violations = []
    if not scope.tenant:
        violations.append(FieldViolation("scope.tenant", "required"))
    elif policy.for_tenant(scope.tenant) is None:
        violations.append(FieldViolation("scope.tenant", "not a tenant of the policy"))
    if not scope.model:
        violations.append(FieldViolation("scope.model", "required"))
    if not scope.messages:
        violations.append(FieldViolation("scope.messages", "at least one message is required"))
    for position, message in enumerate(scope.messages):
        if message.role not in chat_pb2.Role.values() or message.role == chat_pb2.ROLE_UNSPECIFIED:
            violations.append(FieldViolation(f"scope.messages[{position}].role", "must be set"))
    if scope.messages and not scope.messages[-1].content.strip():
        last = len(scope.messages) - 1
        violations.append(
            FieldViolation(f"scope.messages[{last}].content", "the prompt must not be empty")
        )
    parameters = scope.parameters
    if parameters.HasField("temperature") and not 0.0 <= parameters.temperature <= 2.0:
        violations.append(FieldViolation("scope.parameters.temperature", "must be in [0, 2]"))
    return violations


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise invalid_argument(violations)


def check_lookup(request: cache_service_pb2.LookupRequest, policy: CachePolicy) -> None:
    """Raises INVALID_ARGUMENT naming every bad field of a Lookup."""
    violations = _scope_violations(request.scope, request.HasField("scope"), policy)
    if request.mode not in caching_pb2.CacheMode.values():
        violations.append(FieldViolation("mode", "not a known cache mode"))
    if request.HasField("similarity_threshold"):
        threshold = request.similarity_threshold
        if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
            violations.append(FieldViolation("similarity_threshold", "must be in [0, 1]"))
    _raise_if_any(violations)


def check_store(request: cache_service_pb2.StoreRequest, policy: CachePolicy) -> None:
    """Raises INVALID_ARGUMENT for a bad scope or an answer that is not complete."""
    violations = _scope_violations(request.scope, request.HasField("scope"), policy)
    if not request.HasField("answer"):
        violations.append(FieldViolation("answer", "required"))
    else:
        answer = request.answer
        if answer.finish_reason == chat_pb2.FINISH_REASON_UNSPECIFIED:
            violations.append(
                FieldViolation(
                    "answer.finish_reason",
                    "an answer without a finish reason is incomplete and is never cached",
                )
            )
        if not any(chunk for chunk in answer.chunks):
            violations.append(FieldViolation("answer.chunks", "an empty answer is never cached"))
    _raise_if_any(violations)


def check_invalidate(request: cache_service_pb2.InvalidateRequest, policy: CachePolicy) -> None:
    """Raises INVALID_ARGUMENT unless the tenant is named and known."""
    if not request.tenant:
        raise invalid_argument([FieldViolation("tenant", "required")])
    if policy.for_tenant(request.tenant) is None:
        raise invalid_argument([FieldViolation("tenant", "not a tenant of the policy")])
