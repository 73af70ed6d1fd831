"""Admission decisions: turns a request into a plan, waits for the store's answer as long as
the caller's deadline allows, applies the failure mode only when the store is unreachable,
and undoes the decisions it had to give up."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from opentelemetry import metrics

from llmmesh.runtime.health import READY, Readiness, degraded, unready
from llmmesh_ratelimiter import keys
from llmmesh_ratelimiter.abandonment import Abandonment
from llmmesh_ratelimiter.backend import STORE_ERRORS, LimiterBackend, StoreCircuitOpenError
from llmmesh_ratelimiter.limits import (
    LimitCheck,
    LimitKind,
    LimitState,
    ReservationPlan,
    ReserveOutcome,
    SettleOutcome,
)
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import FailureMode

_log = structlog.get_logger(__name__)

ResultT = TypeVar("ResultT")

# Named as the denying limit when the store is unreachable and the failure mode is closed.
BACKEND_UNAVAILABLE_LIMIT = "ratelimit-backend-unavailable"
# Retry hint for a fail-closed denial: about how long a Redis failover or restart takes.
BACKEND_UNAVAILABLE_RETRY_MS = 1000
# A full concurrency limit frees a slot when any request finishes, usually long before the
# oldest lease expires, so its retry hint is capped rather than the lease's full remainder.
CONCURRENCY_RETRY_CAP_MS = 1000
# An answer ready with less than this left of the caller's deadline would reach it too late,
# so the decision is given up (and undone) rather than taken for a caller that has gone.
REPLY_MARGIN_S = 0.005
# A readiness probe waits a little longer than a decision may, so only the decision
# timeout (the store's own bound) tells a dead store from a slow one.
PROBE_SLACK_S = 0.5
# On drain, how long given-up decisions may still take to be undone.
ABANDONED_FLUSH_S = 5.0

REDIS_DOWN_FAILING_OPEN = "redis unreachable, failing open"
REDIS_DOWN_FAILING_CLOSED = "redis unreachable, failing closed"


class UnknownTenantError(LookupError):
    """The policy names no tenant of this name."""


class BackendUnavailableError(RuntimeError):
    """The limiter's store is unreachable: refused, broken, silent past the decision timeout,
    or not asked because it was lately."""


class DecisionPastDeadlineError(RuntimeError):
    """The caller's deadline passed before the store answered; the attempt is being undone."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer to a reservation, with every applied limit's state beside its check."""

    allowed: bool
    reservation_id: str
    checks: tuple[LimitCheck, ...]
    states: tuple[LimitState, ...]
    denied_limit: str = ""
    retry_after_ms: int = 0
    # True when the store was unreachable and the verdict is the configured failure mode's.
    degraded: bool = False
    # What was decided on, so that a verdict nobody received can be undone.
    plan: ReservationPlan | None = dataclasses.field(default=None, compare=False, repr=False)


class Admission:
    """Reserve, settle and release against the backend.

    A decision waits for the store within the caller's deadline: a slow store is awaited,
    and the failure mode applies only when the store is unreachable. A decision given up
    on the way (deadline, caller gone, connection broken after sending) is undone, so it is
    never both answered with the failure mode and charged.
    """

    def __init__(
        self,
        backend: LimiterBackend,
        policy: PolicyHolder,
        *,
        decision_timeout_s: float,
        default_failure_mode: FailureMode,
        lease_ttl_s: float,
        meter: metrics.Meter | None = None,
    ) -> None:
        self._backend = backend
        self._policy = policy
        self._decision_timeout_s = decision_timeout_s
        self._default_failure_mode = default_failure_mode
        self._lease_ttl_ms = math.ceil(lease_ttl_s * 1000)
        meter = meter or metrics.get_meter("llmmesh.ratelimiter")
        self.abandonment = Abandonment(backend, meter)
        self._backend_failures = meter.create_counter(
            "llmmesh.ratelimit.backend_failures",
            unit="{failure}",
            description="Limiter store calls that failed, timed out, or were not sent because "
            "the store's circuit was open",
        )
        self._decisions = meter.create_counter(
            "llmmesh.ratelimit.decisions",
            unit="{decision}",
            description="Reservations decided, by outcome and denying limit",
        )
        self._shadow_exceeded = meter.create_counter(
            "llmmesh.ratelimit.shadow_exceeded",
            unit="{request}",
            description="Requests a shadow limit would have denied",
        )

    @property
    def failure_mode(self) -> FailureMode:
        return self._policy.current.failure_mode or self._default_failure_mode

    def plan(
        self, tenant: str, model: str, estimated_tokens: int, request_id: str
    ) -> ReservationPlan:
        """The checks and keys for one request under the policy in force."""
        policy = self._policy.current
        if not policy.knows_tenant(tenant):
            raise UnknownTenantError(tenant)
        tag = keys.decision_tag(policy.hash_tag_scope, tenant, model)
        checks = tuple(
            LimitCheck(
                name=limit.name,
                kind=limit.kind,
                scope=limit.scope,
                capacity=limit.limit,
                window_ms=math.ceil((limit.window_s or 0) * 1000),
                shadow=limit.shadow,
                key=keys.limit_key(tag, limit.name, limit.kind, limit.scope, tenant, model),
                cost=estimated_tokens if limit.kind is LimitKind.TOKENS else 1,
            )
            for limit in policy.limits_for(tenant, model)
        )
        return ReservationPlan(
            reservation_id=keys.new_reservation_id(tag, tenant, request_id),
            checks=checks,
            estimated_tokens=estimated_tokens,
            lease_ttl_ms=self._lease_ttl_ms,
            attempt=keys.new_attempt_id(),
        )

    async def reserve(
        self,
        tenant: str,
        model: str,
        estimated_tokens: int,
        request_id: str,
        *,
        deadline_s: float | None = None,
    ) -> Verdict:
        """Decides on one request within `deadline_s` (the caller's time left; None: no
        deadline). An unreachable store yields the failure mode's verdict; a deadline that
        passes first raises DecisionPastDeadlineError."""
        plan = self.plan(tenant, model, estimated_tokens, request_id)
        try:
            outcome = await self._decide(plan, deadline_s)
        except BackendUnavailableError:
            return self._degraded_verdict(plan)
        verdict = _verdict(plan, outcome)
        self._count(verdict)
        return verdict

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        return await self._call(self._backend.settle(reservation_id, actual_tokens), "settle")

    async def release(self, reservation_id: str) -> bool:
        return await self._call(self._backend.release(reservation_id), "release")

    async def readiness(self) -> Readiness:
        """Ready while the store answers; without it, ready (degraded) only when failing open."""
        try:
            async with asyncio.timeout(self._decision_timeout_s + PROBE_SLACK_S):
                await self._call(self._backend.ping(), "ping")
        except (BackendUnavailableError, TimeoutError):
            if self.failure_mode is FailureMode.OPEN:
                return degraded(REDIS_DOWN_FAILING_OPEN)
            return unready(REDIS_DOWN_FAILING_CLOSED)
        return READY

    async def close(self) -> None:
        """On drain: lets given-up decisions be undone, then closes the store."""
        await self.abandonment.close(ABANDONED_FLUSH_S)
        await self._backend.close()

    async def _decide(self, plan: ReservationPlan, deadline_s: float | None) -> ReserveOutcome:
        wait_s = None if deadline_s is None else deadline_s - REPLY_MARGIN_S
        if wait_s is not None and wait_s <= 0:
            raise DecisionPastDeadlineError(plan.reservation_id)
        scope = asyncio.timeout(wait_s)
        try:
            async with scope:
                outcome = await self._backend.reserve(plan)
        except asyncio.CancelledError:
            # The caller left: its answer will never be read, whatever Redis decides.
            self.abandonment.undo(plan)
            raise
        except StoreCircuitOpenError as error:
            raise self._unavailable("reserve", error) from error
        except STORE_ERRORS as error:
            # The script may have run before the answer was lost, or may still run.
            self.abandonment.undo(plan)
            if scope.expired():
                raise DecisionPastDeadlineError(plan.reservation_id) from error
            raise self._unavailable("reserve", error) from error
        deadline = scope.when()
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            # The answer came, but after the deadline: on a busy loop the store's reply can be
            # read before the timer fires. Nobody will read this verdict.
            self.abandonment.undo(plan)
            raise DecisionPastDeadlineError(plan.reservation_id)
        return outcome

    def give_up(self, verdict: Verdict) -> None:
        """Undoes a verdict whose caller left before it could be answered."""
        if verdict.plan is not None and verdict.reservation_id:
            self.abandonment.undo(verdict.plan)

    async def _call(self, call: Awaitable[ResultT], operation: str) -> ResultT:
        try:
            return await call
        except STORE_ERRORS as error:
            raise self._unavailable(operation, error) from error

    def _unavailable(self, operation: str, error: BaseException) -> BackendUnavailableError:
        self._backend_failures.add(1, {"operation": operation, "error": type(error).__name__})
        if not isinstance(error, StoreCircuitOpenError):
            # A call refused while the circuit is open is not logged: the outage already is.
            _log.warning(
                "ratelimit backend call failed", operation=operation, error=type(error).__name__
            )
        return BackendUnavailableError(operation)

    def _degraded_verdict(self, plan: ReservationPlan) -> Verdict:
        mode = self.failure_mode
        self._decisions.add(1, {"decision": f"fail_{mode.value}"})
        if mode is FailureMode.OPEN:
            # No reservation exists, so there is nothing to settle: the id stays empty.
            return Verdict(True, "", (), (), degraded=True)
        return Verdict(
            False,
            "",
            (),
            (),
            denied_limit=BACKEND_UNAVAILABLE_LIMIT,
            retry_after_ms=BACKEND_UNAVAILABLE_RETRY_MS,
            degraded=True,
        )

    def _count(self, verdict: Verdict) -> None:
        self._decisions.add(
            1,
            {"decision": "allow" if verdict.allowed else "deny", "limit": verdict.denied_limit},
        )
        for check, state in zip(verdict.checks, verdict.states, strict=True):
            if check.shadow and state.exceeded:
                self._shadow_exceeded.add(1, {"limit": check.name})


def _retry_after_ms(check: LimitCheck, state: LimitState) -> int:
    if check.kind is LimitKind.CONCURRENCY:
        return min(state.retry_after_ms, CONCURRENCY_RETRY_CAP_MS)
    return state.retry_after_ms


def _verdict(plan: ReservationPlan, outcome: ReserveOutcome) -> Verdict:
    states = tuple(
        dataclasses.replace(state, retry_after_ms=_retry_after_ms(check, state))
        for check, state in zip(plan.checks, outcome.states, strict=True)
    )
    if outcome.allowed:
        return Verdict(True, plan.reservation_id, plan.checks, states, plan=plan)
    blocking = [
        (state.retry_after_ms, check.name)
        for check, state in zip(plan.checks, states, strict=True)
        if state.exceeded and not check.shadow
    ]
    # Every enforced limit must have room, so the request fits again when the slowest does.
    retry_after_ms, denied_limit = max(blocking)
    return Verdict(False, "", plan.checks, states, denied_limit, retry_after_ms)
