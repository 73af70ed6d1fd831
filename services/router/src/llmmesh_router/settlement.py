"""Settle and Release on the ratelimiter, retried with jittered backoff within a bounded time.

Both are idempotent on the ratelimiter (a repeated settle changes nothing), so a call whose
answer was lost may be sent again. One that never lands within the budget is logged and
counted; its lease still expires on its own, holding the capacity only until then.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import structlog

from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh_router import observability
from llmmesh_router.backoff import BackoffPolicy
from llmmesh_router.deadline import Deadline

log = structlog.get_logger(__name__)

# Failures a later attempt may not meet: a replica stopping or unreachable, a slow store.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
ATTEMPT_TIMEOUT_S = 3.0
BACKOFF = BackoffPolicy(base_s=0.05, cap_s=1.0)


class Settler:
    def __init__(
        self,
        ratelimiter: ratelimit_service_pb2_grpc.RateLimitServiceStub,
        *,
        budget_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self._ratelimiter = ratelimiter
        self._budget_s = budget_s
        self._rng = rng or random.Random()

    async def settle(self, reservation_id: str, actual_tokens: int) -> None:
        """Charges what was used and returns the rest of the estimate."""
        if not reservation_id:  # admitted while the limiter failed open: nothing to settle
            return
        request = ratelimit_service_pb2.SettleRequest(
            reservation_id=reservation_id, actual_tokens=actual_tokens
        )
        await self._with_retries("settle", lambda t: self._ratelimiter.Settle(request, timeout=t))

    async def release(self, reservation_id: str) -> None:
        """Gives back a reservation of a request that used nothing."""
        if not reservation_id:
            return
        request = ratelimit_service_pb2.ReleaseRequest(reservation_id=reservation_id)
        await self._with_retries("release", lambda t: self._ratelimiter.Release(request, timeout=t))

    async def _with_retries(
        self, operation: str, call: Callable[[float], Awaitable[object]]
    ) -> None:
        budget = Deadline.after(self._budget_s)
        attempt = 1
        while True:
            try:
                await call(min(ATTEMPT_TIMEOUT_S, budget.remaining_s()))
                return
            except grpc.aio.AioRpcError as error:
                delay_s = BACKOFF.delay_s(attempt, self._rng, None)
                if error.code() not in RETRYABLE_CODES or delay_s >= budget.remaining_s():
                    # The lease expires on its own; the answer is already delivered.
                    log.warning(f"{operation}_failed", code=error.code().name, attempts=attempt)
                    observability.settlements_failed.add(1, {"operation": operation})
                    return
            await asyncio.sleep(delay_s)
            attempt += 1
