"""Reservations at the ratelimiter, and its denial as RESOURCE_EXHAUSTED with QuotaFailure
and RetryInfo."""

from __future__ import annotations

import grpc
import grpc.aio

from llmmesh.policy import Tenant
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.runtime import semconv
from llmmesh.runtime.errors import QuotaViolation, RpcFailure
from llmmesh_router import observability
from llmmesh_router.deadline import Deadline
from llmmesh_router.peers import Peers, peer_failure

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


async def reserve(
    peers: Peers, tenant: Tenant, model: str, estimate: int, request_id: str, deadline: Deadline
) -> str:
    """Reserves `estimate` tokens for one request; RESOURCE_EXHAUSTED when a limit denies it."""
    try:
        response = await peers.ratelimiter.Reserve(
            ratelimit_service_pb2.ReserveRequest(
                tenant=tenant.name, model=model, estimated_tokens=estimate,
                request_id=request_id,
            ),
            timeout=deadline.remaining_s(),
        )  # fmt: skip
    except grpc.aio.AioRpcError as error:
        raise peer_failure("ratelimiter", error) from error
    allowed = response.decision == ratelimit_pb2.DECISION_ALLOW
    observability.annotate(
        {
            semconv.RATELIMIT_DECISION: "allow" if allowed else "deny",
            semconv.RATELIMIT_DENIED_LIMIT: response.denied_limit,
        }
    )
    if not allowed:
        observability.ratelimit_denials.add(
            1, {semconv.RATELIMIT_DENIED_LIMIT: response.denied_limit}
        )
        raise denial_failure(response, tenant.name, model)
    return str(response.reservation_id)
