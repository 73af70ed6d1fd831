"""Whether the limiter's store is reachable, learned from its answers, so an outage costs
each decision nothing instead of a wait.

Written here rather than taken from a breaker library: it has one state worth keeping (the
store answered or it did not) and must never count a slow answer as a failure, which the
libraries' failure-rate windows would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# While open, one call in this interval is let through to find out whether the store is back
# (readiness probes find out too, every health probe interval).
TRIAL_INTERVAL_S = 0.5


class StoreCircuit:
    """Closed while the store answers; open from the first call it did not answer at all
    (refused, reset, or silent past the bound) until a call or probe gets an answer."""

    def __init__(
        self,
        trial_interval_s: float = TRIAL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trial_interval_s = trial_interval_s
        self._clock = clock
        self._open = False
        self._next_trial = 0.0

    @property
    def is_open(self) -> bool:
        return self._open

    def allows_call(self) -> bool:
        """True when closed; while open, True for one trial call per interval."""
        if not self._open:
            return True
        now = self._clock()
        if now < self._next_trial:
            return False
        self._next_trial = now + self._trial_interval_s
        return True

    def record_answer(self) -> None:
        self._open = False

    def record_unreachable(self) -> None:
        if not self._open:
            self._open = True
            self._next_trial = self._clock() + self._trial_interval_s
