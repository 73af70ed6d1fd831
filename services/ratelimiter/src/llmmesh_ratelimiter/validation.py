"""Checks of incoming requests, reported as BadRequest field violations."""

from __future__ import annotations

from llmmesh.ratelimit.v1 import ratelimit_service_pb2
from llmmesh.runtime.errors import FieldViolation
from llmmesh_ratelimiter.rate_policy import MAX_CAPACITY

MAX_NAME_CHARS = 256


def reserve_violations(request: ratelimit_service_pb2.ReserveRequest) -> list[FieldViolation]:
    """Shape checks; whether the tenant exists is for the policy in force to say."""
    violations = []
    if not request.tenant:
        violations.append(FieldViolation("tenant", "required"))
    elif len(request.tenant) > MAX_NAME_CHARS:
        violations.append(FieldViolation("tenant", f"longer than {MAX_NAME_CHARS} characters"))
    if not request.model:
        violations.append(FieldViolation("model", "required"))
    elif len(request.model) > MAX_NAME_CHARS:
        violations.append(FieldViolation("model", f"longer than {MAX_NAME_CHARS} characters"))
    if request.estimated_tokens < 0:
        violations.append(FieldViolation("estimated_tokens", "must not be negative"))
    elif request.estimated_tokens > MAX_CAPACITY:
        violations.append(FieldViolation("estimated_tokens", f"must be at most {MAX_CAPACITY}"))
    if len(request.request_id) > MAX_NAME_CHARS:
        violations.append(FieldViolation("request_id", f"longer than {MAX_NAME_CHARS} characters"))
    return violations


def settle_violations(request: ratelimit_service_pb2.SettleRequest) -> list[FieldViolation]:
    violations = reservation_id_violations(request.reservation_id)
    if request.actual_tokens < 0:
        violations.append(FieldViolation("actual_tokens", "must not be negative"))
    elif request.actual_tokens > MAX_CAPACITY:
        violations.append(FieldViolation("actual_tokens", f"must be at most {MAX_CAPACITY}"))
    return violations


def reservation_id_violations(reservation_id: str) -> list[FieldViolation]:
    if not reservation_id:
        return [FieldViolation("reservation_id", "required")]
    return []
