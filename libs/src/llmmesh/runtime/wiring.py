"""What a service's composition root hands to the shared server bootstrap."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from llmmesh.runtime.health import ReadinessCheck

Closer = Callable[[], Awaitable[None]]
PolicyReloader = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class Wiring:
    """A built servicer plus what the bootstrap must watch, reload and close for it."""

    servicer: Any
    # Each says whether the service can serve under its failure modes given one dependency
    # (Redis, a peer): ready, ready but degraded, or not ready; readiness follows them all.
    readiness_checks: list[ReadinessCheck] = dataclasses.field(default_factory=list)
    # Run after the server stopped, in order.
    closers: list[Closer] = dataclasses.field(default_factory=list)
    # Receive a freshly read policy document on SIGHUP.
    reloaders: list[PolicyReloader] = dataclasses.field(default_factory=list)
    # Named conditions shown by `llmmesh health` without affecting readiness (health
    # service "<grpc service>/<name>": SERVING while the condition holds).
    health_notes: dict[str, Callable[[], bool]] = dataclasses.field(default_factory=dict)
