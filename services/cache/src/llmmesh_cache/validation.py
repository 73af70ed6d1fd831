"""Checks of incoming requests; every problem becomes a BadRequest field violation."""

from __future__ import annotations

import math

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.runtime.errors import FieldViolation, invalid_argument
from llmmesh.validation import conversation_violations, sampling_violations
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
    violations.extend(conversation_violations(scope.messages, "scope.messages"))
    violations.extend(sampling_violations(scope.parameters, "scope.parameters"))
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
    if request.mode not in caching_pb2.CacheMode.values():
        violations.append(FieldViolation("mode", "not a known cache mode"))
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
