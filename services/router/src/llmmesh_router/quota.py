"""Turns the ratelimiter's denial into RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo."""

from __future__ import annotations

import grpc

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.runtime.errors import QuotaViolation, RpcFailure

SCOPE_WORDS = {
    ratelimit_pb2.LIMIT_SCOPE_TENANT: "tenant",
    ratelimit_pb2.LIMIT_SCOPE_TENANT_MODEL: "tenant+model",
    ratelimit_pb2.LIMIT_SCOPE_MODEL: "model",
}
KIND_WORDS = {
    ratelimit_pb2.LIMIT_KIND_REQUESTS: "requests",
    ratelimit_pb2.LIMIT_KIND_TOKENS: "tokens",
    ratelimit_pb2.LIMIT_KIND_CONCURRENCY: "concurrent requests",
}


def denial_failure(
    denial: ratelimit_service_pb2.ReserveResponse, tenant: str, model: str
) -> RpcFailure:
    violations = [
        QuotaViolation(
            subject=f"{SCOPE_WORDS.get(status.scope, 'limit')}:{status.name}",
            description=(
                f"{KIND_WORDS.get(status.kind, 'usage')} limit {status.limit} exceeded; "
                f"full again in {status.reset_after_ms} ms"
            ),
        )
        for status in denial.limits
        if status.exceeded and not status.shadow
    ]
    if not violations:  # failing closed: the limiter's store was unreachable
        violations = [QuotaViolation(denial.denied_limit, "rate limiter store unreachable")]
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"rate limited by {denial.denied_limit}; retry in {denial.retry_after_ms} ms",
        reason="RATE_LIMITED",
        metadata={"tenant": tenant, "model": model, "limit": denial.denied_limit},
        retry_after_s=denial.retry_after_ms / 1000,
        quota_violations=violations,
    )
