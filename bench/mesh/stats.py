"""Percentiles and per-run summaries of the load generator's samples."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclasses.dataclass(frozen=True)
class Distribution:
    """p50, p99 and count of one latency, in milliseconds."""

    p50_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Distribution:
        return cls(percentile(values_ms, 0.50), percentile(values_ms, 0.99), len(values_ms))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Distribution:
        return cls(float(data["p50_ms"]), float(data["p99_ms"]), int(data["count"]))


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What one load run measured against one target."""

    target: str
    concurrency: int
    duration_s: float
    completed: int
    errors: int
    first_token: Distribution
    total: Distribution
    inter_token: Distribution
    # Delta messages per completed request, to show batching at a glance.
    deltas_per_request: float
    # CPU seconds the load generator itself used during the measured window.
    load_generator_cpu_s: float
    error_samples: tuple[str, ...] = ()

    @property
    def requests_per_s(self) -> float:
        return self.completed / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            target=data["target"],
            concurrency=int(data["concurrency"]),
            duration_s=float(data["duration_s"]),
            completed=int(data["completed"]),
            errors=int(data["errors"]),
            first_token=Distribution.from_json(data["first_token"]),
            total=Distribution.from_json(data["total"]),
            inter_token=Distribution.from_json(data["inter_token"]),
            deltas_per_request=float(data["deltas_per_request"]),
            load_generator_cpu_s=float(data["load_generator_cpu_s"]),
            error_samples=tuple(data.get("error_samples", ())),
        )
