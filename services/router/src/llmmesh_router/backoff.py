"""When to try again: exponential backoff with full jitter, bounded by the deadline."""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 0.1
    cap_s: float = 2.0

    def delay_s(self, retry_number: int, rng: random.Random, retry_after_s: float | None) -> float:
        """Delay before retry `retry_number` (1 for the first retry).

        Full jitter (uniform in [0, base * 2^n], capped) spreads retries of many callers
        apart; a server's RetryInfo is a floor, never shortened by the jitter.
        """
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry_number - 1))
        jittered = rng.uniform(0.0, ceiling)
        return max(jittered, retry_after_s or 0.0)
