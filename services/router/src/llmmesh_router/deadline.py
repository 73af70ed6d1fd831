"""What is left of the caller's deadline, passed on to every peer call."""

from __future__ import annotations

import dataclasses
import time

import grpc.aio


@dataclasses.dataclass(frozen=True)
class Deadline:
    expires_at: float

    @classmethod
    def from_context(
        cls, context: grpc.aio.ServicerContext[object, object], default_s: float
    ) -> Deadline:
        remaining = context.time_remaining()
        budget = default_s if remaining is None else min(remaining, default_s)
        return cls(time.monotonic() + budget)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining_s(self) -> float:
        return max(self.expires_at - time.monotonic(), 0.0)
