"""Turns the ratelimiter's denial into RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo."""

from __future__ import annotations

import grpc

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2
from llmmesh.runtime.errors import QuotaViolation, RpcFailure


def denial_failure(tenant: str, response: ratelimit_service_pb2.ReserveResponse) -> RpcFailure:
    exceeded = [status for status in response.limits if status.exceeded and not status.shadow]
    violations = [
        QuotaViolation(
            subject=f"tenant:{tenant}/limit:{status.name}",
            description=(
                f"{ratelimit_pb2.LimitKind.Name(status.kind)} limit of {status.limit} "
                f"exceeded; full again in {status.reset_after_ms} ms"
            ),
        )
        for status in exceeded
    ]
    return RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"rate limit '{response.denied_limit}' exceeded; retry after {response.retry_after_ms} ms",
        reason="RATE_LIMITED",
        metadata={"limit": response.denied_limit, "tenant": tenant},
        retry_after_s=response.retry_after_ms / 1000,
        quota_violations=violations,
    )
