"""The RateLimitService gRPC handlers: validate, decide through Admission, answer in protos."""

from __future__ import annotations

import asyncio
from typing import TypeAlias

import grpc
import grpc.aio
from typing_extensions import override

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.runtime.errors import FieldViolation, RpcFailure, abort, invalid_argument
from llmmesh_ratelimiter import validation
from llmmesh_ratelimiter.admission import (
    Admission,
    BackendUnavailableError,
    DecisionPastDeadlineError,
    UnknownTenantError,
    Verdict,
)
from llmmesh_ratelimiter.limits import LimitKind, LimitScope

Context: TypeAlias = grpc.aio.ServicerContext[object, object]

_KINDS = {
    LimitKind.REQUESTS: ratelimit_pb2.LIMIT_KIND_REQUESTS,
    LimitKind.TOKENS: ratelimit_pb2.LIMIT_KIND_TOKENS,
    LimitKind.CONCURRENCY: ratelimit_pb2.LIMIT_KIND_CONCURRENCY,
}
_SCOPES = {
    LimitScope.TENANT: ratelimit_pb2.LIMIT_SCOPE_TENANT,
    LimitScope.TENANT_MODEL: ratelimit_pb2.LIMIT_SCOPE_TENANT_MODEL,
    LimitScope.MODEL: ratelimit_pb2.LIMIT_SCOPE_MODEL,
}
# Settle and Release find the store unreachable: retry soon; an unsettled lease also expires.
_STORE_RETRY_AFTER_S = 1.0


def _store_unavailable(operation: str) -> RpcFailure:
    return RpcFailure(
        grpc.StatusCode.UNAVAILABLE,
        f"ratelimit store unreachable during {operation}",
        reason="RATELIMIT_BACKEND_UNAVAILABLE",
        retry_after_s=_STORE_RETRY_AFTER_S,
    )


_PAST_DEADLINE = RpcFailure(
    grpc.StatusCode.DEADLINE_EXCEEDED,
    "the deadline passed before the ratelimit store answered; nothing was reserved",
    reason="RATELIMIT_DECISION_PAST_DEADLINE",
)


class RateLimitServicer(ratelimit_service_pb2_grpc.RateLimitServiceServicer):
    """Reserve, Settle and Release; a denial is a normal DECISION_DENY answer, not an error."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    @override
    async def Reserve(
        self, request: ratelimit_service_pb2.ReserveRequest, context: Context
    ) -> ratelimit_service_pb2.ReserveResponse:
        violations = validation.reserve_violations(request)
        if violations:
            await abort(context, invalid_argument(violations))
        try:
            verdict = await self._admission.reserve(
                request.tenant,
                request.model,
                request.estimated_tokens,
                request.request_id,
                deadline_s=context.time_remaining(),
            )
        except UnknownTenantError:
            unknown = FieldViolation("tenant", "no tenant of this name in the policy")
            await abort(context, invalid_argument([unknown]))
        except DecisionPastDeadlineError:
            await abort(context, _PAST_DEADLINE)
        if context.done():
            # The caller left (or its deadline passed) as the verdict came: it never reads it.
            self._admission.give_up(verdict)
            raise asyncio.CancelledError
        return _reserve_response(verdict)

    @override
    async def Settle(
        self, request: ratelimit_service_pb2.SettleRequest, context: Context
    ) -> ratelimit_service_pb2.SettleResponse:
        violations = validation.settle_violations(request)
        if violations:
            await abort(context, invalid_argument(violations))
        try:
            outcome = await self._admission.settle(request.reservation_id, request.actual_tokens)
        except BackendUnavailableError:
            await abort(context, _store_unavailable("settle"))
        return ratelimit_service_pb2.SettleResponse(
            refunded_tokens=outcome.refunded_tokens,
            charged_tokens=outcome.charged_tokens,
            found=outcome.found,
        )

    @override
    async def Release(
        self, request: ratelimit_service_pb2.ReleaseRequest, context: Context
    ) -> ratelimit_service_pb2.ReleaseResponse:
        violations = validation.reservation_id_violations(request.reservation_id)
        if violations:
            await abort(context, invalid_argument(violations))
        try:
            found = await self._admission.release(request.reservation_id)
        except BackendUnavailableError:
            await abort(context, _store_unavailable("release"))
        return ratelimit_service_pb2.ReleaseResponse(found=found)


def _reserve_response(verdict: Verdict) -> ratelimit_service_pb2.ReserveResponse:
    return ratelimit_service_pb2.ReserveResponse(
        decision=ratelimit_pb2.DECISION_ALLOW if verdict.allowed else ratelimit_pb2.DECISION_DENY,
        reservation_id=verdict.reservation_id,
        limits=[
            ratelimit_pb2.LimitStatus(
                name=check.name,
                kind=_KINDS[check.kind],
                scope=_SCOPES[check.scope],
                limit=check.capacity,
                remaining=state.remaining,
                reset_after_ms=state.reset_after_ms,
                exceeded=state.exceeded,
                shadow=check.shadow,
            )
            for check, state in zip(verdict.checks, verdict.states, strict=True)
        ],
        denied_limit=verdict.denied_limit,
        retry_after_ms=verdict.retry_after_ms,
    )
