"""The storage contract every limiter backend (Redis, in-memory) fulfils."""

from __future__ import annotations

from typing import Protocol

from llmmesh_ratelimiter.limits import ReservationPlan, ReserveOutcome, SettleOutcome


class LimiterBackend(Protocol):
    """Decides, settles and releases reservations atomically against shared limit state."""

    async def reserve(self, plan: ReservationPlan) -> ReserveOutcome:
        """Checks every limit of the plan; takes each cost only if no enforced limit lacks room.

        Reserving an id that already holds a reservation takes nothing and replays ALLOW.
        """
        ...

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        """Refunds or charges the token limits by the gap to the estimate; frees the lease."""
        ...

    async def release(self, reservation_id: str) -> bool:
        """Gives back everything the reservation took; False when it is unknown or finished."""
        ...

    async def ping(self) -> bool:
        """True while the store answers."""
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...
