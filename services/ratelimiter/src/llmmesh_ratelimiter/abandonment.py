"""Undoing decisions that were given up: what they took goes back, and a late one takes nothing.

A decision is given up when its caller's deadline passes or its caller leaves while Redis is
still working, or when the connection breaks after the script was sent. Its script may have
run, may be running, or may still reach Redis later; nobody will read its answer either way.
Each given-up attempt is undone in the background (`LimiterBackend.abandon`), retried with
backoff while Redis does not answer, so a decision is never both answered with the failure
mode and charged, and a concurrency lease never outlives the request that gave it up.

Undoing needs no clock shared with Redis: it either releases what the attempt took, or it
leaves a marker (kept for a lease's lifetime) that makes the attempt's script take nothing.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from opentelemetry import metrics

from llmmesh_ratelimiter.backend import STORE_ERRORS, LimiterBackend
from llmmesh_ratelimiter.limits import ReservationPlan

_log = structlog.get_logger(__name__)

# More than this many undoings pending means Redis has been gone for a long while; the
# oldest ones are then left to their leases, which expire on their own.
MAX_PENDING = 10_000
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 2.0


class Abandonment:
    """Undoes given-up attempts in the background until Redis confirms each one."""

    def __init__(self, backend: LimiterBackend, meter: metrics.Meter | None = None) -> None:
        self._backend = backend
        self._pending: set[asyncio.Task[None]] = set()
        meter = meter or metrics.get_meter("llmmesh.ratelimiter")
        self._undone = meter.create_counter(
            "llmmesh.ratelimit.abandoned_decisions",
            unit="{decision}",
            description="Decisions given up before their answer was read, by how they ended",
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def undo(self, plan: ReservationPlan) -> None:
        """Starts undoing one attempt; returns at once (it may be called while cancelled)."""
        if len(self._pending) >= MAX_PENDING:
            self._undone.add(1, {"outcome": "dropped"})
            _log.warning("abandoned decision left to its lease", pending=len(self._pending))
            return
        task = asyncio.get_running_loop().create_task(self._undo(plan))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self, timeout_s: float) -> None:
        """Lets pending undoings finish for up to `timeout_s` (on drain), then stops them."""
        if not self._pending:
            return
        _done, left = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in left:
            task.cancel()
        if left:
            _log.warning("abandoned decisions left to their leases", count=len(left))

    async def _undo(self, plan: ReservationPlan) -> None:
        # After a lease's lifetime the attempt's record and lease have expired by themselves.
        give_up_at = time.monotonic() + plan.lease_ttl_ms / 1000
        wait_s = FIRST_RETRY_S
        while True:
            try:
                await self._backend.abandon(plan)
            except STORE_ERRORS as error:
                if time.monotonic() + wait_s > give_up_at:
                    self._undone.add(1, {"outcome": "expired"})
                    return
                _log.debug("undoing an abandoned decision failed", error=type(error).__name__)
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, LAST_RETRY_S)
                continue
            self._undone.add(1, {"outcome": "undone"})
            return
