"""Circuit breakers, one per provider instance and model: closed, open, half-open.

A breaker opens after `consecutive_failures` failures in a row, or when the failure rate
over the last `window` calls reaches `failure_rate` (once `min_calls` were seen). After
`recovery_timeout_s` it lets exactly one probe through (half-open); the probe's success
closes it, its failure opens it again. Decisions are local and take microseconds; a
`BreakerStateStore` (Redis) can share the state with the other router replicas. A caller
waiting to retry can sleep on `wait_opened`, which wakes it the moment the circuit opens.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Protocol


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    recovery_timeout_s: float = 30.0


class ProbeClaims(Protocol):
    """Decides which router replica sends the one probe of a half-open circuit."""

    async def claim_probe(self, key: str) -> bool: ...


StateListener = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        key: str,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self.key = key
        self._settings = settings
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._outcomes: collections.deque[bool] = collections.deque(maxlen=settings.window)
        self._probe_in_flight = False
        self._open_waiters: set[asyncio.Future[None]] = set()

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._recovery_due():
            return BreakerState.HALF_OPEN
        return self._state

    def allows_request(self) -> bool:
        """True when a call may go out now; in half-open, true only for the one probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probe_in_flight:
            return False
        self._transition(BreakerState.HALF_OPEN)
        self._probe_in_flight = True
        return True

    @property
    def probing(self) -> bool:
        """True while the half-open circuit's single probe is out."""
        return self._probe_in_flight

    def is_open(self) -> bool:
        """True while calls are refused outright (open, or half-open with the probe out)."""
        state = self.state
        return state is BreakerState.OPEN or (
            state is BreakerState.HALF_OPEN and self._probe_in_flight
        )

    def record_success(self) -> None:
        self._probe_in_flight = False
        self._consecutive_failures = 0
        self._outcomes.append(True)
        if self._state is not BreakerState.CLOSED:
            self._outcomes.clear()
            self._transition(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._consecutive_failures += 1
        self._outcomes.append(False)
        if self._state is BreakerState.HALF_OPEN or self._probe_in_flight:
            self._probe_in_flight = False
            self._open()
        elif self._state is BreakerState.CLOSED and self._should_open():
            self._open()

    async def wait_opened(self, timeout_s: float) -> bool:
        """Sleeps up to `timeout_s`; returns True as soon as the circuit opens meanwhile.

        A retry sleeps here, so a storm of failures that opens the circuit sends every
        sleeping caller to its fallback at once instead of after its backoff.
        """
        waiter = asyncio.get_running_loop().create_future()
        self._open_waiters.add(waiter)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout_s)
        finally:
            self._open_waiters.discard(waiter)
            waiter.cancel()
        return bool(done)

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled): let another one through."""
        self._probe_in_flight = False

    def apply_remote(self, state: BreakerState, opened_at_age_s: float) -> None:
        """Adopts a transition another replica made."""
        if state is BreakerState.OPEN:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock() - opened_at_age_s
            self._wake_open_waiters()
        elif state is BreakerState.CLOSED and self._state is not BreakerState.CLOSED:
            self._state = BreakerState.CLOSED
            self._consecutive_failures = 0
            self._outcomes.clear()
        self._probe_in_flight = False

    def _should_open(self) -> bool:
        if self._consecutive_failures >= self._settings.consecutive_failures:
            return True
        calls = len(self._outcomes)
        if calls < self._settings.min_calls:
            return False
        failures = calls - sum(self._outcomes)
        return failures / calls >= self._settings.failure_rate

    def _recovery_due(self) -> bool:
        return self._clock() - self._opened_at >= self._settings.recovery_timeout_s

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(BreakerState.OPEN)

    def _transition(self, state: BreakerState) -> None:
        previous = self._state
        self._state = state
        if state is BreakerState.OPEN:
            self._wake_open_waiters()
        if previous is not state and self._on_change is not None:
            self._on_change(self.key, previous, state)

    def _wake_open_waiters(self) -> None:
        for waiter in self._open_waiters:
            if not waiter.done():
                waiter.set_result(None)


class BreakerRegistry:
    """All breakers of one router, created on first use."""

    def __init__(
        self,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._listeners: list[StateListener] = [on_change] if on_change else []
        self._breakers: dict[str, CircuitBreaker] = {}

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _notify(self, key: str, old: BreakerState, new: BreakerState) -> None:
        for listener in self._listeners:
            listener(key, old, new)

    def get(self, instance: str, model: str) -> CircuitBreaker:
        key = f"{instance}/{model}"
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(key, self._settings, clock=self._clock, on_change=self._notify)
            self._breakers[key] = breaker
        return breaker

    def known(self) -> dict[str, CircuitBreaker]:
        return dict(self._breakers)
